"""Listings for the S3 driver: requests signed and sent by ``s3_http``, XML parsed here.

botocore's response parsing of a 1000-key ListObjects page costs an order of magnitude more
CPU than the request itself (see the numbers in the driver's docs). So the driver sends the
request through ``s3_http`` (signed there, sent with aiohttp) and parses the answer here,
keeping versions and delete markers in the server's order (botocore splits them in two).

A page is read by one regular expression when its entries have the element order RGW and
AWS send (a third of ElementTree's CPU), and by ElementTree otherwise (moto, any surprise):
the fast reading is used only when it accounts for every entry of the page. The next page
is requested as soon as its marker is read, before the page is parsed, so the server's
latency and our parsing overlap. ``key_splits`` reads a "directory" level the same way:
one ``delimiter=/`` page (``level_of``).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import re
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime

from objectjobs.storage.interface import ObjectVersion
from objectjobs.storage.s3_headers import quote_etag
from objectjobs.storage.s3_http import S3Http, xml_text


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _url_decoder(encoding_type: str) -> Callable[[str], str]:
    # every list asks for encoding-type=url (XML 1.0 cannot carry every key);
    # S3 then encodes keys and markers like a form (space as '+'), as botocore decodes them
    return _unquote_plus if encoding_type == "url" else str


def _key_decoder(root: ET.Element) -> Callable[[str], str]:
    return _url_decoder(xml_text(root, "EncodingType"))


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


# Entry fields in the order RGW and AWS send them; StorageClass may be absent.
_VERSION_RE = re.compile(
    r"<(Version|DeleteMarker)><Key>([^<]*)</Key><VersionId>([^<]*)</VersionId>"
    r"<IsLatest>(true|false)</IsLatest><LastModified>([^<]*)</LastModified>"
    r"(?:<ETag>([^<]*)</ETag><Size>([0-9]+)</Size>(?:<StorageClass>([^<]*)</StorageClass>)?)?"
)
_CONTENTS_RE = re.compile(
    r"<Contents><Key>([^<]*)</Key><LastModified>([^<]*)</LastModified>"
    r"<ETag>([^<]*)</ETag><Size>([0-9]+)</Size>(?:<StorageClass>([^<]*)</StorageClass>)?"
)
# the five named entities; character references ("&#...;") send a page to ElementTree
_ENTITIES = (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&amp;", "&"))


def _unescape(text: str) -> str:
    if "&" not in text:
        return text
    for entity, char in _ENTITIES:  # &amp; last, so "&amp;lt;" stays "&lt;"
        text = text.replace(entity, char)
    return text


@functools.lru_cache(maxsize=16)
def _top_re(tag: str) -> re.Pattern[str]:
    return re.compile(f"<{tag}>([^<]*)</{tag}>|<{tag}/>")


def _top(text: str, tag: str) -> str:
    """A top-level element's text ("" when absent or empty); entries never hold these."""
    m = _top_re(tag).search(text)
    return _unescape(m.group(1) or "") if m else ""


def _text_of(body: bytes) -> str | None:
    """The page as text for the fast reading, or None when only an XML parser can be
    trusted with it (character references, CDATA, comments, a non-UTF-8 declaration)."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        return None
    if "&#" in text or "<![" in text or "<!--" in text:
        return None
    return text


def _entries(root: ET.Element, kinds: tuple[str, ...]) -> Iterator[tuple[int, str, dict[str, str]]]:
    """(position, kind, {child tag: text}) of the root's entries of the given kinds: one
    pass over each entry's children (a find() per field costs several times more on a
    1000-entry page, parsed five times per key in a replication job)."""
    for i, el in enumerate(root):
        kind = _strip_ns(el.tag)
        if kind in kinds:
            yield i, kind, {_strip_ns(c.tag): c.text or "" for c in el}


def _page_fields(body: bytes, *tags: str) -> dict[str, str] | None:
    """A truncated page's top-level ``tags`` (and EncodingType); None on the last page.
    Read without parsing the entries, so the next page can be asked for first."""
    text = _text_of(body)
    if text is not None:
        get = functools.partial(_top, text)
    else:
        get = functools.partial(xml_text, ET.fromstring(body))
    if get("IsTruncated") != "true":
        return None
    return {tag: get(tag) for tag in (*tags, "EncodingType")}


def next_continuation_token(body: bytes) -> str | None:
    """A ListObjectsV2 page's continuation token; None on the last page."""
    fields = _page_fields(body, "NextContinuationToken")
    return (fields["NextContinuationToken"] or None) if fields else None


def next_versions_marker(body: bytes) -> tuple[str, str] | None:
    """A ListObjectVersions page's next (key, version id) marker; None on the last page."""
    fields = _page_fields(body, "NextKeyMarker", "NextVersionIdMarker")
    if fields is None:
        return None
    decode = _url_decoder(fields["EncodingType"])
    return decode(fields["NextKeyMarker"]), fields["NextVersionIdMarker"]


def parse_objects_page(body: bytes) -> tuple[list[ObjectVersion], str | None]:
    """A ListObjectsV2 page: entries and the continuation token (None when done)."""
    return objects_of(body), next_continuation_token(body)


def parse_versions_page(
    body: bytes,
) -> tuple[list[ObjectVersion], tuple[str, str] | None]:
    """A ListObjectVersions page: entries in S3 order and the next (key, version) marker."""
    return versions_of(body), next_versions_marker(body)


def objects_of(body: bytes) -> list[ObjectVersion]:
    """A ListObjectsV2 page's entries."""
    text = _text_of(body)
    entries = _objects_fast(text) if text is not None else None
    return _objects_tree(body) if entries is None else entries


def versions_of(body: bytes) -> list[ObjectVersion]:
    """A ListObjectVersions page's entries, in S3 order."""
    text = _text_of(body)
    entries = _versions_fast(text) if text is not None else None
    return _in_s3_order(_versions_tree(body) if entries is None else entries)


def _objects_fast(text: str) -> list[ObjectVersion] | None:
    """The page's entries by regular expression; None unless that reads every one."""
    rows = _CONTENTS_RE.findall(text)
    if len(rows) != text.count("<Contents>"):
        return None
    decode = _url_decoder(_top(text, "EncodingType"))
    return [
        _current(decode(_unescape(key)), size, _unescape(etag), modified, storage_class)
        for key, modified, etag, size, storage_class in rows
    ]


def _objects_tree(body: bytes) -> list[ObjectVersion]:
    root = ET.fromstring(body)
    decode = _key_decoder(root)
    return [
        _current(
            decode(f.get("Key", "")),
            f.get("Size", ""),
            f.get("ETag", ""),
            f.get("LastModified", ""),
            f.get("StorageClass", ""),
        )
        for _, _, f in _entries(root, ("Contents",))
    ]


def _versions_fast(text: str) -> list[ObjectVersion] | None:
    """The page's entries (in the server's order) by regular expression; None unless that
    reads every one."""
    rows = _VERSION_RE.findall(text)
    if len(rows) != text.count("<Version>") + text.count("<DeleteMarker>"):
        return None
    # a version whose fields come in another order matches without its ETag and size
    if not all(r[6] or r[0] == "DeleteMarker" for r in rows):
        return None
    decode = _url_decoder(_top(text, "EncodingType"))
    return [
        _version(
            decode(_unescape(key)),
            _unescape(version_id),
            latest == "true",
            kind == "DeleteMarker",
            size,
            _unescape(etag),
            modified,
            storage_class,
        )
        for kind, key, version_id, latest, modified, etag, size, storage_class in rows
    ]


def _versions_tree(body: bytes) -> list[ObjectVersion]:
    root = ET.fromstring(body)
    decode = _key_decoder(root)
    return [
        _version(
            decode(f.get("Key", "")),
            f.get("VersionId", ""),
            f.get("IsLatest") == "true",
            kind == "DeleteMarker",
            f.get("Size", ""),
            f.get("ETag", ""),
            f.get("LastModified", ""),
            f.get("StorageClass", ""),
        )
        for _, kind, f in _entries(root, ("Version", "DeleteMarker"))
    ]


def _current(key: str, size: str, etag: str, modified: str, storage_class: str) -> ObjectVersion:
    """A ListObjectsV2 entry from its fields' texts (both readings)."""
    return ObjectVersion(
        key,
        None,
        True,
        False,
        int(size or 0),
        quote_etag(etag),
        _parse_time(modified),
        storage_class or "STANDARD",
    )


def _version(
    key: str,
    version_id: str,
    latest: bool,
    marker: bool,
    size: str,
    etag: str,
    modified: str,
    storage_class: str,
) -> ObjectVersion:
    return ObjectVersion(
        key,
        version_id or "null",
        latest,
        marker,
        0 if marker else int(size or 0),
        None if marker else quote_etag(etag),
        _parse_time(modified),
        "STANDARD" if marker else storage_class or "STANDARD",
    )


def _in_s3_order(versions: list[ObjectVersion]) -> list[ObjectVersion]:
    """Some servers (moto) send all versions, then all markers: restore S3's order, a key's
    versions newest first; servers that already interleave keep their own order on ties."""
    if all(
        a.key < b.key
        or (a.key == b.key and (a.is_latest, a.last_modified) >= (b.is_latest, b.last_modified))
        for a, b in itertools.pairwise(versions)
    ):
        return versions
    rows = [
        ((v.key, not v.is_latest, -v.last_modified.timestamp(), i), v)
        for i, v in enumerate(versions)
    ]
    rows.sort(key=lambda r: r[0])
    return [v for _, v in rows]


def level_of(body: bytes) -> list[str] | None:
    """A ListObjectsV2 page with ``delimiter=/``: its keys and common prefixes (ending in
    "/"), in the page's order; None when truncated (a level of more than one page)."""
    root = ET.fromstring(body)
    if xml_text(root, "IsTruncated") == "true":
        return None
    decode = _key_decoder(root)
    return [
        decode(f.get("Key", "") if kind == "Contents" else f.get("Prefix", ""))
        for _, kind, f in _entries(root, ("Contents", "CommonPrefixes"))
    ]


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
        parse: Callable[[bytes], list[ObjectVersion]],
        next_query: Callable[[bytes], dict[str, str] | None],
        end_key: str | None,
        page_size: int,
    ) -> AsyncIterator[list[ObjectVersion]]:
        """Pages of ``page_size`` entries up to ``end_key``. ``parse`` reads an answer's
        entries; ``next_query`` the query changes that ask for the next page (None: this
        was the last; an empty value removes that parameter), sent before ``parse`` runs."""
        pending: list[ObjectVersion] = []
        fetch: asyncio.Future[bytes] | None = asyncio.ensure_future(
            self._fetch(bucket, dict(query))
        )
        ended = False  # the range ended before the listing did
        try:
            while fetch is not None and not ended:
                body = await fetch
                fetch = None
                nxt = next_query(body)
                if nxt is not None:
                    for name, value in nxt.items():
                        if value:
                            query[name] = value
                        else:
                            query.pop(name, None)
                    fetch = asyncio.ensure_future(self._fetch(bucket, dict(query)))
                    await asyncio.sleep(0)  # lets it send the request before we parse
                entries = parse(body)
                if end_key is not None and entries and entries[-1].key > end_key:
                    entries = [e for e in entries if e.key <= end_key]
                    ended = True
                    if fetch is not None:
                        fetch.cancel()  # not needed after all
                pending.extend(entries)
                while len(pending) >= page_size:
                    yield pending[:page_size]
                    pending = pending[page_size:]
            if pending:
                yield pending
        finally:
            if fetch is not None:
                fetch.cancel()
                await asyncio.wait([fetch])
                if not fetch.cancelled():
                    fetch.exception()  # an abandoned prefetch's error is not news

    async def level(self, bucket: str, directory: str) -> list[str] | None:
        """The keys and common prefixes directly below ``directory`` (a prefix ending in
        "/", or ""), as ``level_of`` reads them: one request."""
        query = {"list-type": "2", "delimiter": "/", "max-keys": "1000"}
        if directory:
            query["prefix"] = directory
        return level_of(await self._fetch(bucket, query))

    def list_objects(
        self, bucket: str, prefix: str, start_after: str, end_key: str | None, page_size: int
    ) -> AsyncIterator[list[ObjectVersion]]:
        query = {"list-type": "2", "max-keys": str(min(page_size, 1000))}
        if prefix:
            query["prefix"] = prefix
        if start_after:
            query["start-after"] = start_after

        def next_query(body: bytes) -> dict[str, str] | None:
            token = next_continuation_token(body)
            return None if token is None else {"continuation-token": token}

        return self._pages(bucket, query, objects_of, next_query, end_key, page_size)

    def list_versions(
        self, bucket: str, prefix: str, start_after: str, end_key: str | None, page_size: int
    ) -> AsyncIterator[list[ObjectVersion]]:
        query = {"versions": "", "max-keys": str(min(page_size, 1000))}
        if prefix:
            query["prefix"] = prefix
        if start_after:
            # a key marker alone resumes at the first key after it, all its versions
            query["key-marker"] = start_after

        def parse(body: bytes) -> list[ObjectVersion]:
            entries = versions_of(body)
            if start_after and entries and entries[0].key <= start_after:
                # S3 skips every version of the marker key; some servers (moto) only its first
                entries = [e for e in entries if e.key > start_after]
            return entries

        def next_query(body: bytes) -> dict[str, str] | None:
            nxt = next_versions_marker(body)
            return None if nxt is None else {"key-marker": nxt[0], "version-id-marker": nxt[1]}

        return self._pages(bucket, query, parse, next_query, end_key, page_size)
