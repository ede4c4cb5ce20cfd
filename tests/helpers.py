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


_LEDGER_FIELDS = (
    "event_id, recorded_at, action, category, severity, security, actor_hash, actor_type,"
    " target_type, target_id, outcome, occurred_at, ip, payload, salt, payload_commitment,"
    " leaf_hash"
)
_NEW = ", ".join("NEW." + c.strip() for c in _LEDGER_FIELDS.split(","))
# The SQLite ledger keys entries by rid = tenant_no << 40 | seq. Tests that
# tamper as an attacker would speak of (tenant_id, seq): this connection-only
# view maps one to the other, its triggers writing straight to the ledger
# (so a seq may go negative mid-swap, as a real attacker's UPDATE could).
ENTRIES_VIEW = f"""
CREATE TEMP VIEW entries AS
    SELECT t.tenant_id AS tenant_id, l.rid - (l.tenant_no << 40) AS seq, {_LEDGER_FIELDS}
    FROM main.ledger l JOIN main.tenants t ON t.tenant_no = l.tenant_no;
CREATE TEMP TRIGGER entries_update INSTEAD OF UPDATE ON entries BEGIN
    UPDATE ledger SET
        rid = (tenant_no << 40) + NEW.seq,
        ({_LEDGER_FIELDS}) = ({_NEW})
    WHERE rid = (tenant_no << 40) + OLD.seq
      AND tenant_no = (SELECT tenant_no FROM main.tenants WHERE tenant_id = OLD.tenant_id);
END;
CREATE TEMP TRIGGER entries_delete INSTEAD OF DELETE ON entries BEGIN
    DELETE FROM ledger
    WHERE tenant_no = (SELECT tenant_no FROM main.tenants WHERE tenant_id = OLD.tenant_id)
      AND rid = (tenant_no << 40) + OLD.seq;
END;
CREATE TEMP TRIGGER entries_insert INSTEAD OF INSERT ON entries BEGIN
    INSERT INTO ledger (rid, tenant_no, {_LEDGER_FIELDS})
    SELECT (t.tenant_no << 40) + NEW.seq, t.tenant_no, {_NEW}
    FROM main.tenants t WHERE t.tenant_id = NEW.tenant_id;
END;
"""


@contextmanager
def raw_db(url: str) -> Iterator[Any]:
    """Direct SQL on the store's tables, as an attacker with database access
    would have. Yields `run(sql, params)` using '?' placeholders."""
    if url.startswith("sqlite:"):
        from kimonaudit.store.sqlite import sqlite_path

        conn = sqlite3.connect(sqlite_path(url), isolation_level=None)
        conn.executescript(ENTRIES_VIEW)

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
