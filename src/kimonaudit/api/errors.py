"""The one error shape of the HTTP API, and the one place errors become it.

    {"error": {"status": 422, "code": "invalid_event",
               "message": "events[0].action: is required ...",
               "fields": [{"path": "events[0].action", "message": "is required ..."}]}}

`fields` is present for validation errors only. The library's error tree
(kimonaudit.errors) maps to statuses here; nothing else in the API picks a
status for a library error. A failure that is not the client's fault is a
500 with a generic message: the traceback goes to the server log, never to
the client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from kimonaudit import errors as E
from kimonaudit.api.models import Receipt

log = logging.getLogger("kimonaudit.api")

# nginx's "client closed request": the status recorded (never sent) when the
# client went away mid-request.
CLIENT_CLOSED = 499

CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}

# Most specific class first: the first isinstance match wins.
_LIBRARY: tuple[tuple[type[E.AuditLogError], int, str], ...] = (
    (E.InvalidEvent, 422, "invalid_event"),
    (E.InvalidQuery, 422, "invalid_query"),
    (E.InvalidInput, 422, "invalid_input"),
    (E.NotFound, 404, "not_found"),
    (E.Conflict, 409, "conflict"),
    (E.Forbidden, 403, "forbidden"),
    (E.AuthError, 401, "unauthorized"),
    (E.VerificationError, 500, "integrity_error"),
    (E.StoreError, 503, "unavailable"),
)


class FieldError(BaseModel):
    path: str
    message: str


class ErrorDetail(BaseModel):
    status: int
    code: str
    message: str
    fields: list[FieldError] | None = Field(None, description="Validation errors only.")
    receipts: list[Receipt] | None = Field(
        None, description="A 503 of ?wait=checkpoint: the events were appended all the same."
    )


class ErrorOut(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


class ApiError(HTTPException):
    """An error the HTTP layer itself raises (415, 413, 400, 429, 503...).

    A Starlette HTTPException so that FastAPI passes it through unchanged
    even when raised while it reads a request body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(status, message, dict(headers) if headers else None)
        self.code = code or CODES.get(status, "error")
        self.message = message
        self.extra = dict(extra or {})


def error_body(
    status: int,
    code: str,
    message: str,
    fields: Sequence[Mapping[str, str]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    err: dict[str, Any] = {"status": status, "code": code, "message": message}
    if fields:
        err["fields"] = [dict(f) for f in fields]
    if extra:
        err.update(extra)
    return {"error": err}


def error_response(
    status: int,
    code: str,
    message: str,
    fields: Sequence[Mapping[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(status, code, message, fields, extra),
        status_code=status,
        headers=dict(headers) if headers else None,
    )


def library_error(exc: E.AuditLogError) -> JSONResponse:
    status, code = next(
        ((st, c) for cls, st, c in _LIBRARY if isinstance(exc, cls)), (500, "internal_error")
    )
    if status >= 500:
        log.error("%s: %s", type(exc).__name__, exc.message)
    fields = None
    if isinstance(exc, E.InvalidInput) and exc.field:
        fields = [{"path": exc.field, "message": exc.reason}]
    elif isinstance(exc, E.Conflict) and exc.field:
        fields = [{"path": exc.field, "message": exc.message}]
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    message = exc.message if status != 500 or code == "integrity_error" else "internal error"
    return error_response(status, code, message, fields, headers)


def _loc_path(loc: Sequence[int | str], body: bool) -> str:
    # ("body", "scopes", 0) -> "scopes[0]"; ("query", "from") -> "from"
    parts = list(loc)
    if parts and not body and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def validation_fields(errs: Sequence[Any], body: bool = False) -> list[dict[str, str]]:
    """Pydantic errors as [{"path", "message"}]; `body` when the locations
    are already relative to the body (model_validate on a parsed body)."""
    fields = [
        {"path": _loc_path(e.get("loc", ()), body), "message": str(e.get("msg", ""))} for e in errs
    ]
    return fields or [{"path": "body", "message": "invalid request"}]


def validation_error(exc: RequestValidationError) -> JSONResponse:
    fields = validation_fields(exc.errors())
    first = fields[0]
    return error_response(422, "invalid_input", f"{first['path']}: {first['message']}", fields)


def http_error(exc: HTTPException) -> JSONResponse:
    if isinstance(exc, ApiError):
        return error_response(
            exc.status_code, exc.code, exc.message, headers=exc.headers, extra=exc.extra
        )
    message = exc.detail if isinstance(exc.detail, str) else CODES.get(exc.status_code, "")
    code = CODES.get(exc.status_code, "error")
    return error_response(exc.status_code, code, message, headers=exc.headers)


def crash(exc: BaseException) -> JSONResponse:
    """A bug: the traceback to the server log, a generic 500 to the client."""
    log.error("unhandled error", exc_info=exc)
    return error_response(500, "internal_error", "internal error")


def error_for(exc: Exception) -> JSONResponse:
    """The response for an exception raised while serving a request, as the
    handlers `install` registers give it (for code outside FastAPI's
    routing, such as kimonaudit.api.fastingest)."""
    if isinstance(exc, E.AuditLogError):
        return library_error(exc)
    if isinstance(exc, HTTPException):
        return http_error(exc)
    return crash(exc)


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the one shape."""

    async def on_library(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, E.AuditLogError)
        return library_error(exc)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return http_error(exc)

    async def on_validation(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return validation_error(exc)

    async def on_disconnect(request: Request, exc: Exception) -> Response:
        # The client closed the connection before sending its whole body:
        # nothing was read, so nothing was appended, and nobody is left to
        # answer. Not an error of ours: no traceback, no 500 in the metrics
        # (kimonaudit_http_client_disconnects_total counts it).
        log.debug("client went away during %s %s", request.method, request.url.path)
        return Response(status_code=CLIENT_CLOSED)

    async def on_crash(_: Request, exc: Exception) -> JSONResponse:
        return crash(exc)

    app.add_exception_handler(E.AuditLogError, on_library)
    app.add_exception_handler(HTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(ClientDisconnect, on_disconnect)
    app.add_exception_handler(Exception, on_crash)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error statuses a route can give;
    every route can also answer 500 (a bug) and 503 (database down)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 500, 503}):
        out[status] = {"model": ErrorOut, "description": CODES.get(status, "error")}
    return out
