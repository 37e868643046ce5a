"""Multipart uploads of the local driver, under ``<root>/.objectjobs/<bucket>/uploads/``.

One directory per upload: ``upload.json`` (key, initiation time, metadata, tags) and per
part ``NNNNN.part`` with ``NNNNN.part.json`` (size, etag, time). Completing concatenates
the parts into a temp file and installs it like any other write. Blocking: runs in the
driver's I/O threads.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from objectjobs.errors import BucketNotFound, StorageError, UploadNotFound
from objectjobs.storage import local_files as lf
from objectjobs.storage import local_write as lw
from objectjobs.storage.interface import MultipartUpload, ObjectMeta, Part, WriteResult


def existing_bucket(paths: lw.LocalPaths, bucket: str) -> Path:
    d = Path(paths.bucket_dir(bucket))
    if not d.is_dir():
        raise BucketNotFound(f"bucket {bucket!r} not found")
    return d


def _upload_dir(paths: lw.LocalPaths, bucket: str, upload_id: str) -> Path:
    if not upload_id.isalnum():
        raise UploadNotFound(f"upload {upload_id!r} not found")
    return Path(paths.meta, bucket, "uploads", upload_id)


def list_uploads(paths: lw.LocalPaths, bucket: str, prefix: str) -> list[MultipartUpload]:
    existing_bucket(paths, bucket)
    found: list[MultipartUpload] = []
    base = Path(paths.meta, bucket, "uploads")
    with contextlib.suppress(FileNotFoundError), os.scandir(base) as it:
        for e in it:
            try:
                info = json.loads(Path(e.path, "upload.json").read_bytes())
            except (OSError, ValueError):
                continue  # being created or aborted right now
            if info["key"].startswith(prefix):
                found.append(
                    MultipartUpload(
                        key=info["key"],
                        upload_id=e.name,
                        initiated=datetime.fromisoformat(info["initiated"]),
                    )
                )
    found.sort(key=lambda u: (u.key, u.initiated, u.upload_id))
    return found


def _read_upload(
    paths: lw.LocalPaths, bucket: str, key: str, upload_id: str
) -> tuple[Path, dict[str, Any]]:
    d = _upload_dir(paths, bucket, upload_id)
    try:
        info: dict[str, Any] = json.loads((d / "upload.json").read_bytes())
    except FileNotFoundError:
        existing_bucket(paths, bucket)
        raise UploadNotFound(f"upload {upload_id!r} not found") from None
    if info["key"] != key:
        raise UploadNotFound(f"upload {upload_id!r} is not for key {key!r}")
    return d, info


def read_parts(paths: lw.LocalPaths, bucket: str, key: str, upload_id: str) -> list[Part]:
    d, _ = _read_upload(paths, bucket, key, upload_id)
    parts = []
    for p in d.glob("*.part.json"):
        info = json.loads(p.read_bytes())
        parts.append(
            Part(
                part_number=info["part_number"],
                size=info["size"],
                etag=info["etag"],
                last_modified=datetime.fromisoformat(info["last_modified"]),
            )
        )
    return sorted(parts, key=lambda p: p.part_number)


def create(paths: lw.LocalPaths, bucket: str, key: str, meta: ObjectMeta | None) -> str:
    lf.check_key(key)
    existing_bucket(paths, bucket)
    upload_id = uuid.uuid4().hex
    info = {
        "key": key,
        "initiated": datetime.now(UTC).isoformat(),
        "meta": lf.meta_to_json(meta),
        "tags": dict(meta.tags or {}) if meta else {},
    }
    d = _upload_dir(paths, bucket, upload_id)
    d.mkdir(parents=True)
    lf.write_atomic(d / "upload.json", json.dumps(info).encode(), paths.tmp)
    return upload_id


def upload_part(
    paths: lw.LocalPaths,
    bucket: str,
    key: str,
    upload_id: str,
    part_number: int,
    data: bytes,
    etag: str,
    now: datetime,
) -> None:
    d, _ = _read_upload(paths, bucket, key, upload_id)
    lf.write_atomic(d / f"{part_number:05d}.part", data, paths.tmp)
    record = {
        "part_number": part_number,
        "size": len(data),
        "etag": etag,
        "last_modified": now.isoformat(),
    }
    lf.write_atomic(d / f"{part_number:05d}.part.json", json.dumps(record).encode(), paths.tmp)


def complete(
    paths: lw.LocalPaths, bucket: str, key: str, upload_id: str, parts: list[Part]
) -> WriteResult:
    d, info = _read_upload(paths, bucket, key, upload_id)
    have = {p.part_number: p for p in read_parts(paths, bucket, key, upload_id)}
    numbers = [p.part_number for p in parts]
    if not parts or numbers != sorted(set(numbers)):
        raise StorageError("parts must be given in ascending order, without repeats")
    for p in parts:
        if p.part_number not in have or have[p.part_number].etag != p.etag:
            raise StorageError(f"part {p.part_number} missing or its etag differs")
    etag = lf.multipart_etag([p.etag for p in parts])
    tmp = paths.tmp_file()
    try:
        with open(tmp, "wb") as out:
            for p in parts:
                with (d / f"{p.part_number:05d}.part").open("rb") as src:
                    shutil.copyfileobj(src, out, lf.CHUNK)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    lw.install(paths, tmp, bucket, key, etag, info["meta"], info["tags"])
    shutil.rmtree(d, ignore_errors=True)
    return WriteResult(etag=etag, version_id=None)


def abort(paths: lw.LocalPaths, bucket: str, upload_id: str) -> None:
    existing_bucket(paths, bucket)
    with contextlib.suppress(UploadNotFound):
        shutil.rmtree(_upload_dir(paths, bucket, upload_id), ignore_errors=True)
