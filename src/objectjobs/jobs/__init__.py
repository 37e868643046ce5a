"""Job types: one module per type, each a JobHandler; ``handler_for`` picks one."""

from __future__ import annotations

from objectjobs.errors import InvalidRequest
from objectjobs.handler import JobHandler
from objectjobs.models import JobType


def handler_for(job_type: JobType) -> JobHandler:
    """The handler of a job type. InvalidRequest for a type not implemented yet."""
    from objectjobs.jobs.metric_reconciliation import MetricReconciliation

    handlers: dict[JobType, type[JobHandler]] = {
        JobType.METRIC_RECONCILIATION: MetricReconciliation,
    }
    try:
        return handlers[job_type]()
    except KeyError:
        raise InvalidRequest(f"job type {job_type.value} is not implemented yet") from None
