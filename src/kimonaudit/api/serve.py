"""Run the API under uvicorn (what `kimonaudit serve` calls)."""

from __future__ import annotations

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
) -> None:
    """Serve until SIGINT/SIGTERM. One process: the SQLite store's single
    writer thread merges concurrent appends into shared commits."""
    import uvicorn

    app = create_app(log, settings=settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        access_log=access_log,
        server_header=False,
        timeout_graceful_shutdown=10,
        log_level="info",
    )
    uvicorn.Server(config).run()
