"""The application factory.

    app = create_app(log, settings=ApiSettings())

Routes live in ``kimonaudit/api/routes_*.py``; each such module exposes an
APIRouter named ``router`` and is included here in module-name order, so a
new surface (search, exports, destinations, the console) is added by
dropping in a module, without editing this file. A module may also define
``install(app)`` for anything a router cannot carry (a mount, static
files). Routes reach the shared state through `kimonaudit.api.deps`.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema
from starlette.types import ASGIApp, Receive, Scope, Send

import kimonaudit
from kimonaudit.api import errors, models
from kimonaudit.api.accesslog import log_access, route_template
from kimonaudit.api.allow import CompleteAllow
from kimonaudit.api.auth import Authenticator
from kimonaudit.api.body import BodyLimit
from kimonaudit.api.errors import CLIENT_CLOSED
from kimonaudit.api.fastingest import FastIngest
from kimonaudit.api.jobs import Checkpointer, Job
from kimonaudit.api.metrics import ServerMetrics
from kimonaudit.api.observe import ResponseObserver
from kimonaudit.api.ratelimit import make_limiter
from kimonaudit.api.settings import ApiSettings
from kimonaudit.service import AuditLog

# Models that appear only in hand-written request bodies (see routes_events):
# FastAPI does not see them, so create_app adds them to the components.
BODY_MODELS: tuple[type[Any], ...] = (models.EventIn, models.EventBatchIn, models.ApiKeyCreate)


@dataclass
class ApiState:
    """Everything a route needs, on ``app.state.api``."""

    log: AuditLog
    settings: ApiSettings
    auth: Authenticator
    metrics: ServerMetrics
    checkpointer: Checkpointer
    jobs: list[Job] = field(default_factory=list)

    def observe_request(
        self, scope: Scope, status: int, seconds: float, route: str | None = None
    ) -> None:
        """Count and time a finished request under its route template (the
        matched route's unless `route` is given), and write its access-log
        line when the access log is on."""
        path = route or getattr(scope.get("route"), "path", None) or "unmatched"
        if status == CLIENT_CLOSED:
            self.metrics.client_disconnects.inc(method=scope["method"], route=path)
        else:
            self.metrics.requests.inc(method=scope["method"], route=path, status=str(status))
            self.metrics.request_seconds.observe(seconds, route=path)
        if self.settings.access_log:
            log_access(scope["method"], route or route_template(scope), status, seconds)


def create_app(
    log: AuditLog,
    *,
    settings: ApiSettings | None = None,
    jobs: Sequence[Job] = (),
) -> FastAPI:
    """The HTTP API over `log`. The caller owns `log` (and closes it). With
    ``settings.run_jobs`` the checkpointer and `jobs` run while the app does."""
    settings = settings or ApiSettings()
    metrics = ServerMetrics()
    checkpointer = Checkpointer(
        log,
        interval=settings.checkpoint_interval,
        rescan_interval=settings.rescan_interval,
        on_cut=metrics.checkpoints.inc,
    )
    state = ApiState(
        log=log,
        settings=settings,
        auth=Authenticator(
            log,
            make_limiter(log.store, settings.rate_limit, settings.burst),
            settings.auth_cache_seconds,
        ),
        metrics=metrics,
        checkpointer=checkpointer,
        jobs=[checkpointer, *jobs] if settings.run_jobs else [],
    )
    _gauges(state)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        started: list[Job] = []
        try:
            for job in state.jobs:
                job.start()
                started.append(job)
            yield
        finally:
            for job in reversed(started):
                job.stop()

    app = _AuditApi(
        title="KimonAudit",
        version=kimonaudit.__version__,
        description=(
            "Tamper-evident, multi-tenant audit log. Authenticate with "
            "`Authorization: Bearer <api key>`; the tenant comes from the key. "
            'Every error has the shape `{"error": {"status", "code", "message", '
            '"fields"?}}`.'
        ),
        lifespan=lifespan,
        docs_url=None,  # routes_home serves /docs with local assets, no CDN
        redoc_url=None,
    )
    app.state.api = state
    errors.install(app)
    for module in route_modules():
        if hasattr(module, "router"):
            app.include_router(module.router)
        if hasattr(module, "install"):
            module.install(app)
    app.add_middleware(RequestMetrics, state=state)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(CompleteAllow, routes=app.router.routes)
    app.fast = FastIngest(functools.partial(FastAPI.__call__, app), state)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


class _AuditApi(FastAPI):
    """FastAPI with the fast append path in front of all its layers
    (kimonaudit.api.fastingest): a POST /v1/events it does not take goes
    on to FastAPI as usual."""

    fast: FastIngest | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast is None:
            await super().__call__(scope, receive, send)
        else:
            await self.fast(scope, receive, send)


def route_modules() -> list[Any]:
    import kimonaudit.api as package

    names = sorted(
        m.name for m in pkgutil.iter_modules(package.__path__) if m.name.startswith("routes_")
    )
    return [importlib.import_module(f"kimonaudit.api.{name}") for name in names]


def _gauges(state: ApiState) -> None:
    cp = state.checkpointer
    m = state.metrics
    m.gauge(
        "kimonaudit_checkpoint_age_seconds",
        "Seconds since the server last cut a checkpoint.",
        cp.age_seconds,
    )
    m.gauge(
        "kimonaudit_checkpoint_pending_seconds",
        "How long the oldest entry not yet covered by a checkpoint has waited.",
        cp.pending_seconds,
    )
    depth = getattr(state.log.store, "writer_queue_depth", None)
    m.gauge(
        "kimonaudit_writer_queue_depth",
        "Appends waiting for the store's writer (group commit).",
        (lambda: float(depth())) if callable(depth) else (lambda: 0.0),
    )


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    _, defs = models_json_schema(
        [(m, "validation") for m in BODY_MODELS], ref_template="#/components/schemas/{model}"
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, body in defs.get("$defs", {}).items():
        components.setdefault(name, body)
    app.openapi_schema = schema
    return schema


class RequestMetrics(ResponseObserver):
    """ASGI middleware: count requests and time them by route template, and
    write the access log (ApiState.observe_request)."""

    def __init__(self, app: ASGIApp, state: ApiState) -> None:
        super().__init__(app)
        self.state = state

    def finished(self, scope: Scope, status: int, seconds: float) -> None:
        self.state.observe_request(scope, status, seconds)
