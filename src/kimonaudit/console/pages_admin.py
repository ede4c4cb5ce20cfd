"""API keys and console users of the viewer's tenant.

Everyone may look; only owners and admins may change anything (auditors
are read-only), and only within the roles they may manage. A new API key
or a new user's password is shown once, on the response to the form that
created it, never in a URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kimonaudit.apikeys import SCOPES
from kimonaudit.console.access import csrf_form, field, signed_in
from kimonaudit.console.accounts import may_manage
from kimonaudit.console.passwords import generate_password
from kimonaudit.console.records import ROLES
from kimonaudit.console.security import Viewer, base_path, client_of, state
from kimonaudit.errors import InvalidInput

DONE = {
    "revoked": "The key was revoked. Clients using it are refused within seconds.",
    "disabled": "The user was disabled and signed out everywhere.",
}


def _redirect(request: Request, path: str, done: str) -> Response:
    return RedirectResponse(f"{base_path(request)}{path}?{urlencode({'done': done})}", 303)


# -- API keys -----------------------------------------------------------------
def _keys_page(request: Request, viewer: Viewer, *, status: int = 200, **extra: Any) -> Response:
    keys = state(request).log.list_api_keys(viewer.tenant_id)
    ctx = {
        "keys": keys,
        "scopes": SCOPES,
        "created": None,
        "error": None,
        "form_name": "",
        "done": DONE.get(request.query_params.get("done", "")),
        **extra,
    }
    return state(request).pages.render(request, "apikeys.html", ctx, viewer=viewer, status=status)


@signed_in
async def api_keys(request: Request, viewer: Viewer) -> Response:
    return await run_in_threadpool(_keys_page, request, viewer)


@signed_in
async def create_key(request: Request, viewer: Viewer) -> Response:
    form = await csrf_form(request, viewer)
    viewer.require_admin()
    name = field(form, "name")
    scopes = [s for s in form.getlist("scope") if isinstance(s, str)]
    log = state(request).log
    try:
        rec, text = await run_in_threadpool(
            lambda: log.create_api_key(viewer.tenant_id, name, scopes, actor=viewer.user.actor)
        )
    except InvalidInput as exc:
        message = exc.reason
        return await run_in_threadpool(
            lambda: _keys_page(request, viewer, status=422, error=message, form_name=name)
        )
    return await run_in_threadpool(
        lambda: _keys_page(request, viewer, created={"key": rec, "text": text})
    )


@signed_in
async def revoke_key(request: Request, viewer: Viewer) -> Response:
    await csrf_form(request, viewer)
    viewer.require_admin()
    key_id = request.path_params["key_id"]
    st = state(request)
    rec = await run_in_threadpool(
        lambda: st.log.revoke_api_key(viewer.tenant_id, key_id, actor=viewer.user.actor)
    )
    st.on_key_revoked(rec.key_id)
    return _redirect(request, "/api-keys", "revoked")


# -- console users --------------------------------------------------------------
def _users_page(request: Request, viewer: Viewer, *, status: int = 200, **extra: Any) -> Response:
    users = state(request).accounts.list_users(viewer.tenant_id)
    ctx = {
        "users": users,
        "roles": [r for r in ROLES if may_manage(viewer.user.role, r)],
        "may_manage": may_manage,
        "created": None,
        "error": None,
        "form_email": "",
        "done": DONE.get(request.query_params.get("done", "")),
        **extra,
    }
    return state(request).pages.render(request, "users.html", ctx, viewer=viewer, status=status)


@signed_in
async def users(request: Request, viewer: Viewer) -> Response:
    return await run_in_threadpool(_users_page, request, viewer)


@signed_in
async def create_user(request: Request, viewer: Viewer) -> Response:
    form = await csrf_form(request, viewer)
    viewer.require_admin()
    email = field(form, "email")
    role = field(form, "role", "auditor")
    password = generate_password()
    accounts = state(request).accounts
    client = client_of(request)
    try:
        user = await run_in_threadpool(
            lambda: accounts.create_user(
                viewer.tenant_id, email, password, role, by=viewer.user, client=client
            )
        )
    except InvalidInput as exc:
        message = exc.reason
        return await run_in_threadpool(
            lambda: _users_page(request, viewer, status=422, error=message, form_email=email)
        )
    return await run_in_threadpool(
        lambda: _users_page(request, viewer, created={"user": user, "password": password})
    )


@signed_in
async def disable_user(request: Request, viewer: Viewer) -> Response:
    await csrf_form(request, viewer)
    viewer.require_admin()
    user_id = request.path_params["user_id"]
    accounts = state(request).accounts
    client = client_of(request)
    await run_in_threadpool(
        lambda: accounts.disable_user(viewer.tenant_id, user_id, by=viewer.user, client=client)
    )
    return _redirect(request, "/users", "disabled")


routes = [
    Route("/api-keys", api_keys, name="api_keys"),
    Route("/api-keys", create_key, methods=["POST"], name="create_key"),
    Route("/api-keys/{key_id}/revoke", revoke_key, methods=["POST"], name="revoke_key"),
    Route("/users", users, name="users"),
    Route("/users", create_user, methods=["POST"], name="create_user"),
    Route("/users/{user_id}/disable", disable_user, methods=["POST"], name="disable_user"),
]
