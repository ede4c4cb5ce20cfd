"""Test helpers: realistic and hostile events, and raw SQL access to a store's rows."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

AGENTS = ["agent_1", "agent_2", "agent_42", "admin_7"]


def event(i: int, **over: Any) -> dict[str, Any]:
    """A realistic helpdesk event, varied by `i`."""
    kinds = [
        {"action": "ticket.viewed", "target": {"type": "ticket", "id": str(10_000 + i % 500)}},
        {
            "action": "ticket.field_changed",
            "target": {"type": "ticket", "id": str(10_000 + i % 500)},
            "changes": [{"field": "status", "from": "open", "to": "pending"}],
        },
        {"action": "auth.login.succeeded"},
        {"action": "macro.applied", "target": {"type": "macro", "id": f"m{i % 9}"}},
        {
            "action": "role.assigned",
            "target": {"type": "user", "id": f"u{i % 30}"},
            "changes": [{"field": "role", "from": "agent", "to": "admin"}],
        },
    ]
    agent = AGENTS[i % len(AGENTS)]
    ev: dict[str, Any] = {
        **kinds[i % len(kinds)],
        "actor": {
            "id": agent,
            "type": "agent",
            "name": f"Agent {agent.title()}",
            "email": f"{agent}@acme.test",
        },
        "context": {"ip": f"203.0.113.{i % 250}", "user_agent": "Mozilla/5.0"},
        "metadata": {"via": "web", "n": i},
    }
    ev.update(over)
    return ev


# Script and markup that must stay inert wherever event data is shown.
XSS = [
    "<script>window.__xss=1</script>",
    '"><img src=x onerror="window.__xss=1">',
    "javascript:window.__xss=1",
    "'><svg onload=alert(1)>",
]


def hostile_events() -> list[dict[str, Any]]:
    """One event per payload with the payload in every field that takes text."""
    out = []
    for i, p in enumerate(XSS):
        out.append(
            {
                # ids may not hold "/" (GET /v1/events/{id} could not reach them)
                "id": f"{p}-{i}".replace("/", "|"),
                "action": "role.assigned",
                "actor": {"id": p, "type": "agent", "name": p, "email": p},
                "target": {"type": p, "id": p},
                "context": {"ip": "203.0.113.7", "user_agent": p, "request_id": p, p: p, "url": p},
                "changes": [{"field": p, "from": p, "to": {p: [p]}}],
                "metadata": {p: p, "link": p, "href": p},
            }
        )
    return out


@contextmanager
def raw_db(url: str) -> Iterator[Any]:
    """Direct SQL on the store's tables, as an attacker with database access
    would have. Yields `run(sql, params)` using '?' placeholders."""
    if url.startswith("sqlite:"):
        from kimonaudit.store.sqlite import sqlite_path

        conn = sqlite3.connect(sqlite_path(url), isolation_level=None)

        def run(sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
            return conn.execute(sql, params).fetchall()

        try:
            yield run
        finally:
            conn.close()
    else:
        import psycopg

        with psycopg.connect(url, autocommit=True) as pg:

            def run(sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
                cur = pg.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]
                return cur.fetchall() if cur.description else []

            yield run
