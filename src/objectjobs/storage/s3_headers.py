"""Object metadata as S3 request/response headers (the driver's raw data path).

The same fields and formats botocore uses for PutObject/CopyObject/HeadObject/GetObject:
dates in ``Expires`` as RFC 1123, the Object Lock retention date as ISO 8601, user
metadata as ``x-amz-meta-*``, tags form-encoded in ``x-amz-tagging``.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import UTC, datetime

from objectjobs.storage.interface import ObjectInfo, ObjectMeta
from objectjobs.storage.s3_http import quote_key, xml_text

_META = "x-amz-meta-"
_CHECKSUMS = ("CRC32", "CRC32C", "SHA1", "SHA256")


def quote_etag(etag: str | None) -> str | None:
    """ETags as S3 sends them, in double quotes (RGW leaves them off in copy results)."""
    if not etag:
        return None
    return etag if etag.startswith('"') else f'"{etag}"'


def content_md5(data: bytes) -> str:
    # end-to-end integrity, and required by Object Lock buckets (S3 refuses without it)
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _iso8601(value: datetime) -> str:
    value = value.astimezone(UTC) if value.tzinfo else value
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if value.microsecond else "%Y-%m-%dT%H:%M:%SZ"
    return value.strftime(fmt)


def _http_date(value: datetime) -> str:
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return email.utils.format_datetime(value, usegmt=True)


def meta_headers(meta: ObjectMeta | None, *, tags: bool = True) -> dict[str, str]:
    """Request headers setting ``meta`` on PutObject/CopyObject (``tags``: with x-amz-tagging)."""
    if meta is None:
        return {}
    h: dict[str, str] = {}
    for value, name in (
        (meta.content_type, "content-type"),
        (meta.content_encoding, "content-encoding"),
        (meta.content_language, "content-language"),
        (meta.content_disposition, "content-disposition"),
        (meta.cache_control, "cache-control"),
        (meta.storage_class, "x-amz-storage-class"),
        (meta.object_lock_mode, "x-amz-object-lock-mode"),
    ):
        if value is not None:
            h[name] = value
    if meta.expires is not None:
        h["expires"] = _http_date(meta.expires)
    if meta.object_lock_retain_until is not None:
        h["x-amz-object-lock-retain-until-date"] = _iso8601(meta.object_lock_retain_until)
    if meta.legal_hold is not None:
        h["x-amz-object-lock-legal-hold"] = "ON" if meta.legal_hold else "OFF"
    for k, v in (meta.metadata or {}).items():
        h[_META + k] = v
    if tags and meta.tags:
        h["x-amz-tagging"] = urllib.parse.urlencode(meta.tags)
    return h


def copy_source(bucket: str, key: str, version_id: str | None) -> str:
    source = quote_key(f"{bucket}/{key}")
    return f"{source}?versionId={version_id}" if version_id is not None else source


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    with contextlib.suppress(TypeError, ValueError, IndexError):
        return email.utils.parsedate_to_datetime(value)
    return None


def info_from_headers(
    key: str, h: Mapping[str, str], tags: dict[str, str] | None, size: int | None = None
) -> ObjectInfo:
    """The ObjectInfo of a HEAD/GET answer; ``size`` overrides Content-Length (ranges)."""
    etag = quote_etag(h.get("ETag"))
    parts = None
    raw_parts = h.get("x-amz-mp-parts-count")
    if raw_parts:
        parts = int(raw_parts)
    elif etag and "-" in etag:
        with contextlib.suppress(ValueError):
            parts = int(etag.strip('"').rsplit("-", 1)[1])
    hold = h.get("x-amz-object-lock-legal-hold")
    retain = h.get("x-amz-object-lock-retain-until-date")
    metadata = {name[len(_META) :]: v for name, v in h.items() if name.lower().startswith(_META)}
    meta = ObjectMeta(
        content_type=h.get("Content-Type"),
        content_encoding=h.get("Content-Encoding") or None,
        content_language=h.get("Content-Language"),
        content_disposition=h.get("Content-Disposition"),
        cache_control=h.get("Cache-Control"),
        expires=_date(h.get("Expires")),
        metadata=metadata,
        storage_class=h.get("x-amz-storage-class"),
        tags=tags,
        object_lock_mode=h.get("x-amz-object-lock-mode"),  # type: ignore[arg-type]
        object_lock_retain_until=datetime.fromisoformat(retain) if retain else None,
        legal_hold=None if hold is None else hold == "ON",
    )
    checksums = {
        c: h[f"x-amz-checksum-{c.lower()}"]
        for c in _CHECKSUMS
        if h.get(f"x-amz-checksum-{c.lower()}")
    }
    return ObjectInfo(
        key=key,
        version_id=h.get("x-amz-version-id"),
        size=size if size is not None else int(h.get("Content-Length", 0)),
        etag=etag,
        last_modified=_date(h.get("Last-Modified")) or datetime.now(UTC),
        meta=meta,
        storage_class=h.get("x-amz-storage-class") or "STANDARD",
        replication_status=h.get("x-amz-replication-status"),
        checksums=checksums,
        parts_count=parts,
    )


def parse_tags(body: bytes) -> dict[str, str]:
    """A GetObjectTagging answer's tag set."""
    out: dict[str, str] = {}
    if not body.strip():
        # RGW (Pacific) answers 200 with an empty body for an object never tagged
        # after a multipart upload
        return out
    root = ET.fromstring(body)
    for tag in root.iter():
        if tag.tag.rsplit("}", 1)[-1] == "Tag":
            out[xml_text(tag, "Key")] = xml_text(tag, "Value")
    return out


def tagging_xml(tags: Mapping[str, str]) -> bytes:
    root = ET.Element("Tagging", xmlns="http://s3.amazonaws.com/doc/2006-03-01/")
    tag_set = ET.SubElement(root, "TagSet")
    for k, v in tags.items():
        tag = ET.SubElement(tag_set, "Tag")
        ET.SubElement(tag, "Key").text = k
        ET.SubElement(tag, "Value").text = v
    return ET.tostring(root)
