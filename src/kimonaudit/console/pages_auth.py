"""Signing in and out.

The sign-in form asks for the tenant id, the e-mail and the password: an
e-mail is unique within a tenant, not across tenants, and the same person
may have accounts in several. `?tenant=` pre-fills the tenant (the demo
prints such a link).
"""

from __future__ import annotations

import posixpath
from urllib.parse import quote, unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kimonaudit.console.access import current_viewer
from kimonaudit.console.accounts import SignInRefused
from kimonaudit.console.security import (
    SIGNIN_COOKIE,
    base_path,
    check_csrf,
    check_signin_csrf,
    clear_session_cookie,
    client_of,
    set_session_cookie,
    set_signin_cookie,
    signin_cookie,
    signin_token,
    state,
)

MAX_FIELD = 1024


def _safe_next(request: Request, target: str | None) -> str:
    """Only a path inside the console: never another site (open redirect),
    and never a path that leaves the console once the browser resolves its
    dot segments (`/console/../v1/keys`, `/console/%2e%2e/v1/keys`)."""
    base = base_path(request)
    default = base + "/events"
    if (
        not target
        or not target.startswith(base + "/")
        or target.startswith("//")
        or "\\" in target
        or not all(32 < ord(c) < 127 for c in target)
    ):
        return default
    path, mark, query = target.partition("?")
    path = path.split("#", 1)[0]
    # As a browser resolves it: %2e is a dot, then dot segments collapse.
    resolved = posixpath.normpath(unquote(path))
    if not resolved.startswith(base + "/") or resolved.startswith("//") or "\\" in resolved:
        return default
    keep_slash = "/" if path.endswith("/") and not resolved.endswith("/") else ""
    return quote(resolved + keep_slash, safe="/:@!$&'()*+,;=-._~%") + mark + query


def _signin_page(
    request: Request,
    *,
    tenant: str = "",
    email: str = "",
    error: str | None = None,
    status: int = 200,
    retry_after: float | None = None,
) -> Response:
    cookie, new = signin_cookie(request)
    headers = {"Retry-After": str(int(retry_after))} if retry_after else None
    response = state(request).pages.render(
        request,
        "signin.html",
        {
            "tenant": tenant,
            "email": email,
            "error": error,
            "next": _safe_next(request, request.query_params.get("next")),
            "csrf": signin_token(request, cookie),
        },
        status=status,
        headers=headers,
    )
    if new:
        set_signin_cookie(request, response, cookie)
    return response


async def signin(request: Request) -> Response:
    if request.method == "GET":
        if await current_viewer(request) is not None:
            return RedirectResponse(_safe_next(request, request.query_params.get("next")), 303)
        return _signin_page(request, tenant=request.query_params.get("tenant", "")[:200])
    form = await request.form(max_files=0, max_fields=20)
    check_signin_csrf(request, form)
    fields = {k: v[:MAX_FIELD] for k, v in form.items() if isinstance(v, str)}
    tenant = fields.get("tenant", "").strip()
    email = fields.get("email", "").strip()
    st = state(request)
    try:
        signed = await run_in_threadpool(
            st.accounts.sign_in, tenant, email, fields.get("password", ""), client_of(request)
        )
    except SignInRefused as exc:
        status = 429 if exc.retry_after else 401
        return _signin_page(
            request,
            tenant=tenant,
            email=email,
            error=exc.message,
            status=status,
            retry_after=exc.retry_after,
        )
    response = RedirectResponse(_safe_next(request, fields.get("next")), status_code=303)
    set_session_cookie(request, response, signed.cookie, st.settings.session_seconds)
    response.delete_cookie(SIGNIN_COOKIE, path=base_path(request) or "/")
    return response


async def signout(request: Request) -> Response:
    viewer = await current_viewer(request)
    response = RedirectResponse(base_path(request) + "/signin", status_code=303)
    if viewer is None:
        clear_session_cookie(request, response)
        return response
    form = await request.form(max_files=0, max_fields=20)
    check_csrf(request, form, viewer.csrf)
    await run_in_threadpool(
        state(request).accounts.sign_out, viewer.session, viewer.user, client_of(request)
    )
    clear_session_cookie(request, response)
    return response


routes = [
    Route("/signin", signin, methods=["GET", "POST"], name="signin"),
    Route("/signout", signout, methods=["POST"], name="signout"),
]
