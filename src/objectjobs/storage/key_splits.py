"""Cutting a bucket's key space into ranges without listing it (``Storage.key_splits``).

A driver that can read one "directory" level cheaply (a local directory; an S3 listing
with ``delimiter=/`` that fits in one page) hands this module that reading; the module
walks down from the prefix, breadth first, until a level has enough entries, and picks
boundaries evenly among them. Entries stand in for the keys below them as if each held
the same number, so the ranges are as even as the tree is: a guess, never a count. Any
boundaries are correct (a key falls in exactly one range whatever they are); good ones
only make the ranges' sizes alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

#: ``children(directory)``: the sort keys of the entries directly below ``directory`` (a
#: key prefix ending in "/", or ""), a subdirectory's with a trailing "/", in any order;
#: None when the driver cannot tell cheaply (too many to read in one go).
Children = Callable[[str], Awaitable[list[str] | None]]

#: directory readings one split may cost, at most
MAX_READS = 64


def in_scope(sort_key: str, is_dir: bool, prefix: str, start_after: str) -> bool:
    """Whether an entry may hold keys under ``prefix`` and after ``start_after`` (for a
    directory, whose sort key ends in "/": some key below it)."""
    if is_dir:
        if not (sort_key.startswith(prefix) or prefix.startswith(sort_key)):
            return False
        # every key below starts with sort_key: all are <= start_after only when
        # start_after sorts after sort_key without lying inside the subtree
        return not (start_after > sort_key and not start_after.startswith(sort_key))
    return sort_key.startswith(prefix) and sort_key > start_after


async def split_keys(children: Children, prefix: str, start_after: str, parts: int) -> list[str]:
    """Up to ``parts - 1`` ascending boundaries, each after ``start_after``: the ranges
    (start_after, b1], (b1, b2], ..., (bn, end) hold about the same number of entries of
    the shallowest level below ``prefix`` that has ``parts`` of them (or the deepest
    reached within ``MAX_READS`` readings). [] when no level has two entries in scope."""
    if parts < 2:
        return []
    top = prefix[: prefix.rfind("/") + 1]
    level = await _expand([top], children, prefix, start_after)
    if level is None:
        return []
    reads = 1
    while len(level) < parts:
        dirs = sum(e.endswith("/") for e in level)
        if not dirs or reads + dirs > MAX_READS:
            break
        deeper = await _expand(level, children, prefix, start_after)
        reads += dirs
        if deeper is None or len(deeper) <= len(level):
            break
        level = deeper
    return _boundaries(level, start_after, parts)


async def _expand(
    level: list[str], children: Children, prefix: str, start_after: str
) -> list[str] | None:
    """``level`` with each directory replaced by its entries in scope, in key order; None
    when a directory cannot be read cheaply."""
    out: list[str] = []
    for entry in level:
        if entry and not entry.endswith("/"):  # a file ("" is the bucket's top)
            out.append(entry)
            continue
        below = await children(entry)
        if below is None:
            return None
        out.extend(sorted(e for e in below if in_scope(e, e.endswith("/"), prefix, start_after)))
    return out


def _boundaries(entries: list[str], start_after: str, parts: int) -> list[str]:
    """Boundaries before evenly spaced entries, each range holding at least one entry."""
    count = len(entries)
    wanted = min(parts, count)
    picked: list[str] = []
    covered = -1  # index of the last entry the ranges so far hold
    for i in range(1, wanted):
        at = i * count // wanted  # the entry that should open the next range
        if entries[at].endswith("/"):
            # a directory's sort key is above every key sorted before it, below its own
            bound, last = entries[at], at - 1
        elif not entries[at - 1].endswith("/"):
            bound, last = entries[at - 1], at - 1  # a file's key: the last of its range
        else:
            # a file after a directory: above every key in it; the file ends the range
            bound, last = entries[at], at
        if covered < last < count - 1 and bound > start_after:
            picked.append(bound)
            covered = last
    return picked
