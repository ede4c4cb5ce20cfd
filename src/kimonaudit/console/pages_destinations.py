"""SIEM destinations of the viewer's tenant (issue 9): each with a status
badge, its health and a small lag chart (the last 24 hours, one sample a
minute, server-rendered SVG); owners and admins add, pause, resume and
delete them. A generated signing secret is shown once, on the response to
the form that created the destination. Every change is an
``audit_stream.*`` entry with the viewer as actor.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kimonaudit.console.access import csrf_form, field, signed_in
from kimonaudit.console.security import Viewer, base_path, state
from kimonaudit.core.destination_records import FORMATS, KINDS
from kimonaudit.destinations import Destinations
from kimonaudit.errors import InvalidInput
from kimonaudit.sinks import settings as sink_settings

DONE = {
    "paused": "The destination was paused. Entries wait for it; nothing is lost.",
    "resumed": "The destination was resumed and catches up in order.",
    "deleted": "The destination was deleted.",
}
CHART_W, CHART_H = 240, 40
DAY_US = 24 * 3600 * 1_000_000


def _dests(request: Request) -> Destinations:
    return sink_settings.destinations(state(request).log)


def lag_points(samples: list[tuple[int, int, float]], now_us: int) -> str:
    """SVG polyline points of lag seconds over the last day ('' if none)."""
    if not samples:
        return ""
    top = max(1.0, *(s for _, _, s in samples))
    pts = []
    for at, _, secs in samples:
        x = CHART_W * (1 - (now_us - at) / DAY_US)
        y = CHART_H - (CHART_H - 2) * secs / top
        pts.append(f"{max(0.0, x):.1f},{y:.1f}")
    return " ".join(pts)


def _page(request: Request, viewer: Viewer, *, status: int = 200, **extra: Any) -> Response:
    dests = _dests(request)
    now = state(request).log.now_us()
    rows = []
    for d in dests.list(viewer.tenant_id):
        samples = dests.store.lag_samples(viewer.tenant_id, d.id, now - DAY_US)
        rows.append(
            {
                "d": d.to_json(),
                "points": lag_points(samples, now),
                "peak": max((s for _, _, s in samples), default=0.0),
            }
        )
    ctx = {
        "rows": rows,
        "kinds": KINDS,
        "formats": FORMATS,
        "created": None,
        "error": None,
        "form": dict.fromkeys(("name", "kind", "format", "url", "filter", "settings"), ""),
        "chart": {"w": CHART_W, "h": CHART_H},
        "done": DONE.get(request.query_params.get("done", "")),
        **extra,
    }
    return state(request).pages.render(
        request, "destinations.html", ctx, viewer=viewer, status=status
    )


@signed_in
async def destinations_page(request: Request, viewer: Viewer) -> Response:
    return await run_in_threadpool(_page, request, viewer)


def _pairs(text: str, what: str) -> dict[str, Any]:
    """One KEY=VALUE per line."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise InvalidInput("one KEY=VALUE per line", field=what)
        value = value.strip()
        out[key.strip()] = (
            value == "true"
            if value in ("true", "false")
            else int(value)
            if value.isdigit()
            else value
        )
    return out


@signed_in
async def create_destination(request: Request, viewer: Viewer) -> Response:
    form = await csrf_form(request, viewer)
    viewer.require_admin()
    values = {k: field(form, k) for k in ("name", "kind", "format", "url", "filter",
                                          "settings", "secrets")}  # fmt: skip
    dests = _dests(request)
    try:
        secrets = {k: str(v) for k, v in _pairs(values["secrets"], "secrets").items()}
        dest, generated = await run_in_threadpool(
            lambda: dests.create(
                viewer.tenant_id,
                name=values["name"],
                kind=values["kind"],
                format=values["format"] or None,
                url=values["url"] or None,
                filter=values["filter"],
                settings=_pairs(values["settings"], "settings"),
                secrets=secrets,
                actor=viewer.user.actor,
            )
        )
    except InvalidInput as exc:
        message = exc.message
        form_back = {k: v for k, v in values.items() if k != "secrets"}  # secrets never echo
        return await run_in_threadpool(
            lambda: _page(request, viewer, status=422, error=message, form=form_back)
        )
    created = {"id": dest.id, "name": dest.record.name, "secrets": generated}
    return await run_in_threadpool(lambda: _page(request, viewer, created=created))


async def _act(request: Request, viewer: Viewer, verb: str) -> Response:
    await csrf_form(request, viewer)
    viewer.require_admin()
    did = request.path_params["destination_id"]
    dests, tid, actor = _dests(request), viewer.tenant_id, viewer.user.actor
    if verb == "paused":
        await run_in_threadpool(lambda: dests.pause(tid, did, "paused in the console", actor))
    elif verb == "resumed":
        await run_in_threadpool(lambda: dests.resume(tid, did, actor))
    else:
        await run_in_threadpool(lambda: dests.delete(tid, did, actor))
    return RedirectResponse(f"{base_path(request)}/destinations?{urlencode({'done': verb})}", 303)


@signed_in
async def pause_destination(request: Request, viewer: Viewer) -> Response:
    return await _act(request, viewer, "paused")


@signed_in
async def resume_destination(request: Request, viewer: Viewer) -> Response:
    return await _act(request, viewer, "resumed")


@signed_in
async def delete_destination(request: Request, viewer: Viewer) -> Response:
    return await _act(request, viewer, "deleted")


routes = [
    Route("/destinations", destinations_page, methods=["GET"]),
    Route("/destinations", create_destination, methods=["POST"]),
    Route("/destinations/{destination_id}/pause", pause_destination, methods=["POST"]),
    Route("/destinations/{destination_id}/resume", resume_destination, methods=["POST"]),
    Route("/destinations/{destination_id}/delete", delete_destination, methods=["POST"]),
]

__all__ = ["routes"]
