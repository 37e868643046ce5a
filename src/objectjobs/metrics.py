"""Prometheus metrics of one process, in its own registry (built at start-up, passed down).

Counters and histograms are updated where the work happens (engine, worker, storage calls,
API middleware); the job and usage gauges are read from the job store at scrape time, so
every node reports the same cluster-wide figures for them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from objectjobs.models import JobState, JobType, Progress
from objectjobs.storage.interface import Storage
from objectjobs.store.interface import JobStore
from objectjobs.usage import SCALARS

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

#: the Storage methods that talk to the backend, timed per call (listings: per page)
STORAGE_CALLS = (
    "bucket_exists", "list_buckets", "create_bucket", "get_versioning", "put_versioning",
    "get_bucket_config", "put_bucket_config", "delete_bucket_config", "head", "get", "put",
    "copy", "delete", "delete_many", "get_tags", "put_tags", "create_upload", "upload_part",
    "complete_upload", "abort_upload",
)  # fmt: skip
STORAGE_LISTINGS = (
    "list_objects",
    "list_versions",
    "list_versions_sized",
    "list_uploads",
    "list_parts",
)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Gauge(
            "objectjobs_jobs", "Jobs by type and state", ["type", "state"], registry=r
        )
        self.objects_processed = Counter(
            "objectjobs_objects_processed", "Object versions handled", ["type"], registry=r
        )
        self.objects_failed = Counter(
            "objectjobs_objects_failed", "Object versions failed after retries", ["type"],
            registry=r,
        )  # fmt: skip
        self.bytes = Counter("objectjobs_bytes", "Bytes acted on", ["type"], registry=r)
        self.storage_seconds = Histogram(
            "objectjobs_storage_request_seconds",
            "Storage operation latency (listings: per page)",
            ["driver", "operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "objectjobs_retries", "Retried transient errors", ["kind"], registry=r
        )
        self.lease_takeovers = Counter(
            "objectjobs_lease_takeovers", "Tasks taken over after a lease expired", registry=r
        )
        self.api_seconds = Histogram(
            "objectjobs_api_request_seconds",
            "API request latency",
            ["operation", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.bucket_usage = Gauge(
            "objectjobs_bucket_usage",
            "Stored usage of a bucket (last METRIC_RECONCILIATION)",
            ["bucket", "figure"],
            registry=r,
        )
        self.bucket_class_usage = Gauge(
            "objectjobs_bucket_storage_class_usage",
            "Stored usage of a bucket by storage class",
            ["bucket", "storage_class", "figure"],
            registry=r,
        )

    def count_progress(self, job_type: JobType, progress: Progress) -> None:
        label = job_type.value
        if progress.processed:
            self.objects_processed.labels(label).inc(progress.processed)
        if progress.failed:
            self.objects_failed.labels(label).inc(progress.failed)
        if progress.bytes:
            self.bytes.labels(label).inc(progress.bytes)

    async def render(self, store: JobStore) -> bytes:
        """The exposition text, with the job and usage gauges refreshed from the store."""
        counts = await store.count_jobs()
        for job_type in JobType:
            for state in JobState:
                self.jobs.labels(job_type.value, state.value).set(
                    counts.get((job_type.value, state.value), 0)
                )
        for record in await store.list_usage():
            for figure in SCALARS:
                self.bucket_usage.labels(record.bucket, figure).set(record.usage.get(figure, 0))
            for cls, slot in (record.usage.get("byStorageClass") or {}).items():
                for figure in ("objects", "bytes"):
                    self.bucket_class_usage.labels(record.bucket, cls, figure).set(slot[figure])
        return generate_latest(self.registry)

    def instrument_storage(self, storage: Storage) -> Storage:
        """Time every backend call of ``storage`` (in place; returns it)."""
        driver = storage.driver
        for name in STORAGE_CALLS:
            setattr(storage, name, self._timed_call(driver, name, getattr(storage, name)))
        for name in STORAGE_LISTINGS:
            setattr(storage, name, self._timed_listing(driver, name, getattr(storage, name)))
        return storage

    def _timed_call(
        self, driver: str, name: str, call: Callable[..., Awaitable[Any]]
    ) -> Callable[..., Awaitable[Any]]:
        histogram = self.storage_seconds.labels(driver, name)

        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await call(*args, **kwargs)
            finally:
                histogram.observe(time.perf_counter() - start)

        return timed

    def _timed_listing(
        self, driver: str, name: str, listing: Callable[..., AsyncIterator[Any]]
    ) -> Callable[..., AsyncIterator[Any]]:
        histogram = self.storage_seconds.labels(driver, name)

        async def timed(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            pages = listing(*args, **kwargs)
            while True:
                start = time.perf_counter()
                try:
                    page = await anext(pages)
                except StopAsyncIteration:
                    return
                finally:
                    histogram.observe(time.perf_counter() - start)
                yield page

        return timed
