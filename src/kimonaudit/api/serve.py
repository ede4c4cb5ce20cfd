"""Run the API under uvicorn (what `kimonaudit serve` calls)."""

from __future__ import annotations

import dataclasses
import gc
import logging

from kimonaudit.api.app import create_app
from kimonaudit.api.settings import ApiSettings
from kimonaudit.service import AuditLog


def run(
    log: AuditLog,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    settings: ApiSettings | None = None,
    access_log: bool = True,
    forwarded_allow_ips: str = "",
) -> None:
    """Serve until SIGINT/SIGTERM. One process: the SQLite store's single
    writer thread merges concurrent appends into shared commits.

    `X-Forwarded-For` and `X-Forwarded-Proto` are believed only from the
    addresses in `forwarded_allow_ips` (comma-separated; empty: from no one),
    so no local process can choose the client address recorded in entries.
    The access log is kimonaudit.api.accesslog's (no query strings, no
    client addresses), not uvicorn's."""
    import uvicorn

    settings = settings or ApiSettings()
    if access_log:
        settings = dataclasses.replace(settings, access_log=True)
        _log_access_to_stderr()
    from kimonaudit.api.retention_job import RetentionJob

    app = create_app(log, settings=settings, jobs=[RetentionJob(log)])
    trusted = [a.strip() for a in forwarded_allow_ips.split(",") if a.strip()]
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=False,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
        server_header=False,
        timeout_graceful_shutdown=10,
        log_level="info",
    )
    _tune_collector()
    uvicorn.Server(config).run()


def _tune_collector() -> None:
    """What was loaded to start the server (FastAPI, pydantic, the routes:
    a few hundred thousand objects) lives as long as the process, so it is
    moved out of the cycle collector's sight, and young collections run
    every 10,000 allocations rather than every 700. A request's garbage is
    freed by reference counting; with the defaults, the collector cost
    about 10% of the CPU time of a single-event append (issue 7)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def _log_access_to_stderr() -> None:
    logger = logging.getLogger("kimonaudit.access")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s access: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
