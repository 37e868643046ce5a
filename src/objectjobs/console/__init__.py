"""The web console (SPEC §2.6): static HTML/CSS/JS served at ``/console/``, a MAPI client."""

from objectjobs.console.routes import mount_console

__all__ = ["mount_console"]
