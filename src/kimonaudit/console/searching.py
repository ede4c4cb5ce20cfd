"""The console's use of search (kimonaudit.search, kimonaudit.export): the
chart's days, and the `audit_log.*` entry each use of the log leaves.

Pages, cursors, exports and the entries' wording are the same as through
the HTTP API; only `via` says "console" and the actor is the console user.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from kimonaudit.console.accounts import Client
from kimonaudit.console.records import ConsoleUser
from kimonaudit.core.timefmt import from_us
from kimonaudit.errors import InvalidInput
from kimonaudit.search import record_access, request_context
from kimonaudit.service import AuditLog


def day_counts(log: AuditLog, tenant_id: str, q: str, days: int) -> list[tuple[date, int]]:
    """Matches of `q` per UTC day for the `days` days ending with the day of
    the newest match; empty when nothing matches or the matches span more
    days than the histogram counts."""
    try:
        hist = log.histogram(tenant_id, q, "day")
    except InvalidInput:
        return []
    if not hist.buckets:
        return []
    counts = {from_us(start).date(): n for start, n in hist.buckets}
    last = max(counts)
    return [
        (day, counts.get(day, 0))
        for day in (last - timedelta(days=i) for i in range(days - 1, -1, -1))
    ]


def record(
    log: AuditLog,
    user: ConsoleUser,
    client: Client,
    action: str,
    query: str,
    rows: int,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Append `audit_log.viewed`, `.searched` or `.exported` for a console use."""
    record_access(
        log,
        user.tenant_id,
        action,
        user.actor,
        query,
        rows,
        "console",
        context=request_context(client.ip, client.user_agent),
        details=details,
    )
