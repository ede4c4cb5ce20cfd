"""Who may see a page: the signed-in viewer, the redirect to sign in, and
POST forms checked for their CSRF token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from kimonaudit.console.security import (
    SESSION_COOKIE,
    Viewer,
    base_path,
    check_csrf,
    state,
    viewer_from_cookie,
)

MAX_FIELD = 4_096
Handler = Callable[[Request, Viewer], Awaitable[Response]]


async def current_viewer(request: Request) -> Viewer | None:
    accounts = state(request).accounts
    cookie = request.cookies.get(SESSION_COOKIE)
    return await run_in_threadpool(viewer_from_cookie, accounts, cookie)


def to_signin(request: Request) -> Response:
    """To the sign-in page, coming back to this page afterwards (GET only:
    a form posted with an expired session is not replayed)."""
    params = {}
    if request.method == "GET":
        here = request.url.path + ("?" + request.url.query if request.url.query else "")
        params["next"] = here
    query = "?" + urlencode(params) if params else ""
    return RedirectResponse(base_path(request) + "/signin" + query, status_code=303)


def signed_in(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint that needs a signed-in viewer."""

    @wraps(handler)
    async def endpoint(request: Request) -> Response:
        viewer = await current_viewer(request)
        if viewer is None:
            return to_signin(request)
        return await handler(request, viewer)

    return endpoint


def from_another_site(request: Request) -> bool:
    """The browser says (Fetch Metadata) that another site started this
    request: a link or redirect on a page that is not this console's origin."""
    return request.headers.get("sec-fetch-site") in ("cross-site", "same-site")


def same_site_only(handler: Handler) -> Handler:
    """For GET pages that write an entry (`audit_log.searched`, `.viewed`)
    or cut a checkpoint. A request another site started (SameSite=Lax sends
    the session cookie on top-level GETs) does nothing: it gets a page with
    a link to the same address, which, followed from here, is same-origin.
    Requests without Fetch Metadata (bookmarks in old browsers, scripts)
    go ahead: only browsers can be tricked into sending a cookie."""

    @wraps(handler)
    async def endpoint(request: Request, viewer: Viewer) -> Response:
        if from_another_site(request):
            here = request.url.path + ("?" + request.url.query if request.url.query else "")
            return state(request).pages.render(
                request,
                "error.html",
                {
                    "title": "Opened from another site",
                    "message": (
                        "This page was opened by a link on another site. Opening it records "
                        "your use of the audit log, so it only runs when you ask for it here."
                    ),
                    "continue_url": here,
                },
                viewer=viewer,
                status=403,
            )
        return await handler(request, viewer)

    return endpoint


async def csrf_form(request: Request, viewer: Viewer) -> FormData:
    """The posted form, after its CSRF token checked out."""
    form = await request.form(max_files=0, max_fields=50)
    check_csrf(request, form, viewer.csrf)
    return form


def field(form: FormData, name: str, default: str = "") -> str:
    value = form.get(name, default)
    return value[:MAX_FIELD] if isinstance(value, str) else default
