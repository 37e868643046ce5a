"""Listings for the S3 driver: requests signed by botocore, XML parsed here.

botocore's response parsing of a 1000-key ListObjects page costs an order of magnitude more
CPU than the request itself (see the numbers in the driver's docs). So the driver sends the
request through ``s3_http`` (signed there, sent with aiohttp) and parses the answer with
ElementTree. This also keeps versions and delete markers in the server's order, which
botocore splits into two lists.
"""

from __future__ import annotations

import functools
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime

from objectjobs.storage.interface import ObjectVersion
from objectjobs.storage.s3_headers import quote_etag
from objectjobs.storage.s3_http import S3Http, xml_text


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _key_decoder(root: ET.Element) -> Callable[[str], str]:
    # every list asks for encoding-type=url (XML 1.0 cannot carry every key);
    # S3 then encodes keys and markers like a form (space as '+'), as botocore decodes them
    if xml_text(root, "EncodingType") == "url":
        return _unquote_plus
    return str


def _unquote_plus(key: str) -> str:
    if "+" in key:
        key = key.replace("+", " ")
    if "%" not in key:
        return key
    # most encoded keys only have slashes encoded; urllib's general unquote costs ~20x more
    slashes = key.replace("%2F", "/")
    return slashes if "%" not in slashes else urllib.parse.unquote(key)


@functools.lru_cache(maxsize=256)  # a handful of element names; bounded all the same
def _strip_ns(tag: str) -> str:
    return tag.rpartition("}")[2]


def _entries(root: ET.Element, kinds: tuple[str, ...]) -> Iterator[tuple[int, str, dict[str, str]]]:
    """(position, kind, {child tag: text}) of the root's entries of the given kinds: one
    pass over each entry's children (a find() per field costs several times more on a
    1000-entry page, parsed five times per key in a replication job)."""
    for i, el in enumerate(root):
        kind = _strip_ns(el.tag)
        if kind in kinds:
            yield i, kind, {_strip_ns(c.tag): c.text or "" for c in el}


def parse_objects_page(body: bytes) -> tuple[list[ObjectVersion], str | None]:
    """A ListObjectsV2 page: entries and the continuation token (None when done)."""
    root = ET.fromstring(body)
    decode = _key_decoder(root)
    out = [
        ObjectVersion(
            key=decode(f.get("Key", "")),
            version_id=None,
            is_latest=True,
            is_delete_marker=False,
            size=int(f.get("Size") or 0),
            etag=quote_etag(f.get("ETag")),
            last_modified=_parse_time(f.get("LastModified", "")),
            storage_class=f.get("StorageClass") or "STANDARD",
        )
        for _, _, f in _entries(root, ("Contents",))
    ]
    truncated = xml_text(root, "IsTruncated") == "true"
    token = xml_text(root, "NextContinuationToken") if truncated else None
    return out, token or None


def parse_versions_page(
    body: bytes,
) -> tuple[list[ObjectVersion], tuple[str, str] | None]:
    """A ListObjectVersions page: entries in S3 order and the next (key, version) marker."""
    root = ET.fromstring(body)
    decode = _key_decoder(root)
    rows: list[tuple[tuple[str, bool, float, int], ObjectVersion]] = []
    for i, kind, f in _entries(root, ("Version", "DeleteMarker")):
        marker = kind == "DeleteMarker"
        latest = f.get("IsLatest") == "true"
        modified = _parse_time(f.get("LastModified", ""))
        v = ObjectVersion(
            key=decode(f.get("Key", "")),
            version_id=f.get("VersionId") or "null",
            is_latest=latest,
            is_delete_marker=marker,
            size=0 if marker else int(f.get("Size") or 0),
            etag=None if marker else quote_etag(f.get("ETag")),
            last_modified=modified,
            storage_class="STANDARD" if marker else f.get("StorageClass") or "STANDARD",
        )
        rows.append(((v.key, not latest, -modified.timestamp(), i), v))
    # some servers (moto) send all versions, then all markers: restore S3's order, a key's
    # versions newest first; servers that already interleave keep their own order on ties
    rows.sort(key=lambda r: r[0])
    nxt = None
    if xml_text(root, "IsTruncated") == "true":
        nxt = (decode(xml_text(root, "NextKeyMarker")), xml_text(root, "NextVersionIdMarker"))
    return [v for _, v in rows], nxt


class RawLister:
    """Lists through signed requests (retried there when transient)."""

    def __init__(self, http: S3Http) -> None:
        self._http = http

    async def _fetch(self, bucket: str, query: dict[str, str]) -> bytes:
        # keys come back URL-encoded: XML 1.0 cannot carry every key (see _key_decoder)
        query["encoding-type"] = "url"
        r = await self._http.request("GET", bucket, query=query, context=f"list {bucket}")
        body: bytes = r.body
        return body

    async def _pages(
        self,
        bucket: str,
        query: dict[str, str],
        parse: Callable[[bytes], tuple[list[ObjectVersion], dict[str, str] | None]],
        end_key: str | None,
        page_size: int,
    ) -> AsyncIterator[list[ObjectVersion]]:
        """Pages of ``page_size`` entries up to ``end_key``. ``parse`` reads one answer:
        its entries and the query changes that ask for the next one (None: the last; an
        empty value removes that parameter)."""
        pending: list[ObjectVersion] = []
        while True:
            entries, nxt = parse(await self._fetch(bucket, query))
            if end_key is not None and entries and entries[-1].key > end_key:
                entries = [e for e in entries if e.key <= end_key]
                nxt = None
            pending.extend(entries)
            while len(pending) >= page_size:
                yield pending[:page_size]
                pending = pending[page_size:]
            if nxt is None:
                break
            for name, value in nxt.items():
                if value:
                    query[name] = value
                else:
                    query.pop(name, None)
        if pending:
            yield pending

    def list_objects(
        self, bucket: str, prefix: str, start_after: str, end_key: str | None, page_size: int
    ) -> AsyncIterator[list[ObjectVersion]]:
        query = {"list-type": "2", "max-keys": str(min(page_size, 1000))}
        if prefix:
            query["prefix"] = prefix
        if start_after:
            query["start-after"] = start_after

        def parse(body: bytes) -> tuple[list[ObjectVersion], dict[str, str] | None]:
            entries, token = parse_objects_page(body)
            return entries, None if token is None else {"continuation-token": token}

        return self._pages(bucket, query, parse, end_key, page_size)

    def list_versions(
        self, bucket: str, prefix: str, start_after: str, end_key: str | None, page_size: int
    ) -> AsyncIterator[list[ObjectVersion]]:
        query = {"versions": "", "max-keys": str(min(page_size, 1000))}
        if prefix:
            query["prefix"] = prefix
        if start_after:
            # a key marker alone resumes at the first key after it, all its versions
            query["key-marker"] = start_after

        def parse(body: bytes) -> tuple[list[ObjectVersion], dict[str, str] | None]:
            entries, nxt = parse_versions_page(body)
            if start_after and entries and entries[0].key <= start_after:
                # S3 skips every version of the marker key; some servers (moto) only its first
                entries = [e for e in entries if e.key > start_after]
            if nxt is None:
                return entries, None
            return entries, {"key-marker": nxt[0], "version-id-marker": nxt[1]}

        return self._pages(bucket, query, parse, end_key, page_size)
