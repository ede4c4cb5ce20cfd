"""The event stream, one event, exports and saved searches.

Each use of the log is itself logged in the tenant's log: the stream
(every page of results) as `audit_log.searched`, an event's page as
`audit_log.viewed`, a download as `audit_log.exported`, each with the query
and the number of rows.
"""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kimonaudit.api.routes_search import ExportResponse
from kimonaudit.console import chart, chips, searching
from kimonaudit.console.access import csrf_form, field, same_site_only, signed_in
from kimonaudit.console.accounts import Client
from kimonaudit.console.present import actor_view, entry_view, entry_views, pairs
from kimonaudit.console.proofcheck import check_entry
from kimonaudit.console.security import Viewer, base_path, client_of, state
from kimonaudit.core.ledger import leaf_of_row
from kimonaudit.core.query import MAX_QUERY_LENGTH, parse, to_string
from kimonaudit.core.timefmt import format_ts
from kimonaudit.errors import InvalidInput, NotFound
from kimonaudit.search import InvalidCursor
from kimonaudit.views import entry_json

DONE = {"saved": "Search saved.", "deleted": "Saved search deleted."}
EXAMPLES: tuple[tuple[str, str], ...] = (
    ("action:role.* created:>-7d", "who changed roles last week"),
    ("action:ticket.viewed target:ticket:10482", "who viewed ticket 10482"),
    ("is:security severity:>=high created:>-24h", "serious security events, last 24 hours"),
    ("action:auth.login.failed", "failed sign-ins"),
    ("action:audit_log.*", "who used this audit log"),
)
# The API's wording ("send the cursor with the query it came from") is for
# programs; a person only ever follows links.
BAD_CURSOR = (
    "This page link was altered or belongs to another search, so it cannot be followed. "
    "Start again from the newest results."
)


def _query_arg(request: Request) -> str:
    return request.query_params.get("q", "")[:MAX_QUERY_LENGTH].strip()


def _access_arg(request: Request) -> bool:
    """The "Include log access" toggle (`access=1`)."""
    return request.query_params.get("access") == "1"


def _stream(
    request: Request,
    viewer: Viewer,
    q: str,
    cursor: str | None,
    client: Client,
    include_access: bool = False,
) -> tuple[dict[str, Any], int]:
    st = state(request)
    log = st.log
    tid = viewer.tenant_id
    shown_q = chips.stream_query(q, include_access)
    ctx: dict[str, Any] = {
        "q": q,
        # "1" keeps the toggle on in every link; None drops the parameter.
        "access": "1" if include_access else None,
        "access_shown": shown_q == q,
        "access_forced": chips.names_log_access(q),
        "cursor": cursor,
        "presets": chips.presets(q),
        "terms": chips.current(q),
        "security_only": chips.security_only(q),
        "saved": st.accounts.saved_searches(viewer.user),
        "examples": EXAMPLES,
        "done": DONE.get(request.query_params.get("done", "")),
        "error": None,
        "rows": [],
        "next_cursor": None,
        "chart": None,
        "restart": False,
    }
    try:
        page = log.search(tid, shown_q, st.settings.page_size, cursor)
    except InvalidCursor:
        # Refused before anything is read, so (as through the API) not logged.
        ctx["error"] = BAD_CURSOR
        ctx["restart"] = True
        return ctx, 400
    except InvalidInput as exc:  # the query
        ctx["error"] = exc.reason
        return ctx, 422
    ctx["rows"] = entry_views(list(page.entries), lambda h: log.resolve_actor(tid, h))
    ctx["next_cursor"] = page.next_cursor
    counts = searching.day_counts(log, tid, shown_q, st.settings.chart_days)
    ctx["chart"] = chart.build(counts) if counts else None
    details: dict[str, Any] = {"cursor": cursor is not None}  # as the API records it
    recorded = page.query
    if shown_q != q:  # the viewer's query; the details say log access was hidden
        recorded = to_string(parse(q)) if q else ""
        details["log_access"] = "hidden"
    searching.record(log, viewer.user, client, "audit_log.searched", recorded, len(page), details)
    return ctx, 200


@signed_in
@same_site_only
async def events(request: Request, viewer: Viewer) -> Response:
    q = _query_arg(request)
    cursor = request.query_params.get("cursor") or None
    ctx, status = await run_in_threadpool(
        _stream, request, viewer, q, cursor, client_of(request), _access_arg(request)
    )
    ctx["day_query"] = _day_query
    return state(request).pages.render(request, "events.html", ctx, viewer=viewer, status=status)


def _day_query(q: str, day: date) -> str:
    return chips.toggled(q, f"created:{day.isoformat()}")


def _detail(request: Request, viewer: Viewer, seq: int, q: str, client: Client) -> dict[str, Any]:
    log = state(request).log
    tid = viewer.tenant_id
    row = log.get_entry(tid, seq)
    record = log.resolve_actor(tid, row.actor_hash) if row.actor_hash else None
    redaction = log.redaction(tid, seq) if row.payload is None else None
    data = entry_json(row, record, redaction)
    mark = check_entry(log, tid, row)
    searching.record(
        log, viewer.user, client, "audit_log.viewed", q, 1, {"seq": seq, "event_id": row.event_id}
    )
    return {
        "entry": entry_view(row, record),
        "actor": actor_view(row, record),
        "data": data,
        "context_pairs": pairs(data["context"]),
        "metadata_pairs": pairs(data["metadata"]),
        "leaf_json": leaf_of_row(row).decode("utf-8"),
        "payload_json": row.payload.decode("utf-8") if row.payload is not None else None,
        "mark": mark,
        "redaction": redaction,
        "mark_issued": format_ts(mark.checkpoint_issued_at) if mark.checkpoint_issued_at else None,
        "q": q,
        "access": "1" if _access_arg(request) else None,
    }


@signed_in
@same_site_only
async def event(request: Request, viewer: Viewer) -> Response:
    seq = request.path_params["seq"]
    if seq > 2**62:
        raise InvalidInput("no such entry", field="seq")
    q = _query_arg(request)
    ctx = await run_in_threadpool(_detail, request, viewer, seq, q, client_of(request))
    return state(request).pages.render(request, "event.html", ctx, viewer=viewer)


@signed_in
async def export(request: Request, viewer: Viewer) -> Response:
    """Download every entry matching the query, streamed; the download is
    an `audit_log.exported` entry once the stream ends (with the rows sent
    and whether it completed), as through the API."""
    form = await csrf_form(request, viewer)
    q = field(form, "q")[:MAX_QUERY_LENGTH].strip()
    shown_q = chips.stream_query(q, field(form, "access") == "1")  # the rows the page shows
    fmt = field(form, "format", "csv")
    log = state(request).log
    try:
        exp = await run_in_threadpool(log.export, viewer.tenant_id, shown_q, fmt)
    except InvalidInput as exc:
        return state(request).pages.render(
            request,
            "error.html",
            {"title": "The export cannot run", "message": exc.reason},
            viewer=viewer,
            status=422,
        )
    client = client_of(request)

    recorded = exp.query
    hidden = shown_q != q
    if hidden:  # the viewer's query; the details say log access was left out
        recorded = to_string(parse(q)) if q else ""

    def finish(rows: int, complete: bool) -> None:
        details: dict[str, Any] = {"format": exp.format, "complete": complete}
        if hidden:
            details["log_access"] = "hidden"
        searching.record(log, viewer.user, client, "audit_log.exported", recorded, rows, details)

    return ExportResponse(exp, finish)


def _back(request: Request, q: str, done: str | None = None) -> Response:
    params = {k: v for k, v in (("q", q), ("done", done)) if v}
    query = "?" + urlencode(params) if params else ""
    return RedirectResponse(base_path(request) + "/events" + query, status_code=303)


@signed_in
async def save_search(request: Request, viewer: Viewer) -> Response:
    form = await csrf_form(request, viewer)
    q = field(form, "q")
    accounts = state(request).accounts
    await run_in_threadpool(accounts.save_search, viewer.user, field(form, "name"), q)
    return _back(request, q, "saved")


@signed_in
async def delete_search(request: Request, viewer: Viewer) -> Response:
    form = await csrf_form(request, viewer)
    accounts = state(request).accounts
    search_id = request.path_params["search_id"]
    if not await run_in_threadpool(accounts.delete_search, viewer.user, search_id):
        # Another user's, another tenant's, or already gone: nothing was deleted.
        raise NotFound("no such saved search among yours")
    return _back(request, field(form, "q"), "deleted")


routes = [
    Route("/events", events, name="events"),
    Route("/events/{seq:int}", event, name="event"),
    Route("/export", export, methods=["POST"], name="export"),
    Route("/searches", save_search, methods=["POST"], name="save_search"),
    Route("/searches/{search_id}/delete", delete_search, methods=["POST"], name="delete_search"),
]
