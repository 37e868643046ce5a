"""Translation of S3 errors (botocore's and raw HTTP answers) into objectjobs.errors."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from botocore import exceptions as bx

from objectjobs.errors import (
    AccessDenied,
    BucketNotFound,
    ConfigurationNotFound,
    NotSupported,
    ObjectNotFound,
    PreconditionFailed,
    StorageError,
    StorageUnavailable,
    TransientStorageError,
    UploadNotFound,
)

_BY_CODE: dict[str, type[StorageError]] = {
    "NoSuchBucket": BucketNotFound,
    "NoSuchKey": ObjectNotFound,
    "NoSuchVersion": ObjectNotFound,
    "NoSuchUpload": UploadNotFound,
    "NoSuchLifecycleConfiguration": ConfigurationNotFound,
    "ReplicationConfigurationNotFoundError": ConfigurationNotFound,
    "NoSuchConfiguration": ConfigurationNotFound,
    "NoSuchTagSet": ConfigurationNotFound,
    "NoSuchTagSetError": ConfigurationNotFound,
    "ObjectLockConfigurationNotFoundError": ConfigurationNotFound,
    "NoSuchObjectLockConfiguration": ConfigurationNotFound,
    "AccessDenied": AccessDenied,
    "InvalidAccessKeyId": AccessDenied,
    "SignatureDoesNotMatch": AccessDenied,
    "AllAccessDisabled": AccessDenied,
    "ExpiredToken": AccessDenied,
    "InvalidToken": AccessDenied,
    "MethodNotAllowed": NotSupported,
    "NotImplemented": NotSupported,
    "PreconditionFailed": PreconditionFailed,
    "SlowDown": TransientStorageError,
    "Throttling": TransientStorageError,
    "ThrottlingException": TransientStorageError,
    "RequestThrottled": TransientStorageError,
    "RequestLimitExceeded": TransientStorageError,
    "TooManyRequests": TransientStorageError,
    "RequestTimeout": TransientStorageError,
    "InternalError": TransientStorageError,
    "ServiceUnavailable": TransientStorageError,
    "OperationAborted": TransientStorageError,
}

_BY_STATUS: dict[int, type[StorageError]] = {
    403: AccessDenied,
    405: NotSupported,
    501: NotSupported,
    408: TransientStorageError,
    429: TransientStorageError,
}


def from_code(code: str, status: int, message: str, *, context: str = "") -> StorageError:
    """The objectjobs error for an S3 error code / HTTP status."""
    cls = _BY_CODE.get(code)
    if cls is None:
        if status == 404:
            # HEAD answers 404 without a body: the object (or its bucket) is not there
            cls = ObjectNotFound
        elif status >= 500:
            cls = TransientStorageError
        else:
            cls = _BY_STATUS.get(status, StorageError)
    text = f"{context}: {code or status} {message}".strip(": ")
    err = cls(text, details=f"code={code} status={status}")
    if cls is StorageError and code:
        err.code = code
    return err


def translate(exc: BaseException, context: str = "") -> StorageError:
    """Map a botocore/aiohttp/network exception to objectjobs.errors."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, bx.ClientError):
        resp: dict[str, Any] = exc.response
        error = resp.get("Error", {})
        status = int(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        code = str(error.get("Code", "") or "")
        if code.isdigit():
            status, code = int(code), ""
        return from_code(code, status, str(error.get("Message", "") or ""), context=context)
    if isinstance(exc, bx.EndpointConnectionError | aiohttp.ClientConnectorError):
        return StorageUnavailable(f"{context}: cannot reach the endpoint: {exc}")
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError):
        return AccessDenied(f"{context}: no credentials: {exc}")
    if isinstance(
        exc,
        bx.ConnectTimeoutError
        | bx.ReadTimeoutError
        | bx.ConnectionClosedError
        | bx.HTTPClientError
        | aiohttp.ClientError
        | asyncio.TimeoutError
        | ConnectionError,
    ):
        return TransientStorageError(f"{context}: {type(exc).__name__}: {exc}")
    if isinstance(exc, bx.ParamValidationError):
        return StorageError(f"{context}: invalid request: {exc}")
    if isinstance(exc, bx.BotoCoreError):
        return StorageError(f"{context}: {type(exc).__name__}: {exc}")
    return StorageError(f"{context}: {type(exc).__name__}: {exc}")
