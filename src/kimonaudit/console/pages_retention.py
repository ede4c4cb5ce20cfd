"""Retention and privacy pages (issue 8): the tenant's plan, retention and
legal hold; erasing a person from the actor directory; redacting one
entry. Everyone may look; owners and admins change retention and erase;
only owners redact. Erasure and redaction go through a confirmation page.
Every change is an entry in the tenant's log with the viewer as actor.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kimonaudit.console.access import csrf_form, field, same_site_only, signed_in
from kimonaudit.console.security import Viewer, base_path, state
from kimonaudit.errors import Forbidden, InvalidInput
from kimonaudit.purge import months_after
from kimonaudit.retention import PLANS

DONE = {
    "plan": "The plan was changed.",
    "months": "The retention period was changed.",
    "hold": "The legal hold was changed.",
    "erased": "The person was erased from the directory. Their entries now show as erased actor.",
    "unknown": "The directory did not know that actor id; nothing was linked to it.",
}


def _redirect(request: Request, path: str, done: str) -> Response:
    return RedirectResponse(f"{base_path(request)}{path}?{urlencode({'done': done})}", 303)


def require_owner(viewer: Viewer) -> None:
    if viewer.user.role != "owner":
        raise Forbidden(f"only an owner may redact entries (your role: {viewer.user.role})")


def _page(request: Request, viewer: Viewer, *, status: int = 200, **extra: Any) -> Response:
    log = state(request).log
    settings = log.retention_settings(viewer.tenant_id)
    purged = log.store.tree_state(viewer.tenant_id).purged
    first = log.store.get_entry(viewer.tenant_id, purged)
    oldest = None if first is None else first.recorded_at
    ctx = {
        "settings": settings,
        "purged": purged,
        "oldest": oldest,
        "next_purge": (
            None if oldest is None or settings.legal_hold else months_after(oldest, settings.months)
        ),
        "plans": PLANS,
        "error": None,
        "done": DONE.get(request.query_params.get("done", "")),
        **extra,
    }
    return state(request).pages.render(request, "retention.html", ctx, viewer=viewer, status=status)


@signed_in
async def retention_page(request: Request, viewer: Viewer) -> Response:
    return await run_in_threadpool(_page, request, viewer)


async def _change(request: Request, viewer: Viewer, what: str) -> Response:
    form = await csrf_form(request, viewer)
    viewer.require_admin()
    log = state(request).log
    tid, actor = viewer.tenant_id, viewer.user.actor
    try:
        if what == "plan":
            plan = field(form, "plan")
            await run_in_threadpool(lambda: log.set_plan(tid, plan, actor=actor))
        elif what == "months":
            raw = field(form, "months").strip()
            if raw and not raw.isdigit():
                raise InvalidInput("retention is a whole number of months", field="months")
            months = int(raw) if raw else None
            await run_in_threadpool(lambda: log.set_retention(tid, months, actor=actor))
        else:
            hold = field(form, "hold") == "on"
            reason = field(form, "reason") or None
            await run_in_threadpool(
                lambda: log.set_legal_hold(tid, hold, reason=reason, actor=actor)
            )
    except InvalidInput as exc:
        message = exc.reason
        return await run_in_threadpool(lambda: _page(request, viewer, status=422, error=message))
    return _redirect(request, "/retention", what)


@signed_in
async def change_plan(request: Request, viewer: Viewer) -> Response:
    return await _change(request, viewer, "plan")


@signed_in
async def change_months(request: Request, viewer: Viewer) -> Response:
    return await _change(request, viewer, "months")


@signed_in
async def change_hold(request: Request, viewer: Viewer) -> Response:
    return await _change(request, viewer, "hold")


# -- erasure ---------------------------------------------------------------------
@signed_in
async def erase_actor(request: Request, viewer: Viewer) -> Response:
    """Step 1 (no `confirm`): a confirmation page. Step 2: erase."""
    form = await csrf_form(request, viewer)
    viewer.require_admin()
    actor_id = field(form, "actor_id").strip()
    if not actor_id:
        return await run_in_threadpool(
            lambda: _page(request, viewer, status=422, error="give the actor id to erase")
        )
    if field(form, "confirm") != "yes":
        ctx = {"kind": "erase", "actor_id": actor_id, "seq": None, "reason": ""}
        return state(request).pages.render(request, "confirm.html", ctx, viewer=viewer)
    log = state(request).log
    found = await run_in_threadpool(
        lambda: log.erase_actor(viewer.tenant_id, actor_id, actor=viewer.user.actor)
    )
    return _redirect(request, "/retention", "erased" if found else "unknown")


# -- redaction -------------------------------------------------------------------
@signed_in
@same_site_only
async def redact_form(request: Request, viewer: Viewer) -> Response:
    require_owner(viewer)
    seq = request.path_params["seq"]
    if seq > 2**62:
        raise InvalidInput("no such entry", field="seq")
    log = state(request).log
    await run_in_threadpool(lambda: log.get_entry(viewer.tenant_id, seq))  # 404 if none
    ctx = {"kind": "redact", "actor_id": None, "seq": seq, "reason": "", "error": None}
    return state(request).pages.render(request, "confirm.html", ctx, viewer=viewer)


@signed_in
async def redact(request: Request, viewer: Viewer) -> Response:
    form = await csrf_form(request, viewer)
    require_owner(viewer)
    seq = request.path_params["seq"]
    if seq > 2**62:
        raise InvalidInput("no such entry", field="seq")
    reason = field(form, "reason")
    log = state(request).log
    try:
        await run_in_threadpool(
            lambda: log.redact(viewer.tenant_id, seq, reason, actor=viewer.user.actor)
        )
    except InvalidInput as exc:
        ctx = {"kind": "redact", "actor_id": None, "seq": seq, "reason": reason,
               "error": exc.reason}  # fmt: skip
        return state(request).pages.render(request, "confirm.html", ctx, viewer=viewer, status=422)
    return RedirectResponse(f"{base_path(request)}/events/{seq}", 303)


routes = [
    Route("/retention", retention_page, name="retention"),
    Route("/retention/plan", change_plan, methods=["POST"], name="retention_plan"),
    Route("/retention/months", change_months, methods=["POST"], name="retention_months"),
    Route("/retention/hold", change_hold, methods=["POST"], name="retention_hold"),
    Route("/actors/erase", erase_actor, methods=["POST"], name="erase_actor"),
    Route("/events/{seq:int}/redact", redact_form, name="redact_form"),
    Route("/events/{seq:int}/redact", redact, methods=["POST"], name="redact"),
]
