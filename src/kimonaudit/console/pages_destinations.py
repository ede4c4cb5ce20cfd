"""SIEM destinations of the viewer's tenant (issue 9): each with a status
badge, its health and a small lag chart (the last 24 hours, one sample a
minute, server-rendered SVG); owners and admins add, change, pause,
resume and delete them. A generated signing secret is shown once, on the
response to the form that created (or changed) the destination. Every change is an
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
from kimonaudit.core.destination_records import FORMATS, KIND_FORMATS, KINDS
from kimonaudit.destinations import Destinations
from kimonaudit.errors import InvalidInput
from kimonaudit.sinks import settings as sink_settings

DONE = {
    "paused": "The destination was paused. Entries wait for it; nothing is lost.",
    "resumed": "The destination was resumed and catches up in order.",
    "deleted": "The destination was deleted.",
    "updated": "The destination was changed. The change applies from its next batch.",
    "unchanged": "Nothing was changed.",
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
        "updated": None,
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


CA_KINDS = ("syslog", "s3")  # kinds with a ca_pem setting (docs/streaming.md)
MAX_PEM = 20_000


def _settings_text(settings: dict[str, Any]) -> str:
    """The settings as the form shows them, one KEY=VALUE a line (the CA
    certificate, several lines long, has a field of its own)."""
    return "\n".join(
        f"{k}={'true' if v is True else 'false' if v is False else v}"
        for k, v in settings.items()
        if k != "ca_pem"
    )


def _edit_page(
    request: Request, viewer: Viewer, did: str, *, status: int = 200, **extra: Any
) -> Response:
    d = _dests(request).get(viewer.tenant_id, did).to_json()
    ctx = {
        "d": d,
        "formats": KIND_FORMATS[d["kind"]],
        "has_ca": d["kind"] in CA_KINDS,
        "error": None,
        "form": {
            "name": d["name"], "format": d["format"], "url": d["url"], "filter": d["filter"],
            **{k: str(v) for k, v in d["batch"].items()},
            "settings": _settings_text(d["settings"]),
        },
        **extra,
    }  # fmt: skip
    return state(request).pages.render(
        request, "destination_edit.html", ctx, viewer=viewer, status=status
    )


@signed_in
async def edit_destination_page(request: Request, viewer: Viewer) -> Response:
    viewer.require_admin()
    did = request.path_params["destination_id"]
    return await run_in_threadpool(lambda: _edit_page(request, viewer, did))


def _int_field(value: str, name: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not value.isdigit():
        raise InvalidInput("must be a whole number", field=f"batch.{name}")
    return int(value)


@signed_in
async def edit_destination(request: Request, viewer: Viewer) -> Response:
    """The edit form posted: only what differs changes (the settings box
    holds the whole set: a line removed removes the setting). Secrets are
    never shown or echoed; an empty box keeps them."""
    form = await csrf_form(request, viewer)
    viewer.require_admin()
    did = request.path_params["destination_id"]
    names = ("name", "format", "url", "filter", "max_events", "max_bytes", "max_wait_ms",
             "settings", "secrets")  # fmt: skip
    values = {k: field(form, k) for k in names}
    raw_ca = form.get("ca_pem", "")
    ca_pem = raw_ca.strip() if isinstance(raw_ca, str) else ""
    remove_ca = field(form, "remove_ca") == "1"
    new_secret = field(form, "new_signing_secret") == "1"
    dests, tid, actor = _dests(request), viewer.tenant_id, viewer.user.actor
    try:
        current = (await run_in_threadpool(dests.get, tid, did)).to_json()
        if len(ca_pem) > MAX_PEM:
            raise InvalidInput(f"at most {MAX_PEM} characters", field="settings.ca_pem")
        wanted = _pairs(values["settings"], "settings")
        settings: dict[str, Any] = {
            **{k: None for k in current["settings"] if k != "ca_pem" and k not in wanted},
            **wanted,
        }
        if ca_pem:
            settings["ca_pem"] = ca_pem
        elif remove_ca:
            settings["ca_pem"] = None
        secrets = {k: str(v) for k, v in _pairs(values["secrets"], "secrets").items()}
        batch = {
            k: v
            for k in ("max_events", "max_bytes", "max_wait_ms")
            if (v := _int_field(values[k], k)) is not None
        }
        dest, changed, generated = await run_in_threadpool(
            lambda: dests.update(
                tid,
                did,
                name=values["name"],
                format=values["format"] or None,
                # The URL as shown is no change: a URL derived from a setting
                # (Datadog's site, S3's region) then follows that setting.
                url=None if values["url"] == current["url"] else values["url"] or None,
                filter=values["filter"],
                batch=batch or None,
                settings=settings or None,
                secrets=secrets or None,
                new_signing_secret=new_secret,
                actor=actor,
            )
        )
    except InvalidInput as exc:
        message = exc.message
        form_back = {k: v for k, v in values.items() if k != "secrets"}  # secrets never echo
        return await run_in_threadpool(
            lambda: _edit_page(request, viewer, did, status=422, error=message, form=form_back)
        )
    if generated:
        updated = {"id": dest.id, "name": dest.record.name, "changed": changed,
                   "secrets": generated}  # fmt: skip
        return await run_in_threadpool(lambda: _page(request, viewer, updated=updated))
    done = "updated" if changed else "unchanged"
    return RedirectResponse(f"{base_path(request)}/destinations?{urlencode({'done': done})}", 303)


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
    Route("/destinations/{destination_id}/edit", edit_destination_page, methods=["GET"]),
    Route("/destinations/{destination_id}/edit", edit_destination, methods=["POST"]),
    Route("/destinations/{destination_id}/pause", pause_destination, methods=["POST"]),
    Route("/destinations/{destination_id}/resume", resume_destination, methods=["POST"]),
    Route("/destinations/{destination_id}/delete", delete_destination, methods=["POST"]),
]

__all__ = ["routes"]
