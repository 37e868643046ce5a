"""Wire models of the MAPI jobs contract (SPEC §2.4-§2.6), and their conversions.

Request bodies forbid unknown fields and take integers strictly, so a wrong type is a 400
rather than a silent coercion ("5" is not a page size).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from objectjobs.models import JobRecord, JobState, JobType, Outcome, ResultRecord, UsageRecord

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MAX_PAGE_SIZE = 10_000
DEFAULT_PAGE_SIZE = 1000

DateTimeStr = Annotated[str, Field(json_schema_extra={"format": "date-time"})]


def format_time(moment: datetime) -> str:
    """UTC ISO-8601 with ``Z`` and whole seconds, as the vendor's examples show."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- shared pieces -------------------------------------------------------------------------


class JobId(_Request):
    id: StrictInt = Field(ge=INT32_MIN, le=INT32_MAX)


class UserId(_Request):
    id: StrictInt


class JobStats(_Answer):
    processed: int
    failed: int


class Job(_Answer):
    """The job object exactly as documented (SPEC §2.4)."""

    jobId: JobId
    jobState: JobState
    jobType: JobType
    startTime: DateTimeStr
    completeTime: DateTimeStr | None
    jobParams: dict[str, str]
    jobStats: JobStats
    bucketName: str

    @classmethod
    def of(cls, record: JobRecord) -> Job:
        return cls(
            jobId=JobId(id=record.id),
            jobState=record.state,
            jobType=record.job_type,
            startTime=format_time(record.start_time),
            completeTime=format_time(record.complete_time) if record.complete_time else None,
            jobParams=dict(record.params),
            jobStats=JobStats(processed=record.processed, failed=record.failed),
            bucketName=record.bucket,
        )


class ErrorBody(_Answer):
    code: str
    message: str
    details: str


# --- requests (SPEC §2.5, §2.6) ------------------------------------------------------------


PageSize = Annotated[StrictInt, Field(ge=0, le=MAX_PAGE_SIZE, description="0 or absent: 1000")]


class ListJobsRequest(_Request):
    bucketName: str | None = None
    pageSize: PageSize | None = None
    pageToken: str | None = None
    userId: UserId | None = None


class CreateJobRequest(_Request):
    jobType: JobType
    bucketName: Annotated[str, Field(min_length=1)]
    jobParams: dict[str, str] | None = None


class JobIdRequest(_Request):
    jobId: JobId


class ReportRequest(_Request):
    jobId: JobId
    outcome: Outcome | None = None
    pageSize: PageSize | None = None
    pageToken: str | None = None


class BucketRequest(_Request):
    bucketName: Annotated[str, Field(min_length=1)]


class EmptyRequest(_Request):
    pass


# --- answers -------------------------------------------------------------------------------


class JobList(_Answer):
    jobs: list[Job]
    pageToken: str | None


class CreateAnswer(_Answer):
    jobStatus: Job


class StatusAnswer(_Answer):
    status: Job


class UserInfo(_Answer):
    displayName: str
    roles: list[str]
    userId: UserId


class SerialNumber(_Answer):
    value: str


class TokenAnswer(_Answer):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    scope: str
    # Keycloak sends these too; clients written for it may read them
    not_before_policy: int = Field(
        0, alias="not-before-policy", serialization_alias="not-before-policy"
    )
    session_state: str = ""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class OAuthError(_Answer):
    error: str
    error_description: str


class CsrfAnswer(_Answer):
    token: str


class Health(_Answer):
    status: str


# --- describe / report / usage (SPEC §2.6) ---------------------------------------------------


class Amount(BaseModel):
    model_config = ConfigDict(extra="ignore")

    objects: int = 0
    bytes: int = 0


class Usage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    currentObjects: int = 0
    currentBytes: int = 0
    noncurrentVersions: int = 0
    noncurrentBytes: int = 0
    deleteMarkers: int = 0
    multipartUploads: int = 0
    multipartParts: int = 0
    multipartBytes: int = 0
    byStorageClass: dict[str, Amount] = Field(default_factory=dict)


class UsageChange(BaseModel):
    model_config = ConfigDict(extra="ignore")

    before: Usage | None = None
    after: Usage = Field(default_factory=Usage)
    delta: Usage = Field(default_factory=Usage)


class Owner(_Answer):
    id: int
    name: str


class JobProgress(_Answer):
    succeeded: int
    failed: int
    skipped: int
    bytes: int


class Describe(_Answer):
    job: Job
    owner: Owner
    createTime: DateTimeStr
    totals: Amount | None
    plan: dict[str, Amount] | None
    progress: JobProgress
    objectsPerSecond: float
    etaSeconds: float | None
    failureReasons: list[str]
    usage: UsageChange | None

    @classmethod
    def of(cls, record: JobRecord) -> Describe:
        succeeded = max(record.processed - record.skipped, 0)
        totals = Amount.model_validate(record.totals) if record.totals else None
        return cls(
            job=Job.of(record),
            owner=Owner(id=record.owner_id, name=record.owner_name),
            createTime=format_time(record.create_time),
            totals=totals,
            plan={k: Amount.model_validate(v) for k, v in record.plan.items()}
            if record.plan
            else None,
            progress=JobProgress(
                succeeded=succeeded,
                failed=record.failed,
                skipped=record.skipped,
                bytes=record.bytes_done,
            ),
            objectsPerSecond=record.rate,
            etaSeconds=eta_seconds(record),
            failureReasons=list(record.failure_reasons),
            usage=UsageChange.model_validate(record.usage) if record.usage else None,
        )


def eta_seconds(record: JobRecord) -> float | None:
    """Remaining objects over the measured rate; None while either is unknown."""
    if not record.state.active or record.totals is None or record.rate <= 0:
        return None
    remaining = record.totals.get("objects", 0) - record.processed - record.failed
    return max(remaining, 0) / record.rate


class ResultItem(_Answer):
    key: str
    versionId: str | None
    action: str
    outcome: Outcome
    errorCode: str | None
    message: str | None

    @classmethod
    def of(cls, result: ResultRecord) -> ResultItem:
        return cls(
            key=result.key,
            versionId=result.version_id,
            action=result.action,
            outcome=result.outcome,
            errorCode=result.error_code,
            message=result.message,
        )


class Report(_Answer):
    results: list[ResultItem]
    pageToken: str | None


class BucketUsage(_Answer):
    bucketName: str
    usage: Usage | None
    updateTime: DateTimeStr | None
    jobId: JobId | None

    @classmethod
    def of(cls, bucket: str, record: UsageRecord | None) -> BucketUsage:
        if record is None:
            return cls(bucketName=bucket, usage=None, updateTime=None, jobId=None)
        return cls(
            bucketName=bucket,
            usage=Usage.model_validate(record.usage),
            updateTime=format_time(record.update_time),
            jobId=JobId(id=record.job_id) if record.job_id is not None else None,
        )


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting the error body for ``statuses``."""
    text = {
        400: "Invalid request",
        401: "Missing or invalid token or CSRF token",
        403: "Not permitted",
        404: "Not found",
        405: "Method not allowed",
        503: "Storage or job store unreachable",
    }
    return {s: {"model": ErrorBody, "description": text.get(s, "Error")} for s in statuses}
