"""Choosing a delivery target's implementation from its settings: the one place naming them."""

from __future__ import annotations

from objectjobs.errors import ConfigurationError
from objectjobs.notify.interface import DeliveryTarget
from objectjobs.settings import NotifyTargetSettings


def open_target(settings: NotifyTargetSettings) -> DeliveryTarget:
    """A target for ``settings.kind``; connections open on first delivery."""
    if settings.kind == "webhook":
        from objectjobs.notify.webhook import WebhookTarget

        return WebhookTarget(settings)
    if settings.kind == "amqp":
        from objectjobs.notify.amqp import AmqpTarget

        return AmqpTarget(settings)
    raise ConfigurationError(f"unknown notify target kind {settings.kind!r}")
