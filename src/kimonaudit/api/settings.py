"""Settings of the HTTP server, declared once (name, environment variable,
default, help) and read at the edge by `kimonaudit serve`."""

from __future__ import annotations

from dataclasses import dataclass

from kimonaudit.settings import Setting

HOST = Setting("host", "KIMONAUDIT_HOST", "127.0.0.1", "Address to listen on.")
PORT = Setting("port", "KIMONAUDIT_PORT", "8080", "TCP port to listen on.")
RATE_LIMIT = Setting(
    "rate-limit",
    "KIMONAUDIT_RATE_LIMIT",
    "2000",
    "Requests per second allowed per API key (token bucket; bursts of twice "
    "this); 0 turns rate limiting off.",
)
CHECKPOINT_INTERVAL = Setting(
    "checkpoint-interval",
    "KIMONAUDIT_CHECKPOINT_INTERVAL",
    "1.0",
    "Seconds between checkpoints of a tenant while entries arrive.",
)
WAIT_TIMEOUT = Setting(
    "wait-timeout",
    "KIMONAUDIT_WAIT_TIMEOUT",
    "10.0",
    "Seconds POST /v1/events?wait=checkpoint waits for a checkpoint before answering 503.",
)

FORWARDED_ALLOW_IPS = Setting(
    "forwarded-allow-ips",
    "KIMONAUDIT_FORWARDED_ALLOW_IPS",
    "",
    "Comma-separated addresses of reverse proxies whose X-Forwarded-For and "
    "X-Forwarded-Proto are believed; empty (the default) believes no one.",
)

METRICS_DIR = Setting(
    "metrics-dir",
    "KIMONAUDIT_METRICS_DIR",
    "",
    "Directory shared by several serve processes for Prometheus multiprocess "
    "metrics (sets PROMETHEUS_MULTIPROC_DIR); empty: this process only.",
)

ALL: tuple[Setting, ...] = (
    HOST,
    PORT,
    RATE_LIMIT,
    CHECKPOINT_INTERVAL,
    WAIT_TIMEOUT,
    FORWARDED_ALLOW_IPS,
    METRICS_DIR,
)

MiB = 1 << 20


@dataclass(frozen=True)
class ApiSettings:
    """What `create_app` needs beyond the AuditLog; defaults suit production."""

    max_body_bytes: int = MiB
    max_events: int = 1_000
    # Per API key; 0 disables. Generous: it stops a runaway client, not a busy one.
    rate_limit: float = 2_000.0
    rate_burst: float | None = None  # default: twice the rate
    checkpoint_interval: float = 1.0
    wait_timeout: float = 10.0
    # Tenants written by other processes (CLI ingest) are found by a full
    # scan this often; tenants written through this server right away.
    rescan_interval: float = 60.0
    # A validated key is trusted for this long without a database read; a
    # key revoked elsewhere (the CLI) stops working within this time.
    auth_cache_seconds: float = 2.0
    run_jobs: bool = True
    # One line per request through kimonaudit.api.accesslog (`serve` turns it on).
    access_log: bool = False

    @property
    def burst(self) -> float:
        return self.rate_burst if self.rate_burst is not None else 2 * self.rate_limit
