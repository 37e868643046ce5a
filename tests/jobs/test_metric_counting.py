"""The batch counting of METRIC_RECONCILIATION's examine (``Usage.count_versions``,
``PartitionCutter.fill``) counts exactly what counting entry by entry does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from objectjobs.partitioning import PartitionCutter
from objectjobs.storage.interface import ObjectVersion
from objectjobs.usage import Usage

WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def entry(
    key: str,
    size: int,
    *,
    latest: bool = True,
    marker: bool = False,
    cls: str | None = "STANDARD",
) -> ObjectVersion:
    # storage_class None: what a listing that names no class could give (counted STANDARD)
    version = ObjectVersion(key, "v", latest, marker, 0 if marker else size, None, WHEN)
    version.storage_class = cls  # type: ignore[assignment]
    return version


def current(n: int, cls: str | None = "STANDARD") -> list[ObjectVersion]:
    return [entry(f"k{i:04d}", i % 7, cls=cls) for i in range(n)]


PAGES = {
    "empty": [],
    "current": current(50),
    "no class given": current(20, cls=None),
    "one other class": current(20, cls="GLACIER"),
    "two classes": [*current(5), entry("x", 9, cls="GLACIER")],
    "a marker": [*current(5), entry("x", 0, marker=True)],
    "a noncurrent version": [*current(5), entry("x", 4, latest=False)],
}


@pytest.mark.parametrize("name", list(PAGES))
def test_count_versions_counts_as_entry_by_entry(name: str) -> None:
    page = PAGES[name]
    seed = {
        "currentObjects": 3,
        "currentBytes": 30,
        "byStorageClass": {"STANDARD": {"objects": 3, "bytes": 30}},
    }
    batch, single = Usage.from_dict(seed), Usage.from_dict(seed)
    size = batch.count_versions(page)
    for version in page:
        single.count_version(version)
    assert batch.to_dict() == single.to_dict()
    assert size == sum(v.size for v in page if not v.is_delete_marker)


def cuts_entry_by_entry(
    cutter: PartitionCutter, groups: list[list[ObjectVersion]], limit: int
) -> list[tuple[str | None, int, int]]:
    """What the engine did before ``fill``: add each group, cut once the limit is reached."""
    out = []
    for group in groups:
        cutter.add(group)
        if cutter.objects >= limit:
            task = cutter.cut(group[0].key)
            out.append((task.end_key, task.objects, task.bytes))
    return out


def cuts_filled(
    cutter: PartitionCutter, groups: list[list[ObjectVersion]], limit: int
) -> list[tuple[str | None, int, int]]:
    out = []
    counted = 0
    while counted < len(groups):
        counted = cutter.fill(groups, counted, limit)
        if cutter.objects >= limit:
            task = cutter.cut(groups[counted - 1][0].key)
            out.append((task.end_key, task.objects, task.bytes))
    return out


SINGLE = [[v] for v in current(100)]
WITH_MARKERS = [[entry(f"k{i:04d}", 5, marker=i % 9 == 0)] for i in range(100)]
VERSIONED = [
    [entry(f"k{i:04d}", 3), *([entry(f"k{i:04d}", 4, latest=False)] * (i % 3))] for i in range(100)
]


@pytest.mark.parametrize("groups", [SINGLE, WITH_MARKERS, VERSIONED, SINGLE[:1], []])
@pytest.mark.parametrize("limit", [1, 7, 100, 1000])
@pytest.mark.parametrize("already", [0, 5, 12])
def test_fill_cuts_where_adding_key_by_key_cuts(
    groups: list[list[ObjectVersion]], limit: int, already: int
) -> None:
    # ``already``: a resumed cut holding objects, possibly more than a lowered limit
    by_key = PartitionCutter(objects=already, bytes=3 * already, listed_to="a")
    filled = PartitionCutter(objects=already, bytes=3 * already, listed_to="a")
    assert cuts_filled(filled, groups, limit) == cuts_entry_by_entry(by_key, groups, limit)
    assert filled.to_dict() == by_key.to_dict()
