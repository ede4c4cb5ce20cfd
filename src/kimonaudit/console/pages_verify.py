"""Verification: the newest signed checkpoint, the verifier key to check it
with elsewhere, and "verify now", a full check of the tenant's log whose
progress the page shows by refreshing itself (no JavaScript needed)."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from kimonaudit.console.access import csrf_form, same_site_only, signed_in
from kimonaudit.console.security import Viewer, base_path, state
from kimonaudit.core.timefmt import format_ts


def _verify_context(request: Request, viewer: Viewer) -> dict[str, Any]:
    st = state(request)
    log = st.log
    tid = viewer.tenant_id
    cp = log.latest_checkpoint(tid)
    run = st.verify_runs.get(tid)
    return {
        "tenant": log.get_tenant(tid),
        "tree_size": log.store.tree_state(tid).size,
        "checkpoint": cp,
        "checkpoint_issued": format_ts(cp.issued_at) if cp else None,
        "vkeys": log.keys.verifier_keys(),
        "run": run,
        "refresh": run is not None and run.running,
    }


@signed_in
async def verify_page(request: Request, viewer: Viewer) -> Response:
    ctx = await run_in_threadpool(_verify_context, request, viewer)
    return state(request).pages.render(request, "verify.html", ctx, viewer=viewer)


@signed_in
async def verify_now(request: Request, viewer: Viewer) -> Response:
    await csrf_form(request, viewer)
    runs = state(request).verify_runs
    await run_in_threadpool(runs.start, viewer.tenant_id, viewer.user.user_id)
    return RedirectResponse(base_path(request) + "/verify", status_code=303)


@signed_in
@same_site_only
async def checkpoint_text(request: Request, viewer: Viewer) -> Response:
    """The newest checkpoint as a file, to keep outside this server
    (`kimonaudit verify --against FILE` detects truncation with it)."""
    log = state(request).log
    cp = await run_in_threadpool(log.checkpoint, viewer.tenant_id)
    name = f"checkpoint-{viewer.tenant_id}-{cp.size}.txt"
    return PlainTextResponse(
        cp.note, headers={"Content-Disposition": f'attachment; filename="{name}"'}
    )


routes = [
    Route("/verify", verify_page, name="verify"),
    Route("/verify", verify_now, methods=["POST"], name="verify_now"),
    Route("/checkpoint.txt", checkpoint_text, name="checkpoint_text"),
]
