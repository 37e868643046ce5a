"""Delivery targets for notification events (SPEC §3.6): where TRIGGER_RECONCILIATION sends
the S3 event records it builds. One small interface (:class:`DeliveryTarget`), one module per
kind (webhook, AMQP), and :func:`open_target` picking the kind from settings."""

from objectjobs.notify.factory import open_target
from objectjobs.notify.interface import DeliveryTarget

__all__ = ["DeliveryTarget", "open_target"]
