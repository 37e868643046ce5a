"""Bucket usage figures (SPEC §2.6 ``Usage``): counting, merging and deltas."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from objectjobs.storage.interface import ObjectVersion

SCALARS = (
    "currentObjects",
    "currentBytes",
    "noncurrentVersions",
    "noncurrentBytes",
    "deleteMarkers",
    "multipartUploads",
    "multipartParts",
    "multipartBytes",
)

_IS_DELETE_MARKER = attrgetter("is_delete_marker")
_IS_LATEST = attrgetter("is_latest")
_SIZE = attrgetter("size")
_STORAGE_CLASS = attrgetter("storage_class")


@dataclass
class Usage:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SCALARS, 0))
    by_class: dict[str, list[int]] = field(default_factory=dict)  # class -> [objects, bytes]

    def count_version(self, version: ObjectVersion) -> None:
        """Count one listing entry: current object, noncurrent version or delete marker."""
        if version.is_delete_marker:
            self.counts["deleteMarkers"] += 1
            return
        if version.is_latest:
            self.counts["currentObjects"] += 1
            self.counts["currentBytes"] += version.size
        else:
            self.counts["noncurrentVersions"] += 1
            self.counts["noncurrentBytes"] += version.size
        slot = self.by_class.setdefault(version.storage_class or "STANDARD", [0, 0])
        slot[0] += 1
        slot[1] += version.size

    def count_versions(self, versions: Sequence[ObjectVersion]) -> int:
        """``count_version`` of each entry; the bytes of those that are not delete markers."""
        # METRIC's examine counts every entry of the bucket: a page of current objects of
        # one storage class (any unversioned bucket) is counted by C loops over it, not a
        # method call per entry; anything else entry by entry.
        if (
            versions
            and all(map(_IS_LATEST, versions))
            and not any(map(_IS_DELETE_MARKER, versions))
            and len(classes := set(map(_STORAGE_CLASS, versions))) == 1
        ):
            size: int = sum(map(_SIZE, versions))
            self.counts["currentObjects"] += len(versions)
            self.counts["currentBytes"] += size
            slot = self.by_class.setdefault(classes.pop() or "STANDARD", [0, 0])
            slot[0] += len(versions)
            slot[1] += size
            return size
        size = 0
        for version in versions:
            self.count_version(version)
            if not version.is_delete_marker:
                size += version.size
        return size

    def count_upload(self, parts: int, size: int) -> None:
        self.counts["multipartUploads"] += 1
        self.counts["multipartParts"] += parts
        self.counts["multipartBytes"] += size

    def merge(self, other: Usage) -> None:
        for name, value in other.counts.items():
            self.counts[name] = self.counts.get(name, 0) + value
        for cls, (objects, size) in other.by_class.items():
            slot = self.by_class.setdefault(cls, [0, 0])
            slot[0] += objects
            slot[1] += size

    def to_dict(self) -> dict[str, Any]:
        return {
            **{name: self.counts.get(name, 0) for name in SCALARS},
            "byStorageClass": {
                cls: {"objects": objects, "bytes": size}
                for cls, (objects, size) in sorted(self.by_class.items())
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Usage:
        usage = cls()
        for name in SCALARS:
            usage.counts[name] = int(data.get(name, 0))
        for name, slot in (data.get("byStorageClass") or {}).items():
            usage.by_class[name] = [int(slot["objects"]), int(slot["bytes"])]
        return usage


def usage_delta(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
    """after - before, field by field (before None counts as all zero)."""
    old = Usage.from_dict(before or {})
    new = Usage.from_dict(after)
    classes = sorted(set(old.by_class) | set(new.by_class))
    return {
        **{name: new.counts[name] - old.counts[name] for name in SCALARS},
        "byStorageClass": {
            cls: {
                "objects": new.by_class.get(cls, [0, 0])[0] - old.by_class.get(cls, [0, 0])[0],
                "bytes": new.by_class.get(cls, [0, 0])[1] - old.by_class.get(cls, [0, 0])[1],
            }
            for cls in classes
        },
    }
