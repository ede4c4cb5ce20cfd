"""Run the API under uvicorn (what `kimonaudit serve` calls)."""

from __future__ import annotations

import dataclasses
import logging

from kimonaudit.api.app import create_app
from kimonaudit.api.settings import ApiSettings
from kimonaudit.collector import tune_for_throughput
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
    tune_for_throughput()
    uvicorn.Server(config).run()


def _log_access_to_stderr() -> None:
    logger = logging.getLogger("kimonaudit.access")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s access: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
