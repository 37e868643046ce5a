"""The one table from exceptions to HTTP answers (SPEC §2.3).

Every error answer has the body ``{"code", "message", "details"}``; nothing else, and never
a stack trace.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from objectjobs import errors

log = logging.getLogger(__name__)

# most specific first: the first class the exception is an instance of decides
STATUS_TABLE: tuple[tuple[type[errors.ObjectJobsError], int], ...] = (
    (errors.InvalidRequest, 400),
    (errors.AuthenticationFailed, 401),
    (errors.PermissionDenied, 403),
    (errors.NotFound, 404),
    (errors.StorageUnavailable, 503),
    (errors.AccessDenied, 503),
    (errors.JobStoreUnavailable, 503),
    (errors.TransientStorageError, 503),
    (errors.ObjectJobsError, 500),
)

_HTTP_CODES = {
    400: "InvalidRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    415: "UnsupportedMediaType",
}


def status_for(exc: errors.ObjectJobsError) -> int:
    for cls, status in STATUS_TABLE:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(
    status: int, code: str, message: str, details: str = "", headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"code": code, "message": message, "details": details}, status_code=status, headers=headers
    )


def _bearer_challenge(status: int) -> dict[str, str] | None:
    return {"WWW-Authenticate": "Bearer"} if status == 401 else None


async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.ObjectJobsError)
    status = status_for(exc)
    if status >= 500:
        log.warning("%s %s failed: %s: %s", request.method, request.url.path, exc.code, exc)
    return error_response(status, exc.code, exc.message, exc.details, _bearer_challenge(status))


def _describe_validation(exc: RequestValidationError) -> tuple[str, str]:
    problems: list[str] = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        if err.get("type") == "json_invalid":
            return "malformed JSON body", str(err.get("ctx", {}).get("error", ""))
        problems.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(problems[:5]), "; ".join(problems)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, details = _describe_validation(exc)
    return error_response(400, "InvalidRequest", message, details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = _HTTP_CODES.get(status, "InternalError" if status >= 500 else "Error")
    if status == 405:
        message = f"method {request.method} not allowed on {request.url.path}"
    elif status == 404:
        message = f"no such path: {request.url.path}"
    else:
        message = str(exc.detail)
    headers = dict(exc.headers or {})
    return error_response(status, code, message, "", headers or None)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in %s %s", request.method, request.url.path)
    return error_response(500, "InternalError", "internal error", "see the server log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.ObjectJobsError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
