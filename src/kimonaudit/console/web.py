"""The console as an ASGI app of its own, mounted at /console/ by
kimonaudit.api.routes_console.

It is a separate Starlette app rather than routes on the API so that its
errors are HTML pages (the API's are JSON), and so its security headers
and cookies apply to it alone.

    app.mount("/console", create_console(log))
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from kimonaudit import errors as E
from kimonaudit.console import (
    pages_admin,
    pages_auth,
    pages_destinations,
    pages_events,
    pages_retention,
    pages_verify,
)
from kimonaudit.console.accounts import SESSION_SECONDS, ConsoleAccounts
from kimonaudit.console.passwords import Passwords
from kimonaudit.console.render import Pages
from kimonaudit.console.security import SecurityHeaders, base_path
from kimonaudit.console.throttle import Limits
from kimonaudit.console.throttle_shared import make_throttle
from kimonaudit.console.verifyjobs import VerifyRuns
from kimonaudit.service import AuditLog

log = logging.getLogger("kimonaudit.console")


@dataclass(frozen=True)
class ConsoleSettings:
    """Defaults suit production. Tests lower the argon2 cost."""

    password_time_cost: int = 3
    password_memory_kib: int = 65_536
    password_parallelism: int = 4
    session_seconds: int = SESSION_SECONDS
    throttle: Limits = field(default_factory=Limits)
    page_size: int = 50
    chart_days: int = 30


@dataclass
class ConsoleState:
    log: AuditLog
    accounts: ConsoleAccounts
    pages: Pages
    verify_runs: VerifyRuns
    settings: ConsoleSettings
    # Called with a key id after the console revokes a key, so the API's
    # authentication cache forgets it at once.
    on_key_revoked: Callable[[str], None] = lambda _key_id: None


_STATUS = (
    (E.InvalidInput, 422, "That did not work"),
    (E.NotFound, 404, "Not found"),
    (E.Conflict, 409, "That conflicts with what is there"),
    (E.Forbidden, 403, "Not allowed"),
    (E.AuthError, 401, "Please sign in"),
    (E.VerificationError, 500, "Integrity problem"),
    (E.StoreError, 503, "The database is unavailable"),
)


def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    st: ConsoleState = request.app.state.console
    return st.pages.render(
        request, "error.html", {"title": title, "message": message}, status=status
    )


async def _on_library_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, E.AuditLogError)
    status, title = next(
        ((s, t) for cls, s, t in _STATUS if isinstance(exc, cls)), (500, "Something went wrong")
    )
    if status == 401 and not isinstance(exc, E.Forbidden):
        return RedirectResponse(base_path(request) + "/signin", status_code=303)
    if status >= 500:
        log.error("%s: %s", type(exc).__name__, exc.message)
    message = (
        exc.message
        if status < 500 or isinstance(exc, E.VerificationError)
        else ("the server could not complete this request")
    )
    return _error_page(request, status, title, message)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error_page(request, 404, "Not found", "there is no such page in the console")
    return _error_page(request, exc.status_code, "Request refused", str(exc.detail))


async def _on_crash(request: Request, exc: Exception) -> Response:
    log.error("console error", exc_info=exc)
    return _error_page(request, 500, "Something went wrong", "the server hit an error")


def create_console(
    log_: AuditLog,
    settings: ConsoleSettings | None = None,
    *,
    on_key_revoked: Callable[[str], None] | None = None,
) -> Starlette:
    settings = settings or ConsoleSettings()
    accounts = ConsoleAccounts(
        log_,
        passwords=Passwords(
            settings.password_time_cost,
            settings.password_memory_kib,
            settings.password_parallelism,
        ),
        throttle=make_throttle(log_.store, settings.throttle),
        session_seconds=settings.session_seconds,
    )
    state = ConsoleState(log_, accounts, Pages(), VerifyRuns(log_), settings)
    if on_key_revoked is not None:
        state.on_key_revoked = on_key_revoked
    routes = [
        Route("/", home),
        *pages_auth.routes,
        *pages_events.routes,
        *pages_admin.routes,
        *pages_verify.routes,
        *pages_retention.routes,
        *pages_destinations.routes,
        Mount("/static", StaticFiles(packages=[("kimonaudit.console", "static")]), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={
            E.AuditLogError: _on_library_error,
            HTTPException: _on_http_error,
            Exception: _on_crash,
        },
    )
    app.state.console = state
    return app


async def home(request: Request) -> Response:
    return RedirectResponse(base_path(request) + "/events", status_code=303)
