"""BATCH_REPLICATE's pure logic (SPEC §3.3): where objects go, and what each version needs.

Nothing here does I/O. ``resolve_*`` turn job parameters or a bucket's replication
configuration into :class:`Route` s; :func:`decide` merges one key's source versions with
the target's versions of the same key (both from listings, never a per-object HEAD) into
copy/skip decisions.

Identity ("already identical") without reading bodies: equal ETags mean equal content;
two plain MD5 ETags that differ mean different content. When the ETags cannot be compared
(one or both multipart with possibly different part layouts, or unknown, e.g. files written
to a local bucket by another tool), the target version counts as identical when its size is
equal and it was written no earlier than the source version (rclone's size + modtime rule;
it assumes the endpoints' clocks roughly agree).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from objectjobs.errors import InvalidRequest
from objectjobs.storage.interface import ObjectVersion

Filter = Literal["ALL", "NEW", "FAILED"]
FILTERS: tuple[Filter, ...] = ("ALL", "NEW", "FAILED")
_ARN = re.compile(r"^arn:aws:s3:::([^/]+)$")
_MD5 = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Route:
    """Where the objects matching a filter go."""

    bucket: str
    target: str | None = None  # name in settings.targets; None = the job's own storage
    prefix: str = ""
    tags: tuple[tuple[str, str], ...] = ()  # all must match (a tuple: routes are hashed)
    delete_markers: bool = False
    rule_id: str | None = None

    def matches(self, key: str, tags: Mapping[str, str] | None) -> bool:
        """Whether ``key`` (with ``tags``; None = unknown, only fine without a tag filter)
        falls under this route."""
        if not key.startswith(self.prefix):
            return False
        if not self.tags:
            return True
        return tags is not None and all(tags.get(k) == v for k, v in self.tags)

    def to_json(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "target": self.target,
            "prefix": self.prefix,
            "tags": dict(self.tags),
            "delete_markers": self.delete_markers,
            "rule_id": self.rule_id,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Route:
        return cls(
            bucket=data["bucket"],
            target=data.get("target"),
            prefix=data.get("prefix", ""),
            tags=tuple(sorted((data.get("tags") or {}).items())),
            delete_markers=bool(data.get("delete_markers")),
            rule_id=data.get("rule_id"),
        )


def replication_filter(params: Mapping[str, str]) -> Filter:
    value = params.get("replicationFilter", "ALL")
    if value not in FILTERS:
        raise InvalidRequest(f"jobParams.replicationFilter must be one of {list(FILTERS)}")
    return value


def explicit_route(
    source_bucket: str, params: Mapping[str, str], targets: Sequence[str]
) -> Route | None:
    """The route given by ``target``/``targetBucket``, None when neither is given."""
    target, bucket = params.get("target"), params.get("targetBucket")
    if target is None and bucket is None:
        return None
    if bucket is None:
        raise InvalidRequest("jobParams.target needs jobParams.targetBucket (the bucket there)")
    if target is not None and target not in targets:
        raise InvalidRequest(
            f"jobParams.target {target!r} is not a configured target; configured: {sorted(targets)}"
        )
    if target is None and bucket == source_bucket:
        raise InvalidRequest("jobParams.targetBucket is the source bucket itself")
    return Route(bucket=bucket, target=target)


def routes_from_config(config: Mapping[str, Any]) -> list[Route]:
    """The enabled rules of a replication configuration (boto3's shape), in the order S3
    applies them: highest ``Priority`` first; rules without one (the V1 schema) in the
    order given. Raises InvalidRequest when none is usable."""
    rules = [r for r in config.get("Rules", []) if r.get("Status") == "Enabled"]
    if not rules:
        raise InvalidRequest("the bucket's replication configuration has no enabled rule")
    indexed = sorted(enumerate(rules), key=lambda t: (-int(t[1].get("Priority", 0)), t[0]))
    routes = []
    for _, rule in indexed:
        arn = (rule.get("Destination") or {}).get("Bucket", "")
        m = _ARN.match(arn)
        if not m:
            raise InvalidRequest(
                f"replication rule {rule.get('ID')!r}: destination {arn!r} is not "
                "arn:aws:s3:::<bucket>"
            )
        prefix, tags = _rule_filter(rule)
        dm = (rule.get("DeleteMarkerReplication") or {}).get("Status") == "Enabled"
        routes.append(
            Route(
                bucket=m.group(1),
                prefix=prefix,
                tags=tuple(sorted(tags.items())),
                delete_markers=dm,
                rule_id=rule.get("ID"),
            )
        )
    return routes


def _rule_filter(rule: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    if "Filter" not in rule:
        return str(rule.get("Prefix", "")), {}
    f = rule["Filter"] or {}
    if "And" in f:
        f = f["And"]
        tags = {t["Key"]: t["Value"] for t in f.get("Tags", [])}
        return str(f.get("Prefix", "")), tags
    if "Tag" in f:
        return "", {f["Tag"]["Key"]: f["Tag"]["Value"]}
    return str(f.get("Prefix", "")), {}


def pick_route(routes: Sequence[Route], key: str, tags: Mapping[str, str] | None) -> Route | None:
    """The first route (in priority order) whose filter matches the key."""
    for route in routes:
        if route.matches(key, tags):
            return route
    return None


def needs_tags(routes: Sequence[Route], key: str) -> bool:
    """Whether choosing the route of ``key`` depends on its tags."""
    return any(r.tags and key.startswith(r.prefix) for r in routes)


# --- identity ----------------------------------------------------------------------------


def plain_md5(etag: str | None) -> str | None:
    """The ETag as a bare MD5 hex digest when it is one (a single-part upload), else None."""
    if not etag:
        return None
    bare = etag.strip('"').lower()
    return bare if _MD5.match(bare) else None


def identical(src: ObjectVersion, dst: ObjectVersion) -> bool:
    """Whether ``dst`` holds the same content as ``src`` (see the module docstring)."""
    if src.is_delete_marker or dst.is_delete_marker:
        return src.is_delete_marker and dst.is_delete_marker
    if src.size != dst.size:
        return False
    se, de = (src.etag or "").strip('"'), (dst.etag or "").strip('"')
    if se and se == de:
        return True
    if plain_md5(se) and plain_md5(de):
        return False
    return dst.last_modified >= src.last_modified


# --- decisions -----------------------------------------------------------------------------

Action = Literal["copy", "skip", "ignore"]


class Decision(NamedTuple):
    """What to do with one source version. ``ignore`` = outside the job's scope (counted
    processed, not reported); ``skip`` is reported with ``reason``. A named tuple: two are
    built per object of a job (planning, executing), at half a frozen dataclass's cost."""

    version: ObjectVersion
    action: Action
    reason: str = ""

    @property
    def size(self) -> int:
        return 0 if self.version.is_delete_marker else self.version.size


def decide(
    source: Sequence[ObjectVersion],
    target: Sequence[ObjectVersion],
    *,
    mode: Filter,
    history: bool,
    delete_markers: bool,
) -> list[Decision]:
    """Decisions for one key. ``source``/``target`` are its versions newest first (listing
    order). ``history``: source and target are both versioned, so every version is copied
    oldest first and the target's history should end up matching. Otherwise only the
    current version is considered. The FAILED filter is applied by the caller on top of
    ALL (it needs each candidate's replication status)."""
    if history:
        return _decide_history(source, target, mode, delete_markers)
    if not source:
        return []
    latest = source[0]
    # the lists and the search skipped for one version each side: every key of an
    # unversioned bucket, and called per key of every batch
    out = [Decision(v, "ignore") for v in source[1:]] if len(source) > 1 else []
    if latest.is_delete_marker:
        return [Decision(latest, "ignore"), *out]
    if len(target) <= 1:
        current = target[0] if target else None
    else:
        current = next((v for v in target if v.is_latest), target[0])
    if current is None or current.is_delete_marker:
        first = Decision(latest, "copy")
    elif mode == "NEW":
        first = Decision(latest, "skip", "exists on target")
    elif identical(latest, current):
        first = Decision(latest, "skip", "identical")
    else:
        first = Decision(latest, "copy")
    return [first, *out]


def _decide_history(
    source: Sequence[ObjectVersion],
    target: Sequence[ObjectVersion],
    mode: Filter,
    delete_markers: bool,
) -> list[Decision]:
    wanted = [v for v in reversed(source) if delete_markers or not v.is_delete_marker]
    out = [Decision(v, "ignore") for v in source if v.is_delete_marker and not delete_markers]
    have = [v for v in reversed(target) if delete_markers or not v.is_delete_marker]
    if mode == "NEW" and any(not v.is_delete_marker for v in target):
        return out + [Decision(v, "skip", "exists on target") for v in wanted]
    # Walk both histories oldest first; a source version found later in the target's
    # history is already there. After the first copy everything newer must be copied too,
    # or the target's order of versions would differ from the source's.
    j, copying = 0, False
    for v in wanted:
        if not copying:
            m = next((i for i in range(j, len(have)) if identical(v, have[i])), None)
            if m is not None:
                j = m + 1
                out.append(Decision(v, "skip", "identical"))
                continue
            copying = True
        out.append(Decision(v, "copy"))
    return out
