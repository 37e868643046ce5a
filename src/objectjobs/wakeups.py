"""Wake-ups between the processes of one node, so new work is claimed at once.

A worker claims tasks, and finding none sleeps until its next poll (``worker.poll_s``).
Tasks added in another process of the same node (a job created through the API, the key
ranges of a split listing, the partitions of a phase that just began) would otherwise wait
out that sleep. Each worker process binds a Unix datagram socket in ``<data_dir>/wake``;
``notify`` sends one byte to every other socket there, and a worker woken claims.

Best effort by design: a wake-up lost (a full socket buffer, a process just starting)
costs one poll interval, as before. Nodes of a PostgreSQL deployment each wake their own
processes; other nodes find the work at their next poll. A socket file left by a killed
process refuses datagrams and is removed by the first ``notify`` that meets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("objectjobs.worker")

_SUFFIX = ".sock"
# sun_path holds 108 bytes: a longer path is reached through the directory's descriptor
_MAX_SOCKET_PATH = 100


class NodeWakeups:
    """The wake-up sockets in one directory: ``listen`` to be woken, ``notify`` to wake."""

    def __init__(self, directory: Path) -> None:
        self.directory = str(directory)
        self._name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}{_SUFFIX}"
        self._dir_fd = -1
        self._sock: socket.socket | None = None  # bound, once listening
        self._sender: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def listen(self, on_wake: Callable[[], None]) -> None:
        """Bind this process's socket; ``on_wake`` runs on the running event loop whenever
        another process notifies. Without a usable directory, wake-ups are left off (the
        worker still polls)."""
        try:
            os.makedirs(self.directory, exist_ok=True)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            try:
                sock.bind(self._path(self._name))
            except OSError:
                sock.close()
                raise
        except OSError as exc:
            log.info("no wake-ups from other processes (%s): polling only", exc)
            self._close_dir()
            return
        self._sock = sock
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._drain, on_wake)

    def _drain(self, on_wake: Callable[[], None]) -> None:
        assert self._sock is not None
        with contextlib.suppress(OSError):
            while self._sock.recv(64):
                pass
        on_wake()

    def notify(self) -> None:
        """Wake every other process listening in the directory (never raises)."""
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        if self._sender is None:
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
        for name in names:
            if name == self._name or not name.endswith(_SUFFIX):
                continue
            try:
                self._sender.sendto(b"!", self._path(name))
            except ConnectionRefusedError:
                # nobody listens: the process that bound it is gone
                with contextlib.suppress(OSError):
                    os.unlink(f"{self.directory}/{name}")
            except OSError:
                # a full buffer (that process has wake-ups waiting already), or a long
                # path's directory that would not open (that process polls, as before)
                pass

    def close(self) -> None:
        """Stop listening and remove this process's socket; notifying still works."""
        sock, self._sock = self._sock, None
        if sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(sock.fileno())
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(f"{self.directory}/{self._name}")
        if self._sender is not None:
            self._sender.close()
            self._sender = None
        self._close_dir()

    def _path(self, name: str) -> str:
        """The address of a socket in the directory (OSError when the directory cannot be
        opened for a path too long to be one)."""
        path = f"{self.directory}/{name}"
        if len(path.encode()) <= _MAX_SOCKET_PATH:
            return path
        if self._dir_fd < 0:
            self._dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        return f"/proc/self/fd/{self._dir_fd}/{name}"

    def _close_dir(self) -> None:
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1
