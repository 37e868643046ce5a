"""The one exception tree of objectjobs.

Drivers (storage, job store, delivery targets) translate their libraries' errors into these
at their boundary; the API maps them to HTTP in one table (``objectjobs.api.errors``).
"""

from __future__ import annotations


class ObjectJobsError(Exception):
    """Root of every error objectjobs raises on purpose."""

    code = "InternalError"

    def __init__(self, message: str, *, details: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.details = details


# --- request / domain errors -------------------------------------------------------------


class InvalidRequest(ObjectJobsError):
    """The caller sent something malformed or out of range (HTTP 400)."""

    code = "InvalidRequest"


class NotCancellable(InvalidRequest):
    """The job has already ended COMPLETE or FAILED."""

    code = "JobNotCancellable"


class DuplicateActiveJob(InvalidRequest):
    """An active job of the same type already runs on the same bucket and prefix."""

    code = "DuplicateActiveJob"

    def __init__(self, message: str, *, job_id: int) -> None:
        super().__init__(message, details=f"running job id {job_id}")
        self.job_id = job_id


class AuthenticationFailed(ObjectJobsError):
    """Missing, malformed, forged or expired credentials, token or CSRF token (HTTP 401)."""

    code = "Unauthorized"


class PermissionDenied(ObjectJobsError):
    """Authenticated, but the caller lacks the permission (HTTP 403)."""

    code = "Forbidden"


class NotFound(ObjectJobsError):
    """A job, user or bucket that does not exist or that the caller may not see (HTTP 404)."""

    code = "NotFound"


class JobNotFound(NotFound):
    code = "JobNotFound"


class ConfigurationError(ObjectJobsError):
    """Settings are invalid or inconsistent; raised at start-up."""

    code = "ConfigurationError"


# --- storage errors ----------------------------------------------------------------------


class StorageError(ObjectJobsError):
    """Any failure of a storage driver. ``retryable`` says whether trying again may help."""

    code = "StorageError"
    retryable = False


class BucketNotFound(StorageError, NotFound):
    code = "NoSuchBucket"


class ObjectNotFound(StorageError, NotFound):
    """The key (or the given version of it) does not exist."""

    code = "NoSuchKey"


class UploadNotFound(StorageError, NotFound):
    code = "NoSuchUpload"


class ConfigurationNotFound(StorageError, NotFound):
    """The bucket has no configuration of the asked kind (lifecycle, replication, ...)."""

    code = "NoSuchConfiguration"


class AccessDenied(StorageError):
    """The store refused the credentials or the operation (also: Object Lock refusals)."""

    code = "AccessDenied"


class PreconditionFailed(StorageError):
    code = "PreconditionFailed"


class NotSupported(StorageError):
    """The driver or the server does not implement the operation (see Capabilities)."""

    code = "NotImplemented"


class TransientStorageError(StorageError):
    """Throttling, timeouts, connection resets and 5xx: worth retrying with backoff."""

    code = "ServiceUnavailable"
    retryable = True


class StorageUnavailable(TransientStorageError):
    """The storage endpoint cannot be reached at all (HTTP 503 on the API)."""

    code = "StorageUnavailable"


# --- job store errors --------------------------------------------------------------------


class JobStoreError(ObjectJobsError):
    """The job store (database) failed."""

    code = "JobStoreError"


class JobStoreUnavailable(JobStoreError):
    code = "JobStoreUnavailable"


class LeaseLost(JobStoreError):
    """The worker's lease on a task expired and another worker took it over."""

    code = "LeaseLost"


# --- delivery errors (notification targets) ------------------------------------------------


class DeliveryError(ObjectJobsError):
    code = "DeliveryFailed"
    retryable = True

    def __init__(self, message: str, *, retryable: bool = True, details: str = "") -> None:
        super().__init__(message, details=details)
        self.retryable = retryable


# --- job-level failure ---------------------------------------------------------------------


class JobFailed(ObjectJobsError):
    """Raised inside a job handler to end the job FAILED with ``message`` as the reason."""

    code = "JobFailed"
