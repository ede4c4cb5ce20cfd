"""Search and export: GET /v1/events, /v1/events/histogram,
/v1/exports/events.csv and /v1/exports/events.ndjson (scope events:read).

Every request appends an `audit_log.searched` or `audit_log.exported`
entry to the caller's tenant, with the query and the number of rows,
after the rows are computed (so the entry is never in the page it
describes). An export's entry is appended when its stream ends: with the
full count when the client got everything, with the rows sent so far and
``"complete": false`` when the client went away.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from kimonaudit.api.deps import (
    SCOPE_READ,
    ApiError,
    Principal,
    access_context,
    api_state,
    require,
    responses,
)
from kimonaudit.api.models import EntryOut
from kimonaudit.core.query import MAX_QUERY_LENGTH
from kimonaudit.export import Export
from kimonaudit.search import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    InvalidCursor,
    page_json,
    record_access,
)
from kimonaudit.service import AuditLog

router = APIRouter(tags=["search"])
log = logging.getLogger("kimonaudit.api")

Q = Annotated[
    str,
    Query(
        max_length=MAX_QUERY_LENGTH,
        description="A query in the search language (docs/query-language.md); empty: everything.",
    ),
]
HISTOGRAM_PATH = "/v1/events/histogram"


class SearchOut(BaseModel):
    query: str = Field(description="The query in canonical form.")
    events: list[EntryOut] = Field(description="Newest first.")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class BucketOut(BaseModel):
    start: str = Field(description="Start of the UTC interval (RFC 3339).")
    count: int


class HistogramOut(BaseModel):
    query: str
    interval: Literal["hour", "day", "week", "month"]
    total: int
    buckets: list[BucketOut]


@router.get(
    "/v1/events",
    summary="Search events",
    description=(
        "The caller's entries matching `q`, newest first, `limit` per page. `next_cursor` "
        "fetches the next page: pages are cut by sequence number, so entries appended "
        "meanwhile never shift them. A cursor works only with the query (and tenant) it came "
        "from; any other use is a 400. Appends `audit_log.searched`."
    ),
    response_model=None,
    responses={200: {"model": SearchOut}, **responses(400, 401, 403, 422, 429)},
)
def search_events(
    request: Request,
    principal: Annotated[Principal, Depends(require(SCOPE_READ))],
    q: Q = "",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Entries per page.")] = (
        DEFAULT_LIMIT
    ),
    cursor: Annotated[
        str | None, Query(max_length=100, description="`next_cursor` of the previous page.")
    ] = None,
) -> JSONResponse:
    st = api_state(request)
    tid = principal.tenant_id
    try:
        page = st.log.search(tid, q, limit, cursor)
    except InvalidCursor as exc:
        raise ApiError(400, exc.message, code="invalid_cursor") from None
    body = page_json(st.log, page)
    details = {"cursor": cursor is not None}
    record_access(st.log, tid, "audit_log.searched", principal.actor, page.query, len(page),
                  "api", context=access_context(request), details=details)  # fmt: skip
    return JSONResponse(body)


@router.get(
    HISTOGRAM_PATH,
    summary="Count events over time",
    description=(
        "How many of the caller's entries match `q` in each UTC hour, day, week (from "
        "Monday) or calendar month, from the first interval with a match to the last. "
        "Appends `audit_log.searched`."
    ),
    response_model=None,
    responses={200: {"model": HistogramOut}, **responses(401, 403, 422, 429)},
)
def events_histogram(
    request: Request,
    principal: Annotated[Principal, Depends(require(SCOPE_READ))],
    q: Q = "",
    interval: Annotated[Literal["hour", "day", "week", "month"], Query()] = "day",
) -> JSONResponse:
    st = api_state(request)
    tid = principal.tenant_id
    hist = st.log.histogram(tid, q, interval)
    record_access(st.log, tid, "audit_log.searched", principal.actor, hist.query, hist.total,
                  "api", context=access_context(request),
                  details={"histogram": interval})  # fmt: skip
    return JSONResponse(hist.to_json())


class ExportResponse(StreamingResponse):
    """Streams an Export, then calls `finish(rows_sent, complete)` exactly
    once however the stream ends: finished, client gone, or cancelled."""

    def __init__(self, export: Export, finish: Callable[[int, bool], None]) -> None:
        self.export = export
        self.sent = 0
        self._finish = finish
        super().__init__(
            self._body(),
            media_type=export.media_type,
            headers={
                "Content-Disposition": f'attachment; filename="{export.filename}"',
                "Cache-Control": "no-store",
            },
        )

    async def _body(self) -> AsyncIterator[bytes]:
        chunks = iter(self.export)
        while True:
            # The database read and the formatting run off the event loop.
            chunk = await run_in_threadpool(next, chunks, None)
            if chunk is None:
                return
            counted = self.export.rows
            yield chunk
            # Running again means the server took the chunk: those rows are sent.
            self.sent = counted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                complete = self.export.complete and self.sent == self.export.rows
                try:
                    await run_in_threadpool(self._finish, self.sent, complete)
                except Exception:
                    log.exception("could not record the export in the audit log")
                # A worker thread cancelled mid-chunk may still be inside the
                # generator; it then ends with that chunk and is collected.
                with contextlib.suppress(ValueError):
                    await run_in_threadpool(self.export.close)


def _export(request: Request, principal: Principal, q: str, fmt: str) -> ExportResponse:
    st = api_state(request)
    tid = principal.tenant_id
    export = st.log.export(tid, q, fmt)  # a bad query fails here, before any byte is sent
    context = access_context(request)
    audit: AuditLog = st.log

    def finish(rows: int, complete: bool) -> None:
        details = {"format": fmt, "complete": complete}
        record_access(audit, tid, "audit_log.exported", principal.actor, export.query, rows,
                      "api", context=context, details=details)  # fmt: skip

    return ExportResponse(export, finish)


_EXPORT_DOC = (
    "Every entry of the caller's tenant matching `q` that existed when the request "
    "arrived, oldest first, streamed. Appends `audit_log.exported` (query, rows sent, "
    "whether the download completed) when the stream ends. docs/export.md documents "
    "the format."
)


def _streamed(media: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"content": {media: {"schema": {"type": "string"}}}, "description": "The export"},
        **responses(401, 403, 422, 429),
    }


@router.get(
    "/v1/exports/events.csv",
    summary="Export events as CSV",
    description=_EXPORT_DOC
    + " CSV: RFC 4180, header row, every field quoted, UTF-8, formula cells neutralised.",
    response_class=StreamingResponse,
    responses=_streamed("text/csv"),
)
def export_csv(
    request: Request, principal: Annotated[Principal, Depends(require(SCOPE_READ))], q: Q = ""
) -> ExportResponse:
    return _export(request, principal, q, "csv")


@router.get(
    "/v1/exports/events.ndjson",
    summary="Export events as NDJSON",
    description=_EXPORT_DOC + " NDJSON: one entry (as GET /v1/events shows it) per line.",
    response_class=StreamingResponse,
    responses=_streamed("application/x-ndjson"),
)
def export_ndjson(
    request: Request, principal: Annotated[Principal, Depends(require(SCOPE_READ))], q: Q = ""
) -> ExportResponse:
    return _export(request, principal, q, "ndjson")


def _paths(route: Any) -> list[str]:
    included = getattr(route, "original_router", None)  # FastAPI keeps included routers whole
    if included is not None:
        return [p for r in included.routes for p in _paths(r)]
    path = getattr(route, "path", None)
    return [path] if isinstance(path, str) else []


def install(app: FastAPI) -> None:
    """Put these routes ahead of /v1/events/{event_id}, included earlier,
    which would otherwise take /v1/events/histogram for an event id."""
    routes = app.router.routes
    mine = [
        r
        for r in routes
        if getattr(r, "original_router", None) is router or HISTOGRAM_PATH in _paths(r)
    ]
    for r in mine:
        routes.remove(r)
    at = next(
        (i for i, r in enumerate(routes) if any(p.startswith("/v1/events/{") for p in _paths(r))),
        len(routes),
    )
    routes[at:at] = mine
