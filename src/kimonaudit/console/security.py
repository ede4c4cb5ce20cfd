"""The console's browser-facing defences: response headers, cookies, the
signed-in viewer and CSRF tokens.

- Every response carries a Content-Security-Policy that allows scripts,
  styles and images from this origin only (no inline script, no inline
  style), forbids framing, and keeps forms posting to this origin.
- The session cookie is HttpOnly, SameSite=Lax, scoped to the console's
  path, and Secure whenever the request came over HTTPS.
- Every POST carries a per-session CSRF token, compared in constant time;
  a request the browser marks as cross-site (Sec-Fetch-Site) is refused
  outright. The sign-in form, which has no session yet, uses a short-lived
  cookie and a token MACed from it with a server key.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kimonaudit.console.accounts import Client, ConsoleAccounts, may_administer
from kimonaudit.console.records import ConsoleSession, ConsoleUser
from kimonaudit.errors import Forbidden
from kimonaudit.results import b64

if TYPE_CHECKING:
    from kimonaudit.console.web import ConsoleState

SESSION_COOKIE = "kimonaudit_session"
SIGNIN_COOKIE = "kimonaudit_signin"
SIGNIN_COOKIE_SECONDS = 3600

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; object-src 'none'"
)
HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)


class SecurityHeaders:
    """ASGI middleware: the headers above on every console response, and
    `Cache-Control: no-store` on all but static files (pages show audit
    data and one-time secrets; no cache should keep them)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = "/static/" in scope.get("path", "")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in HEADERS if k not in present]
                if not static and b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


class CsrfFailed(Forbidden):
    def __init__(self) -> None:
        super().__init__(
            "this form has expired or was sent from another site; go back, reload the page "
            "and try again"
        )


@dataclass(frozen=True)
class Viewer:
    """The signed-in console user of a request."""

    session: ConsoleSession
    user: ConsoleUser
    csrf: str

    @property
    def tenant_id(self) -> str:
        return self.user.tenant_id

    @property
    def can_administer(self) -> bool:
        return may_administer(self.user)

    def require_admin(self) -> None:
        if not self.can_administer:
            raise Forbidden(
                f"your role ({self.user.role}) is read-only here: ask an owner or admin"
            )


def state(request: Request) -> ConsoleState:
    return request.app.state.console  # type: ignore[no-any-return]


def base_path(request: Request) -> str:
    """Where the console is mounted (``/console``), without a trailing slash."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def client_of(request: Request) -> Client:
    host = request.client.host if request.client is not None else None
    return Client(host, request.headers.get("user-agent"))


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


def viewer_from_cookie(accounts: ConsoleAccounts, cookie: str | None) -> Viewer | None:
    found = accounts.resume(cookie)
    if found is None:
        return None
    session, user = found
    return Viewer(session, user, ConsoleAccounts.csrf_token(session))


def set_session_cookie(request: Request, response: Response, value: str, seconds: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=seconds,
        path=base_path(request) or "/",
        secure=is_https(request),
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path=base_path(request) or "/",
        secure=is_https(request),
        httponly=True,
        samesite="lax",
    )


def _cross_site(request: Request) -> bool:
    return request.headers.get("sec-fetch-site") == "cross-site"


def check_csrf(request: Request, form: FormData, expected: str) -> None:
    token = form.get("csrf")
    if (
        _cross_site(request)
        or not isinstance(token, str)
        or not hmac.compare_digest(token.encode("utf-8", "replace"), expected.encode("ascii"))
    ):
        raise CsrfFailed()


# -- the sign-in form (no session yet) ----------------------------------------
def signin_cookie(request: Request) -> tuple[str, bool]:
    """The browser's sign-in cookie value, and whether it is new."""
    value = request.cookies.get(SIGNIN_COOKIE)
    if value and 20 <= len(value) <= 100 and value.isascii():
        return value, False
    return secrets.token_urlsafe(24), True


def signin_token(request: Request, cookie: str) -> str:
    mac = state(request).accounts.log.sign_token("console-signin", cookie.encode("ascii"))
    return b64(mac)


def set_signin_cookie(request: Request, response: Response, value: str) -> None:
    response.set_cookie(
        SIGNIN_COOKIE,
        value,
        max_age=SIGNIN_COOKIE_SECONDS,
        path=base_path(request) or "/",
        secure=is_https(request),
        httponly=True,
        samesite="strict",
    )


def check_signin_csrf(request: Request, form: FormData) -> None:
    cookie = request.cookies.get(SIGNIN_COOKIE)
    if not cookie or not cookie.isascii():
        raise CsrfFailed()
    check_csrf(request, form, signin_token(request, cookie))
