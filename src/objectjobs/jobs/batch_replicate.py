"""BATCH_REPLICATE (SPEC §3.3): copy a bucket's objects to a target bucket, idempotently.

PROCESS and EXECUTE both merge the batch's source versions with a listing of the target
over exactly the batch's key range, ``(ctx.batch_after, last key]``, so deciding never
needs a per-object HEAD on the target, and EXECUTE re-decides from what is there now
(a resumed or repeated job copies only what is still missing). Each key's versions are
copied oldest first by one coroutine; keys run in parallel through ``ctx.run_each``.
Where the driver copies in batches (local→local), keys with one object to copy go to it
in chunks, a chunk being one item of ``ctx.run_each``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from objectjobs.copying import (
    ByteBudget,
    CopyOptions,
    Endpoint,
    batches_copies,
    copy_version,
    copy_versions,
    same_endpoint,
    source_version_id,
)
from objectjobs.errors import (
    BucketNotFound,
    ConfigurationNotFound,
    InvalidRequest,
    JobFailed,
    NotSupported,
    ObjectNotFound,
    StorageError,
)
from objectjobs.handler import ExecBatch, JobContext, JobHandler, KeyGroup, PlanBatch
from objectjobs.models import NewJob, Outcome, Progress, ResultRecord
from objectjobs.replication import (
    Decision,
    Filter,
    Route,
    decide,
    explicit_route,
    needs_tags,
    pick_route,
    replication_filter,
    routes_from_config,
)
from objectjobs.settings import Settings
from objectjobs.storage.interface import ObjectVersion, Storage

MiB = 1024 * 1024
JOB_TYPE = "BATCH_REPLICATE"
_RESOURCE = "batch_replicate.setup"  # the task run's resolved setup, in ctx.resources
# a chunk of batched copies: enough to spread a thread hop's cost, few enough bytes that
# a chunk of large objects does not hold up the batch
_CHUNK_KEYS = 32
_CHUNK_BYTES = 16 * MiB


async def resolve_routes(
    bucket: str, params: Mapping[str, str], storage: Storage, settings: Settings
) -> list[Route]:
    """The job's routes from its parameters or the bucket's replication configuration.
    InvalidRequest (with the reason) when nothing resolves."""
    route = explicit_route(bucket, params, list(settings.targets))
    if route is not None:
        if route.target is None and not await storage.bucket_exists(route.bucket):
            raise InvalidRequest(f"target bucket {route.bucket!r} does not exist")
        return [route]
    try:
        config = await storage.get_bucket_config(bucket, "replication")
    except (ConfigurationNotFound, NotSupported) as exc:
        raise InvalidRequest(
            f"no target: give jobParams.targetBucket (and target) or set a replication "
            f"configuration on {bucket!r} ({exc.message})"
        ) from exc
    routes = routes_from_config(config)
    for r in {r.bucket for r in routes}:
        if not await storage.bucket_exists(r):
            raise InvalidRequest(f"replication destination bucket {r!r} does not exist")
    return routes


@dataclass
class _Setup:
    """What a task works with, resolved once per task run."""

    routes: list[Route]
    mode: Filter
    targets: dict[str | None, Storage]
    history: dict[str, bool]  # per route bucket: versions copied as a history
    keep_lock: dict[str, bool]
    part_size: dict[str | None, int]
    budget: ByteBudget
    failed: set[tuple[str, str | None]] = field(default_factory=set)


def _skipped(d: Decision) -> ResultRecord:
    v = d.version
    return ResultRecord(v.key, v.version_id, "copy", Outcome.SKIPPED, message=d.reason)


@dataclass
class _KeyWork:
    """One key's planned copies; progress survives run_each's retries of the item."""

    route: Route
    decisions: list[Decision]
    done: int = 0
    results: list[tuple[ResultRecord, int]] = field(default_factory=list)


@dataclass
class _Chunk:
    """Keys with one object each to copy, copied in one driver call (``copy_versions``)."""

    route: Route
    keys: list[_KeyWork]


@dataclass
class _Tally:
    """ExecBatch.record's counting, one Progress per batch instead of two per result."""

    results: list[ResultRecord] = field(default_factory=list)
    ignored: int = 0  # out of scope: counted processed and skipped, not reported
    failed: int = 0
    skipped: int = 0
    bytes: int = 0

    def add(self, result: ResultRecord, size: int = 0) -> None:
        self.results.append(result)
        if result.outcome is Outcome.FAILED:
            self.failed += 1
        elif result.outcome is Outcome.SKIPPED:
            self.skipped += 1
        else:
            self.bytes += size

    def batch(self) -> ExecBatch:
        done = len(self.results) - self.failed + self.ignored
        progress = Progress(
            processed=done,
            failed=self.failed,
            skipped=self.skipped + self.ignored,
            bytes=self.bytes,
        )
        return ExecBatch(progress=progress, results=self.results)


def _failed(d: Decision, error: StorageError) -> ResultRecord:
    v = d.version
    return ResultRecord(
        v.key, v.version_id, "copy", Outcome.FAILED, error_code=error.code, message=error.message
    )


class BatchReplicate(JobHandler):
    listing = "versions"
    # planning lists the target over the batch's range, about what listing the source
    # costs: EXAMINING does it as it lists, saving a listing of each side
    plans_while_examining = True

    async def validate(self, job: NewJob, storage: Storage, settings: Settings) -> None:
        replication_filter(job.params)
        await resolve_routes(job.bucket, job.params, storage, settings)

    async def prepare(self, ctx: JobContext) -> None:
        try:
            await self._setup(ctx)
        except InvalidRequest as exc:
            raise JobFailed(exc.message) from exc

    async def _setup(self, ctx: JobContext) -> _Setup:
        cached = ctx.resources.get(_RESOURCE)
        if isinstance(cached, _Setup):
            return cached
        bucket, settings = ctx.job.bucket, ctx.settings
        routes = await resolve_routes(bucket, ctx.params, ctx.storage, settings)
        targets: dict[str | None, Storage] = {None: ctx.storage}
        part_size: dict[str | None, int] = {None: settings.storage.multipart_chunk_size}
        for name in {r.target for r in routes if r.target is not None}:
            targets[name] = ctx.target_storage(name)
            part_size[name] = settings.targets[name].multipart_chunk_size
        source_versioning = await ctx.storage.get_versioning(bucket)
        history, keep_lock = {}, {}
        for r in routes:
            dst = targets[r.target]
            try:
                dst_versioning = await dst.get_versioning(r.bucket)
            except BucketNotFound as exc:
                raise InvalidRequest(f"target bucket {r.bucket!r} does not exist") from exc
            history[r.bucket] = source_versioning is not None and dst_versioning == "Enabled"
            # Object Lock needs versioning: an unversioned source has nothing to keep
            keep_lock[r.bucket] = (
                source_versioning is not None
                and ctx.storage.capabilities.object_lock
                and dst.capabilities.object_lock
            )
        mode = replication_filter(ctx.params)
        setup = _Setup(
            routes=routes,
            mode=mode,
            targets=targets,
            history=history,
            keep_lock=keep_lock,
            part_size=part_size,
            # a worker runs up to 8 tasks: their copy buffers share half its memory budget
            budget=ByteBudget(max(settings.worker.max_memory_mb * MiB // 16, 4 * 5 * MiB)),
        )
        if mode == "FAILED":
            setup.failed = await ctx.store.failed_keys(bucket, JOB_TYPE)
        ctx.resources[_RESOURCE] = setup
        return setup

    # --- deciding ---------------------------------------------------------------------

    async def _decide(
        self, ctx: JobContext, setup: _Setup, groups: Sequence[KeyGroup]
    ) -> list[tuple[Route | None, list[Decision]]]:
        routed = await self._route(ctx, setup, groups)
        listings: dict[tuple[str | None, str], dict[str, list[ObjectVersion]]] = {}
        last = groups[-1][0].key
        # a target's ETag decides nothing next to a source version without one (identical()
        # then compares size and time): without any, the target may be listed without them
        etags = any(v.etag for g in groups for v in g)
        # routes are setup.routes' objects: told apart by identity, not by hashing each
        have_by_route: dict[int, dict[str, list[ObjectVersion]]] = {}
        for used in routed:
            if used is None or id(used) in have_by_route:
                continue
            where = (used.target, used.bucket)
            if where not in listings:
                listings[where] = await self._target_listing(ctx, setup, used, last, etags)
            have_by_route[id(used)] = listings[where]
        out: list[tuple[Route | None, list[Decision]]] = []
        mode, history = setup.mode, setup.history
        for group, route in zip(groups, routed, strict=True):
            if route is None:
                out.append((None, [Decision(v, "ignore") for v in group]))
                continue
            have = have_by_route[id(route)].get(group[0].key, ())
            decisions = decide(
                group,
                have,
                mode=mode,
                history=history[route.bucket],
                delete_markers=route.delete_markers,
            )
            out.append((route, decisions))
        if setup.mode == "FAILED":
            await self._only_failed(ctx, setup, out)
        return out

    async def _route(
        self, ctx: JobContext, setup: _Setup, groups: Sequence[KeyGroup]
    ) -> list[Route | None]:
        """Each key's route; tag filters need the current version's tags (source GETs)."""
        routes = setup.routes
        if len(routes) == 1 and not routes[0].prefix and not routes[0].tags:
            return [routes[0]] * len(groups)  # every key: an explicit targetBucket
        tagged = [g for g in groups if needs_tags(routes, g[0].key)]
        tags: dict[str, dict[str, str] | None] = {}
        if tagged:

            async def fetch(group: KeyGroup) -> dict[str, str] | None:
                current = next((v for v in group if not v.is_delete_marker), None)
                if current is None:
                    return None
                try:
                    return await ctx.storage.get_tags(
                        ctx.job.bucket, current.key, source_version_id(current)
                    )
                except ObjectNotFound:
                    return None

            fetched = await ctx.run_each(fetch, tagged)
            for group, got in zip(tagged, fetched, strict=True):
                if isinstance(got, BaseException):
                    if not isinstance(got, StorageError):
                        raise got
                    got = None
                tags[group[0].key] = got
        return [pick_route(setup.routes, g[0].key, tags.get(g[0].key)) for g in groups]

    async def _target_listing(
        self, ctx: JobContext, setup: _Setup, route: Route, last: str, etags: bool
    ) -> dict[str, list[ObjectVersion]]:
        dst = setup.targets[route.target]
        lister = dst.list_versions if etags else dst.list_versions_sized
        by_key: dict[str, list[ObjectVersion]] = {}
        try:
            async for page in lister(
                route.bucket, prefix=ctx.prefix, start_after=ctx.batch_after, end_key=last
            ):
                for v in page:
                    by_key.setdefault(v.key, []).append(v)
        except BucketNotFound as exc:
            raise JobFailed(f"target bucket {route.bucket!r} no longer exists") from exc
        return by_key

    async def _only_failed(
        self, ctx: JobContext, setup: _Setup, decided: list[tuple[Route | None, list[Decision]]]
    ) -> None:
        """FAILED filter: keep the copies of versions that failed in an earlier job or
        whose replication status is FAILED (a source HEAD per remaining candidate)."""
        candidates = [
            d.version
            for _, ds in decided
            for d in ds
            if d.action == "copy" and (d.version.key, d.version.version_id) not in setup.failed
        ]

        async def status(v: ObjectVersion) -> str | None:
            if v.is_delete_marker:
                return None
            try:
                info = await ctx.storage.head(ctx.job.bucket, v.key, source_version_id(v))
            except ObjectNotFound:
                return None
            return info.replication_status

        statuses = await ctx.run_each(status, candidates)
        failed_now = {
            (v.key, v.version_id)
            for v, s in zip(candidates, statuses, strict=True)
            if s == "FAILED"
        }
        wanted = setup.failed | failed_now
        for i, (route, ds) in enumerate(decided):
            # everything else is outside a FAILED job's scope, identical or not
            decided[i] = (
                route,
                [
                    d
                    if (d.version.key, d.version.version_id) in wanted
                    else Decision(d.version, "ignore")
                    for d in ds
                ],
            )

    # --- phases -----------------------------------------------------------------------

    async def plan(self, ctx: JobContext, groups: Sequence[KeyGroup]) -> PlanBatch:
        setup = await self._setup(ctx)
        batch = PlanBatch()
        counts = {"copy": [0, 0], "skip": [0, 0]}  # action -> [objects, bytes]
        for _, decisions in await self._decide(ctx, setup, groups):
            for d in decisions:
                slot = counts["copy" if d.action == "copy" else "skip"]
                slot[0] += 1
                slot[1] += d.size
        for action, (n, size) in counts.items():
            if n:
                batch.evaluated += n
                batch.add(action, size, n)
        return batch

    async def execute(self, ctx: JobContext, groups: Sequence[KeyGroup]) -> ExecBatch:
        setup = await self._setup(ctx)
        tally = _Tally()
        work: list[_KeyWork] = []
        for route, decisions in await self._decide(ctx, setup, groups):
            if len(decisions) == 1:  # one version: every key of an unversioned bucket
                d = decisions[0]
                if d.action == "copy":
                    assert route is not None
                    work.append(_KeyWork(route, [d]))
                elif d.action == "skip":
                    tally.add(_skipped(d))
                else:
                    tally.ignored += 1
                continue
            reported = [d for d in decisions if d.action != "ignore"]
            tally.ignored += len(decisions) - len(reported)
            if all(d.action == "skip" for d in reported):
                # nothing to copy: recorded here, not as a concurrent item (a re-run of a
                # replicated bucket is all skips)
                for d in reported:
                    tally.add(_skipped(d))
                continue
            assert route is not None
            work.append(_KeyWork(route, reported))

        items = self._items(ctx, setup, work)

        async def run(item: _KeyWork | _Chunk) -> None:
            if isinstance(item, _Chunk):
                await self._copy_chunk(ctx, setup, item)
            else:
                await self._copy_key(ctx, setup, item)

        outcomes = await ctx.run_each(run, items)
        errors: dict[int, StorageError] = {}  # id(_KeyWork) -> what ended its item
        for item, outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, StorageError):
                    raise outcome
                for w in item.keys if isinstance(item, _Chunk) else (item,):
                    errors[id(w)] = outcome
        # recorded in key order, however the keys were grouped into items
        for w in work:
            for result, size in w.results:
                tally.add(result, size)
            error = errors.get(id(w))
            if error is not None:
                for d in w.decisions[w.done :]:
                    tally.add(_failed(d, error))
        return tally.batch()

    def _items(
        self, ctx: JobContext, setup: _Setup, work: list[_KeyWork]
    ) -> list[_KeyWork | _Chunk]:
        """run_each's items: keys with one object to copy where the driver batches copies
        go in chunks (of up to _CHUNK_KEYS, fewer when that leaves run_each's slots idle);
        every other key is an item of its own."""
        items: list[_KeyWork | _Chunk] = []
        # by id: routes are setup.routes' objects, and hashing one costs a tuple's hash
        batched: dict[int, tuple[Route, list[_KeyWork]]] = {}
        batching: dict[int, bool] = {}
        for w in work:
            d = w.decisions[0]
            if len(w.decisions) == 1 and d.action == "copy" and not d.version.is_delete_marker:
                rid = id(w.route)
                if rid not in batching:
                    batching[rid] = batches_copies(*self._endpoints(ctx, setup, w.route))
                if batching[rid]:
                    if rid in batched:
                        batched[rid][1].append(w)
                    else:
                        batched[rid] = (w.route, [w])
                    continue
            items.append(w)
        slots = max(1, ctx.settings.worker.concurrency)
        for route, keys in batched.values():
            most = max(1, min(_CHUNK_KEYS, len(keys) // slots))
            chunk: list[_KeyWork] = []
            size = 0
            for w in keys:
                chunk.append(w)
                size += w.decisions[0].size
                if len(chunk) >= most or size >= _CHUNK_BYTES:
                    items.append(_Chunk(route, chunk))
                    chunk, size = [], 0
            if chunk:
                items.append(_Chunk(route, chunk))
        return items

    def _endpoints(
        self, ctx: JobContext, setup: _Setup, route: Route
    ) -> tuple[Endpoint, Endpoint, CopyOptions]:
        dst_storage = setup.targets[route.target]
        opts = CopyOptions(
            part_size=setup.part_size[route.target],
            keep_lock=setup.keep_lock[route.bucket] and same_endpoint(ctx.storage, dst_storage),
        )
        return Endpoint(ctx.storage, ctx.job.bucket), Endpoint(dst_storage, route.bucket), opts

    async def _copy_key(self, ctx: JobContext, setup: _Setup, item: _KeyWork) -> None:
        """Copy one key's versions oldest first, resuming after the last one done when
        run_each retries after a transient error."""
        src, dst, opts = self._endpoints(ctx, setup, item.route)
        while item.done < len(item.decisions):
            d = item.decisions[item.done]
            v = d.version
            if d.action == "skip":
                result, size = _skipped(d), 0
            else:
                try:
                    size = await copy_version(src, v, dst, opts, setup.budget)
                    result = ResultRecord(v.key, v.version_id, "copy", Outcome.SUCCEEDED)
                except ObjectNotFound:
                    size = 0
                    result = ResultRecord(
                        v.key, v.version_id, "copy", Outcome.SKIPPED, message="deleted at source"
                    )
            item.results.append((result, size))
            item.done += 1

    async def _copy_chunk(self, ctx: JobContext, setup: _Setup, chunk: _Chunk) -> None:
        """Copy a chunk's keys in one driver call. A key whose copy failed for good is
        recorded failed, as _copy_key's failure would be; a transient failure is raised
        once the others are recorded, so run_each's retry copies only what is left."""
        src, dst, _ = self._endpoints(ctx, setup, chunk.route)
        todo = [w for w in chunk.keys if w.done == 0]
        got = await copy_versions(src, [w.decisions[0].version for w in todo], dst)
        transient: StorageError | None = None
        for w, outcome in zip(todo, got, strict=True):
            d = w.decisions[0]
            v = d.version
            if isinstance(outcome, int):
                w.results.append(
                    (ResultRecord(v.key, v.version_id, "copy", Outcome.SUCCEEDED), outcome)
                )
            elif isinstance(outcome, ObjectNotFound):
                w.results.append(
                    (
                        ResultRecord(
                            v.key,
                            v.version_id,
                            "copy",
                            Outcome.SKIPPED,
                            message="deleted at source",
                        ),
                        0,
                    )
                )
            elif outcome.retryable:
                transient = transient or outcome
                continue
            else:
                w.results.append((_failed(d, outcome), 0))
            w.done = 1
        if transient is not None:
            raise transient
