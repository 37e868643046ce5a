"""Cutting a job's listing into PROCESS partitions while EXAMINING (SPEC §3.1).

The cut in progress is plain data saved with every EXAMINE checkpoint, in the same
transaction as the partitions it completed, so a worker taking the task over continues the
listing exactly where the last commit left it: no partition is lost, repeated or
overlapped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter
from typing import Any

from objectjobs.models import Task
from objectjobs.storage.interface import ObjectVersion
from objectjobs.store.interface import NewTask

_FIRST = itemgetter(0)
_IS_DELETE_MARKER = attrgetter("is_delete_marker")
_SIZE = attrgetter("size")


@dataclass
class PartitionCutter:
    """Key ranges of about ``worker.partition_objects`` objects, in listing order."""

    #: seq of the partition being filled
    seq: int = 0
    #: exclusive lower bound of that partition
    start: str = ""
    objects: int = 0
    bytes: int = 0
    #: the listing is done up to this key (inclusive)
    listed_to: str = ""
    total_objects: int = 0
    total_bytes: int = 0
    #: the handler's plan state for the partition being filled, when it plans while
    #: examining (it becomes that PROCESS task's state)
    partition_state: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def resumed(
        cls,
        saved: dict[str, Any] | None,
        existing: Sequence[Task],
        *,
        start: str = "",
        first_seq: int = 0,
    ) -> PartitionCutter:
        """The cut of a key range starting after ``start``, its partitions numbered from
        ``first_seq``, as last checkpointed; without a checkpoint (a fresh start, or a run
        by a version that committed partitions on their own), after the partitions of
        the range already created (``existing``)."""
        if saved is not None:
            return cls(**saved)
        if existing:
            start = existing[-1].end_key or start
        return cls(
            seq=first_seq + len(existing),
            start=start,
            listed_to=start,
            total_objects=sum(t.objects for t in existing),
            total_bytes=sum(t.bytes for t in existing),
        )

    def add(self, group: Sequence[ObjectVersion]) -> None:
        """Count one key's versions into the partition being filled."""
        first = group[0]
        if len(group) == 1:  # the common case, on the hot path of every listing
            self.objects += 1
            self.bytes += 0 if first.is_delete_marker else first.size
        else:
            self.objects += len(group)
            self.bytes += sum(v.size for v in group if not v.is_delete_marker)
        self.listed_to = first.key

    def fill(self, groups: Sequence[Sequence[ObjectVersion]], start: int, limit: int) -> int:
        """``add`` ``groups[start:]`` in order until the partition holds ``limit`` objects or
        more (that group included); the index after the last group added."""
        # every key has a version: no more than ``room`` groups can fit
        end = min(len(groups), start + max(1, limit - self.objects))
        chunk = groups[start:end]
        if chunk and sum(map(len, chunk)) == len(chunk):
            # one version per key (every listing of an unversioned bucket): counted by C
            # loops over the batch, not a call per key
            firsts = list(map(_FIRST, chunk))
            self.objects += len(firsts)
            if any(map(_IS_DELETE_MARKER, firsts)):
                self.bytes += sum(v.size for v in firsts if not v.is_delete_marker)
            else:
                self.bytes += sum(map(_SIZE, firsts))
            self.listed_to = firsts[-1].key
            return end
        for i in range(start, len(groups)):
            self.add(groups[i])
            if self.objects >= limit:
                return i + 1
        return len(groups)

    def cut(self, end_key: str | None) -> NewTask:
        """Close the partition being filled at ``end_key`` (None: open-ended, the last)."""
        state = self.partition_state
        task = NewTask(
            self.seq,
            self.start,
            end_key,
            self.objects,
            self.bytes,
            state_data=state,
            # a partition planned while examining is done as far as that plan reaches
            checkpoint=state.get("planned_to"),
        )
        self.total_objects += self.objects
        self.total_bytes += self.bytes
        self.seq += 1
        self.start = end_key or ""
        self.objects = self.bytes = 0
        self.partition_state = {}
        return task

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
