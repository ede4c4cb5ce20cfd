"""Queries compiled to SQL return exactly the expected entries, on a real
SQLite database and (with KIMONAUDIT_TEST_POSTGRES_URL) a real PostgreSQL."""

from __future__ import annotations

import dataclasses
import secrets
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kimonaudit.core.ipaddr import ip_to_bytes
from kimonaudit.core.query import Query, parse
from kimonaudit.core.searchtext import search_text
from kimonaudit.errors import InvalidQuery
from kimonaudit.store.querysql import CompileContext, compile_where
from tests.core.test_query import terms

HALF_DAY = 12 * 3600 * 1_000_000
BASE_US = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp()) * 1_000_000
# Entry n is recorded at BASE + n * 12h: seq 0 at 2026-11-01T00:00Z, seq 1 at
# 12:00 that day, ... seq 49 at 2026-11-25T12:00Z. "Now" is 2026-11-26T00:00Z.
NOW_US = BASE_US + 50 * HALF_DAY
SEVERITY = {"info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


def fake_hash(actor_id: str) -> str:
    return "h:" + actor_id


@dataclass(frozen=True)
class Row:
    action: str
    category: str
    severity: str
    security: bool
    actor: str | None
    actor_type: str | None
    target: tuple[str, str] | None
    outcome: str
    ip: str | None
    changes: Sequence[tuple[str, object, object]] = ()
    metadata: Mapping[str, object] = field(default_factory=dict)


def R(
    what: str,
    who: str,
    *,
    target: tuple[str, str] | None = None,
    changes: Sequence[tuple[str, object, object]] = (),
    metadata: Mapping[str, object] | None = None,
) -> Row:
    """A row from two short specs: "ACTION CATEGORY SEVERITY S|." and
    "ACTOR ACTOR_TYPE TYPE:ID OUTCOME IP", with - for none (and * for the
    target given as `target`)."""
    action, category, severity, flag = what.split()
    actor, actor_type, target_spec, outcome, ip = (None if v == "-" else v for v in who.split())
    if target_spec is not None and target_spec != "*":
        kind, _, ident = target_spec.partition(":")
        target = (kind, ident)
    security = flag == "S"
    fields = (action, category, severity, security, actor, actor_type, target, outcome, ip)
    return Row(*fields, changes=changes, metadata=metadata or {})


ROWS = [
    R("auth.login.succeeded auth info .", "agent_42 agent user:agent_42 success 203.0.113.9"),  # 0
    R("ticket.viewed ticket info .", "agent_42 agent ticket:10482 success 203.0.113.9"),  # 1
    R(
        "ticket.field_changed ticket low .",
        "agent_42 agent ticket:10482 success 203.0.113.9",
        changes=[("status", "open", "pending")],
    ),  # 2
    R(
        "auth.login.failed auth medium S",
        "agent_7 agent user:agent_7 failure 198.51.100.23",
        metadata={"reason": "bad password"},
    ),  # 3
    R(
        "auth.login.failed auth medium S",
        "agent_7 agent user:agent_7 failure 198.51.100.24",
        metadata={"reason": "bad password"},
    ),  # 4
    R("auth.login.succeeded auth info .", "agent_7 agent user:agent_7 success 198.51.100.23"),  # 5
    R("ticket.viewed ticket info .", "agent_7 agent ticket:10482 success 198.51.100.23"),  # 6
    R(
        "role.assigned access high S",
        "admin_1 admin user:agent_7 success 10.0.0.5",
        metadata={"role": "supervisor"},
    ),  # 7
    R(
        "api.request api info .",
        "key_9 api_key - success 2001:db8::1",
        metadata={"path": "/v1/tickets"},
    ),  # 8
    R(
        "api.request api info .",
        "key_9 api_key - success 2001:db8::2",
        metadata={"path": "/v1/users"},
    ),  # 9
    R("ticket.viewed ticket info .", "agent_42 agent ticket:10483 success 203.0.113.9"),  # 10
    R(
        "macro.applied ticket info .",
        "agent_42 agent ticket:10483 success 203.0.113.9",
        metadata={"macro": "Close as duplicate"},
    ),  # 11
    R(
        "ticket.field_changed ticket low .",
        "agent_42 agent ticket:10483 success 203.0.113.9",
        changes=[("priority", "normal", "urgent")],
    ),  # 12
    R(
        "export.requested data high S",
        "admin_1 admin - success 10.0.0.5",
        metadata={"format": "csv"},
    ),  # 13
    R("authz.denied access medium S", "agent_7 agent ticket:10490 denied 198.51.100.23"),  # 14
    R(
        "workflow.updated workflow low .",
        "- - workflow:wf_1 success -",
        changes=[("trigger", "status open", "status pending")],
    ),  # 15
    R(
        "role.revoked access high S",
        "admin_1 admin user:agent_42 success 10.0.0.5",
        metadata={"role": "supervisor"},
    ),  # 16
    R("sso.config.updated sso critical S", "admin_1 admin sso:okta success 10.0.0.6"),  # 17
    R("ticket.viewed ticket info .", "agent_42 agent ticket:10482 success 203.0.113.10"),  # 18
    R(
        "ticket.merged ticket medium .",
        "agent_42 agent ticket:10483 success 203.0.113.10",
        metadata={"into": "10482"},
    ),  # 19
    R(
        "api.request api info .",
        "key_9 api_key - error 2001:db8::1",
        metadata={"path": "/v1/exports", "status": 500},
    ),  # 20
    R("auth.api_token.created auth high S", "admin_1 admin user:admin_1 success 10.0.0.5"),  # 21
    R("auth.apiztoken.created custom info .", "agent_42 agent - success 203.0.113.9"),  # 22
    R("ticket.viewed ticket info .", "agent_8 agent ticket:10482 success 192.0.2.1"),  # 23
    R(
        "ticket.field_changed ticket low .",
        "agent_8 agent ticket:10482 success 192.0.2.1",
        changes=[("tags", "billing", "billing refund")],
    ),  # 24
    R("ticket.deleted ticket medium .", "agent_8 agent ticket:10499 success 192.0.2.1"),  # 25
    R(
        "user.suspended user high S",
        "admin_1 admin user:agent_8 success 10.0.0.5",
        metadata={"reason": "policy violation"},
    ),  # 26
    R("auth.login.failed auth medium S", "ghost user user:ghost failure 45.33.32.156"),  # 27
    R("auth.login.failed auth medium S", "ghost user user:ghost failure 45.33.32.157"),  # 28
    R("auth.login.failed auth medium S", "ghost user user:ghost failure 2001:db8::dead"),  # 29
    R(
        "permission.updated access high S",
        "admin_1 admin role:supervisor success 10.0.0.5",
        changes=[("tickets.delete", False, True)],
    ),  # 30
    R(
        "ticket.viewed ticket info .",
        "agent_42 agent * success 203.0.113.9",
        target=("ticket", "10482' OR '1'='1"),
    ),  # 31
    R("tag.deleted ticket medium .", "agent_8 agent tag:vip success 192.0.2.1"),  # 32
    R(
        "macro.created ticket low .",
        "admin_1 admin macro:m_1 success 10.0.0.5",
        metadata={"name": "Close as duplicate"},
    ),  # 33
    R(
        "audit_log.searched audit info S",
        "admin_1 admin - success 10.0.0.5",
        metadata={"query": "action:role.*"},
    ),  # 34
    R(
        "audit_log.exported audit high S",
        "admin_1 admin - success 10.0.0.5",
        metadata={"format": "ndjson"},
    ),  # 35
    R(
        "ticket.viewed ticket info .",
        "agent_ü agent ticket:10501 success 203.0.113.11",
        metadata={"customer": "Jürgen Müller"},
    ),  # 36
    R(
        "ticket.created ticket info .",
        "agent_42 agent ticket:10500 success 203.0.113.9",
        metadata={"subject": "Printer on fire"},
    ),  # 37
    R(
        "ticket.field_changed ticket low .",
        "agent_42 agent ticket:10500 success 203.0.113.9",
        changes=[("status", "new", "open")],
    ),  # 38
    R(
        "support.impersonation.started support critical S",
        "support_1 staff user:agent_42 success 172.16.0.9",
    ),  # 39
    R("ticket.viewed ticket info .", "support_1 staff ticket:10482 success 172.16.0.9"),  # 40
    R(
        "support.impersonation.ended support high S",
        "support_1 staff user:agent_42 success 172.16.0.9",
    ),  # 41
    R(
        "role.assigned access high S",
        "admin_2 admin user:agent_8 success 10.0.0.7",
        metadata={"role": "auditor"},
    ),  # 42
    R(
        "api.request api info .",
        "key_9 api_key - success 2001:db8::1",
        metadata={"path": "/v1/tickets"},
    ),  # 43
    R("auth.login.succeeded auth info .", "agent_8 agent user:agent_8 success 192.0.2.1"),  # 44
    R("ticket.viewed ticket info .", "agent_8 agent ticket:10500 success 192.0.2.1"),  # 45
    R("workflow.deleted workflow medium .", "admin_2 admin workflow:wf_1 success 10.0.0.7"),  # 46
    R("authz.denied access medium S", "key_9 api_key ticket:10482 denied 2001:db8::2"),  # 47
    R("role.created access high S", "admin_2 admin role:auditor success 10.0.0.7"),  # 48
    R("ticket.viewed ticket info .", "agent_42 agent ticket:10482 success 203.0.113.9"),  # 49
]
# Another tenant with look-alike entries: none of them may ever show up.
OTHER_ROWS = [
    R(
        "ticket.viewed ticket info .",
        "agent_42 agent ticket:10482 success 203.0.113.9",
        metadata={"subject": "Printer on fire"},
    ),
    R(
        "role.assigned access high S",
        "admin_1 admin user:agent_7 success 10.0.0.5",
        metadata={"role": "supervisor"},
    ),
    R("ticket.viewed ticket info .", "- - ticket:10482 failure -"),
]
ALL = list(range(len(ROWS)))


def _record(tenant: str, seq: int, r: Row) -> tuple[object, ...]:
    target_type, target_id = r.target or (None, None)
    text = search_text(
        action=r.action,
        target_type=target_type,
        target_id=target_id,
        actor_type=r.actor_type,
        outcome=r.outcome,
        context={"ip": r.ip, "user_agent": "Mozilla/5.0"} if r.ip else {},
        changes=r.changes,
        metadata=r.metadata,
    )
    return (
        tenant,
        seq,
        f"{tenant}-{seq}",
        BASE_US + seq * HALF_DAY,
        r.action,
        r.category,
        SEVERITY[r.severity],
        r.security,
        fake_hash(r.actor) if r.actor else None,
        r.actor_type,
        target_type,
        target_id,
        r.outcome,
        ip_to_bytes(r.ip) if r.ip else None,
        text,
    )


RECORDS = [_record("acme", i, r) for i, r in enumerate(ROWS)] + [
    _record("other", i, r) for i, r in enumerate(OTHER_ROWS)
]
_COLUMNS = (
    "tenant_id, seq, event_id, recorded_at, action, category, severity, security,"
    " actor_hash, actor_type, target_type, target_id, outcome, ip, search_text"
)

SQLITE_SCHEMA = """
CREATE TABLE entries (
    rid INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL, seq INTEGER NOT NULL,
    event_id TEXT NOT NULL, recorded_at INTEGER NOT NULL, occurred_at INTEGER,
    action TEXT NOT NULL, category TEXT NOT NULL, severity INTEGER NOT NULL,
    security INTEGER NOT NULL, actor_hash TEXT, actor_type TEXT, target_type TEXT,
    target_id TEXT, outcome TEXT NOT NULL, ip BLOB, search_text TEXT NOT NULL
);
CREATE UNIQUE INDEX entries_seq ON entries (tenant_id, seq);
CREATE INDEX entries_action ON entries (tenant_id, action, seq);
CREATE VIRTUAL TABLE entries_fts USING fts5 (text, content = '');
"""

PG_SCHEMA = """
CREATE TABLE entries (
    tenant_id TEXT NOT NULL, seq BIGINT NOT NULL, event_id TEXT NOT NULL,
    recorded_at BIGINT NOT NULL, occurred_at BIGINT, action TEXT NOT NULL,
    category TEXT NOT NULL, severity SMALLINT NOT NULL, security BOOLEAN NOT NULL,
    actor_hash TEXT, actor_type TEXT, target_type TEXT, target_id TEXT,
    outcome TEXT NOT NULL, ip BYTEA, search_text TEXT NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
-- The search projection's documents (store/postgres_index.py writes them
-- from the same text), which the compiled free text reads.
CREATE TABLE search_docs (
    tenant_id TEXT NOT NULL, seq BIGINT NOT NULL, recorded_at BIGINT NOT NULL,
    doc TSVECTOR NOT NULL, PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX search_docs_doc ON search_docs USING gin (doc);
"""


class Db:
    """One database with the entries table filled, queried through compile_where."""

    def __init__(self, dialect: str, execute: Callable[[str, list[object]], list[tuple[Any, ...]]]):
        self.dialect = dialect
        self.execute = execute

    def context(self, actor_hash: Callable[[str], str] = fake_hash) -> CompileContext:
        return CompileContext(self.dialect, NOW_US, actor_hash)  # type: ignore[arg-type]

    def seqs(self, q: str | Query, tenant: str = "acme") -> list[int]:
        query = parse(q) if isinstance(q, str) else q
        where, params = compile_where(query, self.context())
        mark = "?" if self.dialect == "sqlite" else "%s"
        sql = f"SELECT e.seq FROM entries e WHERE e.tenant_id = {mark} AND ({where}) ORDER BY e.seq"
        return [row[0] for row in self.execute(sql, [tenant, *params])]


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Db]:
    path: Path = tmp_path_factory.mktemp("querysql") / "entries.db"
    conn = sqlite3.connect(path)
    conn.executescript(SQLITE_SCHEMA)
    marks = ", ".join("?" * 15)
    for record in RECORDS:
        cur = conn.execute(f"INSERT INTO entries ({_COLUMNS}) VALUES ({marks})", record)
        conn.execute(
            "INSERT INTO entries_fts (rowid, text) VALUES (?, ?)", (cur.lastrowid, record[-1])
        )
    conn.commit()
    yield Db("sqlite", lambda sql, params: conn.execute(sql, params).fetchall())
    conn.close()


@pytest.fixture(scope="module")
def pg_db(pg_admin_url: str) -> Iterator[Db]:
    import psycopg

    schema = "kq_" + secrets.token_hex(6)
    conn = psycopg.connect(pg_admin_url, autocommit=True)
    try:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"SET search_path TO {schema}")
        conn.execute(PG_SCHEMA)
        marks = ", ".join(["%s"] * 15)
        with conn.cursor() as cur:
            cur.executemany(f"INSERT INTO entries ({_COLUMNS}) VALUES ({marks})", RECORDS)
        conn.execute(
            "INSERT INTO search_docs SELECT tenant_id, seq, recorded_at,"
            " to_tsvector('simple', search_text) FROM entries"
        )
        conn.execute("ANALYZE entries")
        conn.execute("ANALYZE search_docs")
        yield Db("postgres", lambda sql, params: conn.execute(sql, params).fetchall())
    finally:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.close()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def db(request: pytest.FixtureRequest) -> Db:
    name = {"sqlite": "sqlite_db", "postgres": "pg_db"}[request.param]
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


def _but(*excluded: int) -> list[int]:
    return [s for s in ALL if s not in excluded]


VIEWED = [1, 6, 10, 18, 23, 31, 36, 40, 45, 49]
AGENT_42 = [0, 1, 2, 10, 11, 12, 18, 19, 22, 31, 37, 38, 49]
ADMINS = [7, 13, 16, 17, 21, 26, 30, 33, 34, 35, 42, 46, 48]
AT_203_0_113_9 = [0, 1, 2, 10, 11, 12, 22, 31, 37, 38, 49]
IN_10_8 = ADMINS  # the admins work from 10.0.0.0/8
SECURITY = [3, 4, 7, 13, 14, 16, 17, 21, 26, 27, 28, 29, 30, 34, 35, 39, 41, 42, 47, 48]
FAILED = [3, 4, 14, 20, 27, 28, 29, 47]
KEY_9 = [8, 9, 20, 43, 47]
STAFF = [39, 40, 41]
GHOST = [27, 28, 29]
NOT_AGENTS = sorted(ADMINS + KEY_9 + STAFF + GHOST + [15])  # 15 has no actor
MENTIONS_10482 = [1, 2, 6, 18, 19, 23, 24, 31, 40, 47, 49]

CASES = [
    ("", ALL),
    # action
    ("action:ticket.viewed", VIEWED),
    ("action:role.assigned,role.revoked", [7, 16, 42]),
    ("-action:api.request", _but(8, 9, 20, 43)),
    ("action:ticket.*", [1, 2, 6, 10, 12, 18, 19, 23, 24, 25, 31, 36, 37, 38, 40, 45, 49]),
    ("action:auth.api_token.*", [21]),  # '_' is literal, not LIKE's any-character
    ("action:auth.api_token.*d", [21]),
    ("action:*.created", [21, 22, 33, 37, 48]),
    ("action:*", ALL),
    ("action:ticket_*", []),
    ("action:*viewed,role.*", [1, 6, 7, 10, 16, 18, 23, 31, 36, 40, 42, 45, 48, 49]),
    # the documented investigations
    ("action:role.* created:>-7d", [42, 48]),
    ("action:ticket.viewed target:ticket:10482", [1, 6, 18, 23, 40, 49]),
    # actor (through the keyed hash)
    ("actor:agent_42", AGENT_42),
    ("-actor:agent_42", [s for s in ALL if s not in AGENT_42]),  # includes 15, no actor
    ("actor:agent_ü", [36]),
    ("actor:ghost,key_9", sorted(GHOST + KEY_9)),
    ("actor_type:admin", ADMINS),
    ("actor_type:api_key,staff", sorted(KEY_9 + STAFF)),
    ("-actor_type:agent", NOT_AGENTS),
    ("category:access,sso", [7, 14, 16, 17, 30, 42, 47, 48]),
    # target
    ("target:ticket:10482", [1, 2, 6, 18, 23, 24, 40, 47, 49]),
    ("target:10483", [10, 11, 12, 19]),
    ("target:user:agent_42,sso:okta", [0, 16, 17, 39, 41]),
    ("target_type:workflow", [15, 46]),
    ("target_type:role,sso", [17, 30, 48]),
    # ip
    ("ip:203.0.113.9", AT_203_0_113_9),
    ("ip:203.0.113.0/24", [0, 1, 2, 10, 11, 12, 18, 19, 22, 31, 36, 37, 38, 49]),
    ("ip:10.0.0.0/8", IN_10_8),
    ("-ip:10.0.0.0/8", [s for s in ALL if s not in IN_10_8]),  # includes 15, no IP
    ("ip:2001:db8::/32", [8, 9, 20, 29, 43, 47]),
    ("ip:2001:db8::1", [8, 20, 43]),
    ("ip:::ffff:198.51.100.23", [3, 5, 6, 14]),
    ("ip:45.33.32.156,45.33.32.157,172.16.0.0/12", [27, 28, 39, 40, 41]),
    ("ip:0.0.0.0/0", [s for s in ALL if s not in (8, 9, 15, 20, 29, 43, 47)]),
    # outcome and is:
    ("outcome:failure", [3, 4, 27, 28, 29]),
    ("outcome:denied,error", [14, 20, 47]),
    ("-outcome:success", FAILED),
    ("is:failure", FAILED),
    ("is:security", SECURITY),
    ("-is:security", [s for s in ALL if s not in SECURITY]),
    ("is:security is:failure", [3, 4, 14, 27, 28, 29, 47]),
    # severity
    ("severity:>=high", [7, 13, 16, 17, 21, 26, 30, 35, 39, 41, 42, 48]),
    ("severity:critical", [17, 39]),
    ("severity:low..medium", [2, 3, 4, 12, 14, 15, 19, 24, 25, 27, 28, 29, 32, 33, 38, 46, 47]),
    (
        "severity:<low",
        [0, 1, 5, 6, 8, 9, 10, 11, 18, 20, 22, 23, 31, 34, 36, 37, 40, 43, 44, 45, 49],
    ),
    ("severity:>high", [17, 39]),
    (
        "severity:<=info",
        [0, 1, 5, 6, 8, 9, 10, 11, 18, 20, 22, 23, 31, 34, 36, 37, 40, 43, 44, 45, 49],
    ),
    # seq
    ("seq:10", [10]),
    ("seq:5..8,40", [5, 6, 7, 8, 40]),
    ("seq:>=47", [47, 48, 49]),
    ("seq:>47", [48, 49]),
    ("seq:<3", [0, 1, 2]),
    ("seq:<=2", [0, 1, 2]),
    ("-seq:0..45", [46, 47, 48, 49]),
    # created: absolute days and times
    ("created:2026-11-03", [4, 5]),
    ("created:2026-11-03..2026-11-04", [4, 5, 6, 7]),
    ("created:<2026-11-02", [0, 1]),
    ("created:<=2026-11-02", [0, 1, 2, 3]),
    ("created:>2026-11-24", [48, 49]),
    ("created:>=2026-11-25", [48, 49]),
    ("created:2026-11-10T12:00:00Z", [19]),
    ("created:2026-11-10T14:00:00+02:00", [19]),
    ("created:>2026-11-24T12:00:00Z", [48, 49]),
    ("created:>=2026-11-24T12:00:00Z", [47, 48, 49]),
    ("created:2026-11-01,2026-11-25", [0, 1, 48, 49]),
    # created: relative to now (2026-11-26T00:00Z)
    ("created:>-7d", list(range(37, 50))),
    ("created:>=-1w", list(range(36, 50))),
    ("created:-2d", [46, 47, 48, 49]),
    ("created:-3d..-1d", [44, 45, 46, 47, 48]),
    ("created:<-24d", [0, 1]),
    ("created:-36h..2026-11-25", [47, 48, 49]),
    ("created:>=-720m", [49]),
    ("created:>-12h", []),
    ("-created:-12h", list(range(49))),
    # free text
    ("pending", [2, 15]),
    ('"status pending"', [15]),
    ("status pending", [2, 15]),
    ("-pending action:ticket.field_changed", [12, 24, 38]),
    ("supervisor", [7, 16, 30]),
    ('"close as duplicate"', [11, 33]),
    ('"duplicate close"', []),
    ("Müller", [36]),
    ("MULLER jurgen", [36]),
    ("10482", MENTIONS_10482),
    ("203.0.113.9", AT_203_0_113_9),
    ("ticket.viewed", VIEWED),
    ('"Printer on fire"', [37]),
    ("printer -fire", []),
    ("v1 tickets", [8, 43]),
    ('"v1/exports"', [20]),
    ("500", [20]),
    ("true", [30]),
    ("10482 -action:ticket.viewed", [2, 19, 24, 47]),
    ("-duplicate action:macro.*,ticket.merged", [19]),
    ("-10482 -supervisor target_type:ticket,role", [10, 11, 12, 14, 25, 36, 37, 38, 45, 48]),
    # combinations
    ('action:ticket.* actor:agent_8 -"billing refund"', [23, 25, 45]),
    ("is:security severity:medium ip:198.51.100.0/24", [3, 4, 14]),
    ("actor:ghost created:2026-11-15", [28, 29]),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_query_returns_exactly_the_expected_entries(db: Db, text: str, expected: list[int]) -> None:
    """Each query selects exactly the hand-checked entries of the tenant."""
    assert db.seqs(text) == expected


def test_other_tenant_sees_only_its_own_entries(db: Db) -> None:
    """The compiled predicate, under the caller's tenant filter, never leaks across tenants."""
    assert db.seqs('"printer on fire" action:ticket.viewed', tenant="other") == [0]
    assert db.seqs("supervisor", tenant="other") == [1]
    assert db.seqs("-actor:agent_42 -ip:10.0.0.0/8", tenant="other") == [2]


INJECTIONS = [
    "actor:\"x' OR '1'='1\"",
    "target:\"ticket:1' OR '1'='1\"",
    "target:\"ticket:10482' OR '1'='1 --\"",
    'target:"x\'); DROP TABLE entries; --"',
    '"\'; DROP TABLE entries; --"',
    '"NEAR(ticket viewed)"',
    '"ticket OR role"',
    '"text:ticket"',
    '"ticket" "viewed"*',
    "\"a' || pg_sleep(1) || '\"",
    "action:ticket%",
    "target:ticket:%",
    'actor:"%"',
    '"\\" OR 1=1 --"',
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_attempts_are_inert(db: Db, text: str) -> None:
    """SQL or FTS5 syntax in values is data: it matches nothing it does not
    literally contain, and the table is untouched."""
    try:
        found = db.seqs(text)
    except InvalidQuery:
        found = []
    assert found in ([], [31])  # row 31's target id really is "10482' OR '1'='1"
    assert len(db.seqs("")) == len(ROWS)


def test_injection_target_matches_only_the_literal_id(db: Db) -> None:
    """A target id full of quotes is found by exactly that id, as a plain value."""
    assert db.seqs("target:\"ticket:10482' OR '1'='1\"") == [31]


def test_fts_operators_in_free_text_are_words(db: Db) -> None:
    """FTS5 operators typed as text are searched as words, not run."""
    assert db.seqs('"ticket viewed" "role OR ticket"') == []
    assert db.seqs('"ticket AND viewed"') == []
    assert db.seqs("ticket* viewed") == VIEWED


# --- what the SQL looks like ------------------------------------------------------

SQLITE_CTX = CompileContext("sqlite", NOW_US, fake_hash)
PG_CTX = CompileContext("postgres", NOW_US, fake_hash)


def test_empty_query_is_true() -> None:
    """No terms compiles to 1=1 with no parameters, on both dialects."""
    assert compile_where(parse(""), SQLITE_CTX) == ("1=1", [])
    assert compile_where(parse(""), PG_CTX) == ("1=1", [])


@pytest.mark.parametrize("text", [t for t, _ in CASES] + INJECTIONS[:6])
def test_placeholders_match_parameters(text: str) -> None:
    """Every parameter has its placeholder: ? for SQLite, %s for PostgreSQL."""
    q = parse(text)
    sql, params = compile_where(q, SQLITE_CTX)
    assert sql.count("?") == len(params) and "%s" not in sql
    sql, params = compile_where(q, PG_CTX)
    assert sql.count("%s") == len(params) and "?" not in sql
    assert "%" not in sql.replace("%s", "")  # psycopg would read a stray % as a placeholder


def test_user_values_never_appear_in_sql_text() -> None:
    """Values typed by the user only ever travel as parameters."""
    q = parse(
        'actor:zqmarker1 target:ticket:zqmarker2 actor_type:zqmarker3 "zqmarker4 x"'
        " action:zqmarker5.*,zq.*marker6 category:zqmarker7 -zqmarker8"
    )
    for ctx in (SQLITE_CTX, PG_CTX):
        sql, params = compile_where(q, ctx)
        assert "zq" not in sql
        assert any("zqmarker4" in str(p) for p in params)


def test_actor_goes_through_the_hash_function() -> None:
    """actor: sends the tenant's keyed hash of the id, never the id itself."""
    seen: list[str] = []

    def hasher(actor_id: str) -> str:
        seen.append(actor_id)
        return "0" * 64

    sql, params = compile_where(parse("actor:agent_42"), CompileContext("sqlite", 0, hasher))
    assert seen == ["agent_42"]
    assert params == ["0" * 64] and "actor_hash" in sql


def test_free_text_reaches_fts5_as_quoted_phrases() -> None:
    """User text becomes FTS5 strings of plain words; its operators do not survive."""
    sql, params = compile_where(parse('"NEAR(x y)" ab*c -"col:z" -w'), SQLITE_CTX)
    assert params == ['"near x y" AND "ab c"', '"col z" OR "w"']
    assert "entries_fts MATCH ?" in sql and "NOT IN" in sql


def test_postgres_free_text_uses_the_stored_documents() -> None:
    """PostgreSQL text search reads the projection's stored tsvector."""
    sql, params = compile_where(parse('"Status Pending"'), PG_CTX)
    assert sql == (
        "EXISTS (SELECT 1 FROM search_docs d WHERE d.tenant_id = e.tenant_id AND d.seq = e.seq"
        " AND d.doc @@ phraseto_tsquery('simple', %s))"
    )
    assert params == ["status pending"]


def test_action_prefix_is_an_index_range_on_sqlite_and_like_on_postgres() -> None:
    """action:x.* is a range SQLite can serve from its index; PostgreSQL gets LIKE."""
    assert compile_where(parse("action:ticket.*"), SQLITE_CTX) == (
        "(e.action >= ? AND e.action < ?)",
        ["ticket.", "ticket/"],
    )
    assert compile_where(parse("action:auth.api_token.*"), PG_CTX) == (
        "e.action LIKE %s ESCAPE '!'",
        ["auth.api!_token.%"],
    )


def test_relative_time_is_resolved_against_now() -> None:
    """created:>-7d counts back from the context's now, not the wall clock."""
    week = 7 * 86_400_000_000
    sql, params = compile_where(parse("created:>-7d"), CompileContext("sqlite", week, fake_hash))
    assert (sql, params) == ("e.recorded_at >= ?", [1])


def test_negation_keeps_rows_where_the_column_is_null() -> None:
    """A negated filter is 'IS NOT TRUE', so NULL columns count as not matching it."""
    sql, _ = compile_where(parse("-actor:a"), SQLITE_CTX)
    assert sql == "(e.actor_hash = ?) IS NOT TRUE"


def test_unknown_dialect_is_refused() -> None:
    """A misspelt dialect fails loudly instead of producing the wrong SQL."""
    with pytest.raises(ValueError, match="dialect"):
        compile_where(parse("seq:1"), CompileContext("mysql", 0, fake_hash))  # type: ignore[arg-type]


def test_postgres_text_search_uses_the_gin_index(pg_db: Db) -> None:
    """The tsquery condition can be answered from the GIN index on the
    stored documents (with plain scans ruled out: the table is tiny)."""
    where, params = compile_where(parse('"status pending"'), pg_db.context())
    off = ("enable_seqscan", "enable_indexscan")
    for name in off:
        pg_db.execute("SELECT set_config(%s, 'off', false)", [name])
    try:
        plan = pg_db.execute(f"EXPLAIN SELECT e.seq FROM entries e WHERE {where}", params)
    finally:
        for name in off:
            pg_db.execute("SELECT set_config(%s, 'on', false)", [name])
    assert "search_docs_doc" in "\n".join(line[0] for line in plan)


# --- properties over generated queries ----------------------------------------------


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(terms)
def test_a_term_and_its_negation_split_the_entries(db: Db, term: object) -> None:
    """For any term, the entries it matches and those its negation matches
    are disjoint and together are all entries (NULLs included)."""
    positive = dataclasses.replace(term, negated=False)  # type: ignore[type-var]
    negative = dataclasses.replace(term, negated=True)  # type: ignore[type-var]
    yes = set(db.seqs(Query((positive,))))
    no = set(db.seqs(Query((negative,))))
    assert yes.isdisjoint(no)
    assert yes | no == set(ALL)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(terms, min_size=1, max_size=5))
def test_a_conjunction_is_the_intersection_of_its_terms(db: Db, ts: list[object]) -> None:
    """Terms combine by AND: the whole query matches what every term matches."""
    alone = [set(db.seqs(Query((t,)))) for t in ts]  # type: ignore[arg-type]
    assert set(db.seqs(Query(tuple(ts)))) == set.intersection(*alone)  # type: ignore[arg-type]
