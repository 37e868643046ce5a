"""The MAPI jobs operations (SPEC §2.5) and ours beyond them (§2.6).

One router, mounted under both ``/mapi/v1`` and ``/v1``. Every operation is a POST with a
JSON body, behind a bearer token and the CSRF check.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header

from objectjobs.api.schemas import (
    DEFAULT_PAGE_SIZE,
    BucketRequest,
    BucketUsage,
    CreateAnswer,
    CreateJobRequest,
    Describe,
    EmptyRequest,
    Job,
    JobIdRequest,
    JobList,
    ListJobsRequest,
    Report,
    ReportRequest,
    ResultItem,
    SerialNumber,
    StatusAnswer,
    UserId,
    UserInfo,
    error_responses,
)
from objectjobs.api.security import Context, CurrentPrincipal, Principal, check_csrf
from objectjobs.errors import (
    AccessDenied,
    BucketNotFound,
    JobNotFound,
    PermissionDenied,
    StorageError,
    TransientStorageError,
)
from objectjobs.jobs import handler_for
from objectjobs.models import (
    PERM_ADMIN_CANCEL,
    PERM_ADMIN_LIST,
    PERM_CANCEL,
    PERM_CREATE,
    PERM_LIST,
    JobRecord,
    NewJob,
)
from objectjobs.params import validate_job_params
from objectjobs.store.interface import JobCursor

router = APIRouter(
    tags=["jobs"],
    dependencies=[Depends(check_csrf)],
    responses=error_responses(400, 401, 403),
)


async def _visible_job(ctx: Context, who: Principal, job_id: int) -> JobRecord:
    """The job if the caller may see it; a job they may not see is 'not found' (§2.3)."""
    job = await ctx.store.get_job(job_id)
    if job is None or not (job.owner_id == who.id or who.has(PERM_ADMIN_LIST)):
        raise JobNotFound(f"job {job_id} not found")
    return job


async def _require_bucket(ctx: Context, bucket: str) -> None:
    try:
        exists = await ctx.storage.bucket_exists(bucket)
    except (AccessDenied, TransientStorageError):
        raise
    except StorageError as exc:
        # a name the store cannot hold (refused before any lookup) names no bucket
        raise BucketNotFound(f"bucket {bucket} not found", details=exc.message) from exc
    if not exists:
        raise BucketNotFound(f"bucket {bucket} not found")


def _page_size(requested: int | None) -> int:
    # schema bounds reject negative and > 10 000; absent or 0 is the default
    return requested or DEFAULT_PAGE_SIZE


@router.post("/jobs/list", response_model=JobList, summary="List jobs, newest first")
async def list_jobs(
    ctx: Context,
    who: CurrentPrincipal,
    body: Annotated[ListJobsRequest | None, Body()] = None,
) -> JobList:
    who.require(PERM_LIST)
    body = body or ListJobsRequest()
    owner: int | None
    if body.userId is not None:
        if body.userId.id != who.id and not who.has(PERM_ADMIN_LIST):
            raise PermissionDenied(
                "listing another user's jobs needs permission " + PERM_ADMIN_LIST
            )
        owner = body.userId.id
    else:
        owner = None if who.has(PERM_ADMIN_LIST) else who.id
    scope: dict[str, Any] = {
        "op": "jobs/list",
        "caller": who.id,
        "owner": owner,
        "bucket": body.bucketName,
    }
    after = ctx.pages.open_job_cursor(body.pageToken, scope) if body.pageToken else None
    limit = _page_size(body.pageSize)
    records = await ctx.store.list_jobs(
        owner_id=owner, bucket=body.bucketName, after=after, limit=limit + 1
    )
    token = None
    if len(records) > limit:
        records = records[:limit]
        last = records[-1]
        token = ctx.pages.issue_job_cursor(JobCursor(last.start_time, last.id), scope)
    return JobList(jobs=[Job.of(r) for r in records], pageToken=token)


@router.post(
    "/jobs/create",
    response_model=CreateAnswer,
    responses=error_responses(404, 503),
    summary="Create a job",
)
async def create_job(
    ctx: Context,
    who: CurrentPrincipal,
    body: CreateJobRequest,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
    ] = None,
) -> CreateAnswer:
    who.require(PERM_CREATE)
    params = dict(body.jobParams or {})
    validate_job_params(body.jobType, params, targets=ctx.settings.targets.keys())
    await _require_bucket(ctx, body.bucketName)
    new_job = NewJob(
        job_type=body.jobType,
        bucket=body.bucketName,
        params=params,
        owner_id=who.id,
        prefix=params.get("prefix", ""),
        idempotency_key=idempotency_key,
    )
    # the job type's own checks that need storage or settings (a target that resolves, a
    # notification ARN with a delivery target, a readable policy)
    await handler_for(body.jobType).validate(new_job, ctx.storage, ctx.settings)
    record, created = await ctx.store.create_job(new_job)
    if created:
        ctx.wakeups.notify()
    return CreateAnswer(jobStatus=Job.of(record))


@router.post(
    "/jobs/cancel",
    response_model=StatusAnswer,
    responses=error_responses(404),
    summary="Cancel a job",
)
async def cancel_job(ctx: Context, who: CurrentPrincipal, body: JobIdRequest) -> StatusAnswer:
    job = await ctx.store.get_job(body.jobId.id)
    own = job is not None and job.owner_id == who.id
    if job is None or not (own or who.has(PERM_ADMIN_LIST) or who.has(PERM_ADMIN_CANCEL)):
        raise JobNotFound(f"job {body.jobId.id} not found")
    who.require(PERM_CANCEL if own else PERM_ADMIN_CANCEL)
    return StatusAnswer(status=Job.of(await ctx.store.request_cancel(job.id)))


@router.post(
    "/jobs/status",
    response_model=StatusAnswer,
    responses=error_responses(404),
    summary="A job's status",
)
async def job_status(ctx: Context, who: CurrentPrincipal, body: JobIdRequest) -> StatusAnswer:
    who.require(PERM_LIST)
    return StatusAnswer(status=Job.of(await _visible_job(ctx, who, body.jobId.id)))


@router.post("/user/info", response_model=UserInfo, summary="The calling user")
async def user_info(
    who: CurrentPrincipal, body: Annotated[EmptyRequest | None, Body()] = None
) -> UserInfo:
    return UserInfo(
        displayName=who.user.name, roles=list(who.permissions), userId=UserId(id=who.id)
    )


@router.post("/serial_number/get", response_model=SerialNumber, summary="Serial number")
async def serial_number(
    ctx: Context, who: CurrentPrincipal, body: Annotated[EmptyRequest | None, Body()] = None
) -> SerialNumber:
    return SerialNumber(value=ctx.serial_number)


@router.post(
    "/jobs/describe",
    response_model=Describe,
    responses=error_responses(404),
    summary="A job in detail: totals, plan, progress, ETA, failure reasons",
)
async def describe_job(ctx: Context, who: CurrentPrincipal, body: JobIdRequest) -> Describe:
    who.require(PERM_LIST)
    return Describe.of(await _visible_job(ctx, who, body.jobId.id))


@router.post(
    "/jobs/report",
    response_model=Report,
    responses=error_responses(404),
    summary="Per-object results of a job",
)
async def job_report(ctx: Context, who: CurrentPrincipal, body: ReportRequest) -> Report:
    who.require(PERM_LIST)
    job = await _visible_job(ctx, who, body.jobId.id)
    outcome = body.outcome.value if body.outcome else None
    scope = {"op": "jobs/report", "caller": who.id, "job": job.id, "outcome": outcome}
    after = ctx.pages.open_int_cursor(body.pageToken, scope) if body.pageToken else None
    limit = _page_size(body.pageSize)
    rows = await ctx.store.list_results(job.id, outcome=outcome, after=after, limit=limit + 1)
    token = None
    if len(rows) > limit:
        rows = rows[:limit]
        token = ctx.pages.issue(rows[-1][0], scope)
    return Report(results=[ResultItem.of(r) for _, r in rows], pageToken=token)


@router.post(
    "/bucket/usage",
    response_model=BucketUsage,
    responses=error_responses(404, 503),
    summary="A bucket's stored usage figures",
)
async def bucket_usage(ctx: Context, who: CurrentPrincipal, body: BucketRequest) -> BucketUsage:
    who.require(PERM_LIST)
    await _require_bucket(ctx, body.bucketName)
    return BucketUsage.of(body.bucketName, await ctx.store.get_usage(body.bucketName))
