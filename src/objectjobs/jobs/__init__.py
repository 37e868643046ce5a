"""Job types: one module per type, each a JobHandler; ``handler_for`` picks one."""

from __future__ import annotations

import importlib

from objectjobs.errors import InvalidRequest
from objectjobs.handler import JobHandler
from objectjobs.models import JobType

# module and class of each type's handler, imported on first use
_HANDLERS: dict[JobType, tuple[str, str]] = {
    JobType.METRIC_RECONCILIATION: ("metric_reconciliation", "MetricReconciliation"),
    JobType.BATCH_REPLICATE: ("batch_replicate", "BatchReplicate"),
    JobType.LIFECYCLE_UPDATE: ("lifecycle_update", "LifecycleUpdate"),
    JobType.TRIGGER_RECONCILIATION: ("trigger_reconciliation", "TriggerReconciliation"),
}


def handler_for(job_type: JobType) -> JobHandler:
    """The handler of a job type. InvalidRequest for a type not implemented yet."""
    module_name, class_name = _HANDLERS[job_type]
    try:
        module = importlib.import_module(f"objectjobs.jobs.{module_name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"objectjobs.jobs.{module_name}":
            raise
        raise InvalidRequest(f"job type {job_type.value} is not implemented yet") from None
    handler: type[JobHandler] = getattr(module, class_name)
    return handler()
