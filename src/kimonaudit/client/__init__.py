"""Python client for a KimonAudit server: record events without waiting on
the network.

    from kimonaudit.client import AuditClient

    with AuditClient("http://127.0.0.1:8080", api_key, spool_path="audit-spool.db") as audit:
        audit.record({"action": "ticket.viewed", "actor": {"id": "agent_42"}})

`record()` gives each event a UUIDv7 `id` (the server's idempotency key),
stores it in the spool (a SQLite file) or an in-memory queue, and returns.
A background sender posts batches to ``/v1/events`` in order, retries
connection errors, 5xx, 408 and 429 with exponential backoff and jitter
(honouring Retry-After), and deletes events only after a 2xx. A batch the
server rejects as invalid is bisected; the bad events go to a dead-letter
table and the rest are delivered. `AsyncAuditClient` is the asyncio twin.
docs/client.md is the guide.
"""

from __future__ import annotations

from kimonaudit.client.aio import AsyncAuditClient
from kimonaudit.client.policy import RetryPolicy
from kimonaudit.client.queue import DeadLetter
from kimonaudit.client.sync import AuditClient, ClientClosed, ClientError, ClientStats, QueueFull

__all__ = [
    "AsyncAuditClient",
    "AuditClient",
    "ClientClosed",
    "ClientError",
    "ClientStats",
    "DeadLetter",
    "QueueFull",
    "RetryPolicy",
]
