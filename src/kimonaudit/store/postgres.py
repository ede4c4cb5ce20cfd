"""The production store: PostgreSQL through psycopg 3.

Appends go through the group-commit writer (writer.py) on one dedicated
connection. The per-tenant lock is the tenant's ``tree_state`` row, taken
``FOR UPDATE``: any number of processes on any number of machines may append
to one database, and a tenant's appends still form one gap-free sequence.

Within a group the session only buffers plans; the commit writes them all
at once (one binary COPY per table, then one pipelined round trip for tree
nodes, the actor directory, the tree state and COMMIT). Where the extension
was built with libpq, appends go through its PGBatch connection instead
(`_BatchWriteSession`: the same statements, two calls a group without the
GIL); other writer tasks keep the psycopg connection. Until that commit
the transaction has touched nothing but ``tree_state`` and ``event_ids``,
which is what makes creating a month's partition from a second connection
safe (see ``_ensure_partitions``).

Reads use a pool of autocommit connections.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from itertools import repeat
from operator import attrgetter
from typing import Any

import psycopg
from psycopg import errors as pgerrors
from psycopg.abc import Buffer
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg.sql import SQL, Literal
from psycopg.types.string import BytesBinaryDumper
from psycopg_pool import ConnectionPool

from kimonaudit.apikeys import ApiKeyRecord
from kimonaudit.core.leaf import json_string
from kimonaudit.core.merkle import CompactRange
from kimonaudit.core.records import (
    ENTRY_COLUMNS,
    ActorRecord,
    ActorRow,
    AppendPlan,
    CheckpointRecord,
    EntryRow,
    LedgerScan,
    TenantRecord,
    TreeState,
)
from kimonaudit.errors import ConfigError, Conflict, NotFound, StoreError
from kimonaudit.store.native import native
from kimonaudit.store.postgres_console import PostgresConsoleStore
from kimonaudit.store.postgres_destinations import PostgresDestinationStore
from kimonaudit.store.postgres_index import (
    Indexer,
    IndexerProcess,
    check_projection,
    lock_mark,
    pending,
    projection_rows,
    read_rows,
    remove_rows,
    wait_until_indexed,
    write_rows,
)
from kimonaudit.store.postgres_retention import PostgresRetentionStore
from kimonaudit.store.postgres_schema import (
    LOCK_MIGRATE,
    LOCK_PARTITION,
    MIGRATIONS,
    create_partition_sql,
    month_of,
    next_month,
    partition_name,
)
from kimonaudit.store.postgres_search import PostgresSearch
from kimonaudit.store.writer import CommitUnknown, GroupCommitWriter, QueuedAppends, StaleState

log = logging.getLogger(__name__)

Month = tuple[int, int]

_COLS = ", ".join(ENTRY_COLUMNS)
# Column names come from EntryRow; nothing outside the code is interpolated.
_SELECT_ENTRY = f"SELECT {', '.join('e.' + c for c in ENTRY_COLUMNS)} FROM entries e"  # noqa: S608
# Binary COPY needs every column's type spelled out, in column order.
_ENTRY_TYPES = [
    "text", "int8", "text", "int8", "text", "text", "int4", "bool", "text", "text",
    "text", "text", "text", "int8", "bytea", "bytea", "bytea", "bytea", "bytea",
]  # fmt: skip
_COPY_ENTRIES = f"COPY entries ({_COLS}) FROM STDIN (FORMAT BINARY)"
# verify's scan (Store.scan_ledger): the columns the native row check reads,
# in its order (kimonaudit/_native.c), as binary COPY.
# COPY takes no bound parameters: the values are composed into the text, as
# literals, for psycopg's COPY and for the native scan's own connection alike.
_COPY_LEDGER = SQL(
    "COPY (SELECT seq, event_id, recorded_at, action, category, severity, security, actor_hash, "
    "actor_type, target_type, target_id, outcome, payload, salt, payload_commitment, leaf_hash "
    "FROM entries WHERE tenant_id = {} AND seq >= {} AND seq < {} ORDER BY seq) "
    "TO STDOUT (FORMAT BINARY)"
)
_COPY_ROWS = 5_000  # COPY messages (one per row) checked per call
# Whether the extension, where built with libpq, reads the COPY itself; when
# not, psycopg reads it and the extension checks it (scan_copy).
_SCAN_WITH_LIBPQ = True
_COPY_EVENT_IDS = (
    "COPY event_ids (tenant_id, event_id, seq, recorded_at, leaf_hash) FROM STDIN (FORMAT BINARY)"
)
_EVENT_ID_TYPES = ["text", "text", "int8", "int8", "bytea"]
# The same as _native.copy_binary's type letters, and the EntryRow fields
# each COPY takes (tenant_id, event_id, seq, recorded_at, leaf_hash).
_CODES = {"text": "t", "int8": "q", "int4": "i", "bool": "b", "bytea": "y"}
_ENTRY_CODES = "".join(_CODES[t] for t in _ENTRY_TYPES)
_ENTRY_COLUMNS = tuple(range(len(_ENTRY_TYPES)))
_EVENT_ID_CODES = "".join(_CODES[t] for t in _EVENT_ID_TYPES)
_EVENT_ID_COLUMNS = tuple(
    EntryRow._fields.index(f) for f in ("tenant_id", "event_id", "seq", "recorded_at", "leaf_hash")
)
# Appends' COPY formatted by the extension where it was built (tests switch
# it off to compare with psycopg's write_row).
NATIVE_COPY = True
_LOCK_STATE = (
    "SELECT size, frontier, last_recorded_at, purged FROM tree_state "
    "WHERE tenant_id = %s FOR UPDATE"
)
_SELECT_STATE = (
    "SELECT size, frontier, last_recorded_at, purged FROM tree_state WHERE tenant_id = %s"
)
_EXISTING = "SELECT seq FROM event_ids WHERE tenant_id = %s AND event_id = ANY(%s::text[])"
_PUT_NODES = (
    "INSERT INTO tree_nodes (tenant_id, level, idx, hash) "
    "SELECT %s, l, i, h FROM unnest(%s::int4[], %s::int8[], %s::bytea[]) AS n(l, i, h) "
    "ON CONFLICT (tenant_id, level, idx) DO UPDATE SET hash = excluded.hash"
)
_UPSERT_ACTOR = (
    "INSERT INTO actors (tenant_id, actor_hash, actor_id, actor_type, name, email, updated_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (tenant_id, actor_hash) DO UPDATE SET"
    " actor_id = excluded.actor_id, actor_type = excluded.actor_type,"
    " name = coalesce(excluded.name, actors.name), email = coalesce(excluded.email, actors.email),"
    " updated_at = excluded.updated_at"
    # An erased actor's tombstone is never filled in again (issue 8).
    " WHERE actors.erased_at IS NULL"
)
_UPDATE_STATE = (
    "UPDATE tree_state SET size = %s, frontier = %s, last_recorded_at = %s, purged = %s "
    "WHERE tenant_id = %s"
)
# The same statements for the native connection (PGBatch: libpq's $n
# placeholders, arrays sent as text, the nodes' hashes as one bytea of
# 32-byte pieces).
_LOCK_STATE_N = _LOCK_STATE.replace("%s", "$1")
# A join, not `event_id = ANY($2)`: planned for the array in hand (an
# unnamed statement), ANY over 1,000 ids made PostgreSQL scan the tenant's
# whole index range and filter it, a cost that grew with the tenant (UUIDv4
# appends fell to 6,400 events/s after 1M entries); psycopg's path gets a
# generic plan from its prepared statement instead. Ids in a request are
# unique, so the join returns each stored one once.
_EXISTING_N = (
    "SELECT e.seq FROM unnest($2::text[]) AS u(id) "
    "JOIN event_ids e ON e.tenant_id = $1 AND e.event_id = u.id"
)
_PUT_NODES_N = (
    "INSERT INTO tree_nodes (tenant_id, level, idx, hash) "
    "SELECT $1, l, i, substring($4::bytea FROM (o * 32 - 31)::int4 FOR 32) "
    "FROM unnest($2::int4[], $3::int8[]) WITH ORDINALITY AS n(l, i, o) "
    "ON CONFLICT (tenant_id, level, idx) DO UPDATE SET hash = excluded.hash"
)
# The lock of a tenant whose state the session remembers from its own last
# commit: taken as late as the commit itself (one round trip fewer, and one
# wait fewer for the GIL after it), failing with division_by_zero, before
# anything is written, when the state is not the remembered one.
_CHECK_STATE_N = (
    "SELECT 1 / (size = $2 AND frontier = $3 AND last_recorded_at = $4 AND purged = $5)::int "
    "FROM tree_state WHERE tenant_id = $1 FOR UPDATE"
)
_STALE = "22012"  # division_by_zero: only _CHECK_STATE_N divides
_UPSERT_ACTOR_N = _UPSERT_ACTOR % tuple(f"${k}" for k in range(1, 8))
_UPDATE_STATE_N = _UPDATE_STATE % tuple(f"${k}" for k in range(1, 6))
# Appends through the extension's PGBatch connection where it was built with
# libpq (tests switch it off to compare with psycopg's path).
NATIVE_WRITES = True

_PARTITION_RE = re.compile(r"entries_p(\d{4})(\d{2})")
_PAGE = 5_000
# A partition is created under an ACCESS EXCLUSIVE lock on `entries`; give
# up (and fail that append) rather than queue behind a stuck transaction.
_DDL_LOCK_TIMEOUT = "60s"


# -- errors ------------------------------------------------------------------
def describe(url: str) -> str:
    """``host:port/dbname`` for messages: never the user's password."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error:
        return "the configured server"
    host = info.get("host") or info.get("hostaddr") or "local socket"
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or info.get('user') or ''}"


def _password(url: str) -> str | None:
    try:
        return conninfo_to_dict(url).get("password")  # type: ignore[return-value]
    except psycopg.Error:
        return None


def _reason(exc: BaseException | str, secret: str | None = None) -> str:
    if isinstance(exc, str):
        text = exc
    else:
        diag = getattr(exc, "diag", None)
        primary = getattr(diag, "message_primary", None)
        text = primary or str(exc) or exc.__class__.__name__
    text = " ".join(text.split())
    if secret:
        text = text.replace(secret, "***")
    return text


# -- rows --------------------------------------------------------------------
def _state(tenant_id: str, row: Sequence[Any] | None) -> TreeState:
    if row is None:
        raise NotFound(f"no tenant {tenant_id!r}")
    size, frontier, last, purged = row
    return TreeState(tenant_id, CompactRange.from_bytes(size, bytes(frontier)), last, purged)


def _tenant(r: Sequence[Any]) -> TenantRecord:
    return TenantRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5]))


def _months(plans: Iterable[AppendPlan]) -> set[Month]:
    """Months the plans' rows fall in. recorded_at never decreases along a
    plan, so its first and last rows bound every row between them."""
    out: set[Month] = set()
    for p in plans:
        if not p.rows:
            continue
        first, last = month_of(p.rows[0].recorded_at), month_of(p.rows[-1].recorded_at)
        if first is None or last is None:
            continue  # out of any partition's range: the default partition takes it
        m = first
        out.add(m)
        while m != last:
            m = next_month(m)
            out.add(m)
    return out


def _merged_nodes(plans: Iterable[AppendPlan], tenant_id: str) -> dict[tuple[int, int], bytes]:
    # One statement per tenant may not touch a row twice; the last write wins,
    # as it would have statement by statement.
    nodes: dict[tuple[int, int], bytes] = {}
    for p in plans:
        if p.tenant_id == tenant_id:
            for level, idx, h in p.nodes:
                nodes[(level, idx)] = h
    return nodes


def _node_params(tenant_id: str, nodes: Mapping[tuple[int, int], bytes]) -> tuple[object, ...]:
    keys = list(nodes)
    return tenant_id, [k[0] for k in keys], [k[1] for k in keys], [nodes[k] for k in keys]


# -- the writer's session ----------------------------------------------------
@contextmanager
def _append_errors(where: str) -> Iterator[None]:
    """psycopg's errors on the append path as StoreError."""
    try:
        yield
    except psycopg.Error as exc:
        raise StoreError(f"append to PostgreSQL at {where} failed: {_reason(exc)}") from exc


def _found(
    store: PostgresStore,
    tenant_id: str,
    seqs: Iterable[int],
    event_ids: Sequence[str],
    pending: Mapping[tuple[str, str], EntryRow],
) -> dict[str, EntryRow]:
    """The stored entries at `seqs` and those of `event_ids` written earlier
    in this group (not in the table until commit), by event id."""
    found: dict[str, EntryRow] = {}
    # The stored entries, for the content comparison, on another
    # connection: this transaction must not touch `entries` before its
    # partitions exist (see _ensure_partitions). Committed entries never
    # change, so reading them outside the transaction is safe.
    for seq in seqs:
        row = store.get_entry(tenant_id, seq)
        if row is not None:
            found[row.event_id] = row
    if pending:
        for eid in event_ids:
            r = pending.get((tenant_id, eid))
            if r is not None:
                found[eid] = r
    return found


def _buffer(
    plan: AppendPlan, plans: list[AppendPlan], pending: dict[tuple[str, str], EntryRow]
) -> None:
    plans.append(plan)
    tid = plan.tenant_id
    for r in plan.rows:
        pending[(tid, r.event_id)] = r


def _actor_rows(plans: Iterable[AppendPlan], now: int) -> list[tuple[object, ...]]:
    return [
        (p.tenant_id, a.actor_hash, a.actor_id, a.actor_type, a.name, a.email, now)
        for p in plans
        for a in p.actors
    ]


def _copy_bytes_in_c(conn: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """The writer's connection, dumping bytea columns of a COPY with
    psycopg's plain bytes dumper (C in its binary package).

    COPY after ``set_types`` picks dumpers by type oid, and psycopg's
    default for the bytea oid is the one that also accepts the DB-API
    ``Binary`` wrapper: two Python calls per value, six values per appended
    entry. The writer only ever passes bytes, which both dumpers write
    identically."""
    conn.adapters.register_dumper(None, BytesBinaryDumper)
    return conn


class _WriteSession:
    """WriteSession on the writer thread's own connection. Buffers the
    group's plans and writes them in `commit`."""

    def __init__(self, store: PostgresStore, conn: psycopg.Connection[Any]) -> None:
        self._store = store
        self.conn = _copy_bytes_in_c(conn)
        self._reset()

    def _reset(self) -> None:
        self._plans: list[AppendPlan] = []
        self._pending: dict[tuple[str, str], EntryRow] = {}

    def _errors(self) -> AbstractContextManager[None]:
        return _append_errors(self._store.where)

    def begin(self) -> None:
        self._reset()
        if self.conn.closed or self.conn.broken:
            self._reconnect()
        try:
            self.conn.execute("BEGIN")
        except psycopg.OperationalError as exc:
            if not self.conn.broken:
                raise StoreError(
                    f"append to PostgreSQL at {self._store.where} failed: {_reason(exc)}"
                ) from exc
            # The server restarted or dropped us while we were idle. Nothing
            # of this group was sent yet, so a fresh connection is safe.
            self._reconnect()
            with self._errors():
                self.conn.execute("BEGIN")

    def _reconnect(self) -> None:
        self.conn.close()
        self.conn = _copy_bytes_in_c(self._store._connect())
        log.info("writer reconnected to PostgreSQL at %s", self._store.where)

    def lock_state(self, tenant_id: str) -> TreeState:
        with self._errors():
            row = self.conn.execute(_LOCK_STATE, (tenant_id,)).fetchone()
        return _state(tenant_id, row)

    def existing(self, tenant_id: str, event_ids: Sequence[str]) -> Mapping[str, EntryRow]:
        with self._errors():
            seqs = [seq for (seq,) in self.conn.execute(_EXISTING, (tenant_id, list(event_ids)))]
        return _found(self._store, tenant_id, seqs, event_ids, self._pending)

    def write(self, plan: AppendPlan) -> None:
        _buffer(plan, self._plans, self._pending)

    def write_all(self, plans: Sequence[AppendPlan]) -> None:
        for plan in plans:  # everything is written at commit anyway
            self.write(plan)

    def commit(self) -> None:
        plans = self._plans
        conn = self.conn
        with self._errors():
            if any(p.rows for p in plans):
                # Before the first write to `entries` in this transaction:
                # see _ensure_partitions for why the order matters.
                self._store._ensure_partitions(_months(plans))
                with conn.cursor() as cur:
                    rows = [row for p in plans for row in p.rows]
                    copy_binary = getattr(native, "copy_binary", None) if NATIVE_COPY else None
                    if copy_binary is not None:
                        # The whole COPY formatted in C (kimonaudit/_native.c):
                        # no dumper call per value under the GIL.
                        with cur.copy(_COPY_ENTRIES) as cp:
                            cp.write(copy_binary(rows, _ENTRY_CODES, _ENTRY_COLUMNS))
                        with cur.copy(_COPY_EVENT_IDS) as cp:
                            cp.write(copy_binary(rows, _EVENT_ID_CODES, _EVENT_ID_COLUMNS))
                    else:
                        self._copy_rows(cur, rows)
            states: dict[str, TreeState] = {p.tenant_id: p.state for p in plans}
            actors = _actor_rows(plans, int(time.time() * 1_000_000))
            try:
                with conn.pipeline(), conn.cursor() as cur:
                    for tid in states:
                        nodes = _merged_nodes(plans, tid)
                        if nodes:
                            cur.execute(_PUT_NODES, _node_params(tid, nodes))
                    if actors:
                        cur.executemany(_UPSERT_ACTOR, actors)
                    for st in states.values():
                        params = (st.size, st.tree.to_bytes(), st.last_recorded_at, st.purged)
                        cur.execute(_UPDATE_STATE, (*params, st.tenant_id))
                    cur.execute("COMMIT")
            except psycopg.OperationalError as exc:
                # The pipeline holds the COMMIT: once the connection is
                # lost in it, whether the group landed is unknown.
                if conn.broken:
                    raise CommitUnknown(_commit_unknown(self._store.where)) from exc
                raise
        self._reset()

    @staticmethod
    def _copy_rows(cur: psycopg.Cursor[Any], rows: Sequence[EntryRow]) -> None:
        with cur.copy(_COPY_ENTRIES) as cp:
            cp.set_types(_ENTRY_TYPES)
            for row in rows:
                cp.write_row(row)
        with cur.copy(_COPY_EVENT_IDS) as cp:
            cp.set_types(_EVENT_ID_TYPES)
            for row in rows:
                cp.write_row([row[i] for i in _EVENT_ID_COLUMNS])

    def rollback(self) -> None:
        self._reset()
        conn = self.conn
        if conn.closed or conn.broken:
            return
        if conn.info.transaction_status != TransactionStatus.IDLE:
            with self._errors():
                conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()


def _commit_unknown(where: str) -> str:
    return (
        f"the connection to PostgreSQL at {where} was lost while committing: these events "
        "may or may not have been stored (appending them again with the same client-supplied "
        "ids returns their receipts if they were)"
    )


class _BatchWriteSession:
    """The append path's session on the extension's PGBatch connection: a
    group commit is two calls that each let go of the GIL once (BEGIN with
    the tenants' locks; the COPYs, nodes, actors, state and COMMIT), instead
    of a round trip each through psycopg (kimonaudit/_native.c says why).
    Other writer tasks keep the psycopg connection (`_WriteSession`)."""

    def __init__(self, store: PostgresStore, batch: Any) -> None:
        self._store = store
        self.batch = batch
        # Each tenant's state after this session's last commit. Usually the
        # only appender, it hands that out without reading it, and checks it
        # under the lock in the commit's own round trip (_CHECK_STATE_N).
        self._known: dict[str, TreeState] = {}
        self._reset()

    def _reset(self) -> None:
        self.queued: list[tuple[str, object]] = []
        self._plans: list[AppendPlan] = []
        self._pending: dict[tuple[str, str], EntryRow] = {}

    def _run(self, steps: list[tuple[str, object]]) -> list[Any]:
        queued, self.queued = self.queued, []
        batch = self.batch
        # A connection the server dropped while we were idle is opened again
        # only where nothing of the group can have reached the server: this
        # call begins the transaction, and the loss was known before it or
        # its first statement (BEGIN) failed, which PGBatch reports before it
        # sends any COPY or the COMMIT. A failure after that leaves the
        # outcome unknown, and the error goes to the caller.
        starts = bool(queued) and queued[0][0] == "BEGIN"
        try:
            if starts and batch.broken:
                self._reconnect()
            try:
                results: list[Any] = batch.run(queued + steps)
            except native.PGBatchError as exc:
                if not (starts and batch.broken and exc.args[2] == 0):
                    raise
                self._reconnect()
                results = batch.run(queued + steps)
        except (native.PGBatchError, ConnectionError) as exc:
            self._known.clear()
            where = self._store.where
            if isinstance(exc, native.PGBatchError):
                sent = exc.args[3]
                if batch.broken and any(sql == "COMMIT" for sql, _ in (queued + steps)[:sent]):
                    raise CommitUnknown(_commit_unknown(where)) from exc
                if exc.args[1] == _STALE:
                    raise StaleState(
                        f"a tenant's state in PostgreSQL at {where} changed since "
                        "this process last appended to it"
                    ) from exc
            reason = _reason(exc.args[0] if exc.args else exc, self._store._secret)
            raise StoreError(f"append to PostgreSQL at {where} failed: {reason}") from exc
        return results[len(queued) :]

    def _reconnect(self) -> None:
        self.batch.reset()
        log.info("writer reconnected to PostgreSQL at %s", self._store.where)

    def begin(self) -> None:
        self._reset()
        self.queued.append(("BEGIN", ()))

    def lock_state(self, tenant_id: str) -> TreeState:
        known = self._known.get(tenant_id)
        if known is not None:
            # Locked and checked with the next round trip; the writer asks
            # for its tenants in sorted order, so the locks still are.
            params = (tenant_id, known.size, known.tree.to_bytes(), known.last_recorded_at)
            self.queued.append((_CHECK_STATE_N, (*params, known.purged)))
            return known
        (rows,) = self._run([(_LOCK_STATE_N, (tenant_id,))])
        if not rows:
            return _state(tenant_id, None)
        size, frontier, last, purged = rows[0]
        # Text format: bytea as \x and hex digits.
        state = _state(tenant_id, (int(size), bytes.fromhex(frontier[2:]), int(last), int(purged)))
        self._known[tenant_id] = state
        return state

    def existing(self, tenant_id: str, event_ids: Sequence[str]) -> Mapping[str, EntryRow]:
        (rows,) = self._run([(_EXISTING_N, (tenant_id, list(event_ids)))])
        return _found(self._store, tenant_id, [int(s) for (s,) in rows], event_ids, self._pending)

    def write_all(self, plans: Sequence[AppendPlan]) -> None:
        for plan in plans:  # everything is written at commit anyway
            _buffer(plan, self._plans, self._pending)

    def commit(self) -> None:
        plans = self._plans
        steps: list[tuple[str, object]] = []
        if any(p.rows for p in plans):
            # Before the first write to `entries` in this transaction:
            # see _ensure_partitions for why the order matters.
            with _append_errors(self._store.where):
                self._store._ensure_partitions(_months(plans))
            rows = [row for p in plans for row in p.rows]
            steps.append((_COPY_ENTRIES, native.copy_binary(rows, _ENTRY_CODES, _ENTRY_COLUMNS)))
            steps.append(
                (_COPY_EVENT_IDS, native.copy_binary(rows, _EVENT_ID_CODES, _EVENT_ID_COLUMNS))
            )
        states: dict[str, TreeState] = {p.tenant_id: p.state for p in plans}
        for tid in states:
            nodes = _merged_nodes(plans, tid)
            if nodes:
                keys = list(nodes)
                hashes = b"".join(nodes[k] for k in keys)
                steps.append(
                    (_PUT_NODES_N, (tid, [k[0] for k in keys], [k[1] for k in keys], hashes))
                )
        now = int(time.time() * 1_000_000)
        steps.extend((_UPSERT_ACTOR_N, a) for a in _actor_rows(plans, now))
        for st in states.values():
            params = (st.size, st.tree.to_bytes(), st.last_recorded_at, st.purged, st.tenant_id)
            steps.append((_UPDATE_STATE_N, params))
        steps.append(("COMMIT", ()))
        self._run(steps)
        self._known.update(states)
        self._reset()

    def rollback(self) -> None:
        self._reset()
        self._known.clear()
        batch = self.batch
        if not batch.broken and batch.in_transaction:
            self._run([("ROLLBACK", ())])

    def close(self) -> None:
        self.batch.close()


def _open_batch(conninfo: str, secret: str | None, where: str) -> Any:
    """The append path's native connection; None without the extension or
    where it was built without libpq."""
    make = getattr(native, "PGBatch", None) if NATIVE_WRITES and NATIVE_COPY else None
    if make is None:
        return None
    try:
        return make(conninfo)
    except ConnectionError as exc:
        raise StoreError(
            f"cannot connect to PostgreSQL at {where}: {_reason(exc, secret)}"
        ) from None


# -- the store ---------------------------------------------------------------
def _configure_reader(conn: psycopg.Connection[Any]) -> None:
    # No JIT for the readers' queries. A search's probe plan stops at its
    # LIMIT, but the planner costs it as if it read every candidate, so JIT
    # compiled it (with optimisation and inlining) before the first row:
    # 100-450 ms added to a 5 ms query at 10M entries, and during that the
    # query does not notice a statement_timeout, so budgeted tries overran.
    conn.execute("SET jit = off")


def _copy_messages(conn: psycopg.Connection[Any], copy: psycopg.Copy) -> Iterator[Buffer]:
    """The messages of a binary COPY TO, as `copy` reads them, but those
    libpq already holds are taken from it directly: psycopg's read() costs
    about a microsecond more per row, a third of verify's client time. The
    waiting for the socket and the end of the COPY stay psycopg's (read()),
    so its state stays right: the direct reads stop at the binary trailer,
    which the server sends as a message of its own."""
    pgconn = conn.pgconn
    get = pgconn.get_copy_data
    while True:
        nbytes, data = get(1)
        if nbytes == 0:  # nothing buffered: psycopg waits for the next row
            data = copy.read()
            if not data:
                return
            nbytes = len(data)
        elif nbytes < 0:
            # The end, met here when the trailer shared a message (an empty
            # COPY sends header and trailer together), or a failure: either
            # way take the results, so the connection is left idle.
            results = []
            while (res := pgconn.get_result()) is not None:
                results.append(res)
            if nbytes == -1 and results and results[-1].status == ExecStatus.COMMAND_OK:
                return
            message = pgconn.get_error_message() or "the COPY ended early"
            raise StoreError(f"verify: reading the ledger failed: {message}")
        yield data
        if nbytes == 2 and bytes(data) == b"\xff\xff":
            if copy.read():
                raise StoreError("verify: the ledger COPY held data after its end")
            return


class PostgresStore(
    QueuedAppends,
    PostgresSearch,
    PostgresConsoleStore,
    PostgresRetentionStore,
    PostgresDestinationStore,
):
    dialect = "postgres"

    def __init__(
        self,
        url: str,
        pool_size: int = 4,
        connect_timeout: int = 10,
        indexer: bool | str = True,
    ) -> None:
        if not isinstance(pool_size, int) or pool_size < 1:
            raise ConfigError(f"pool_size must be a positive integer, got {pool_size!r}")
        if indexer not in (True, False, "thread", "process", "off"):
            raise ConfigError(f"indexer must be 'thread', 'process' or 'off', not {indexer!r}")
        self.url = url
        self.where = describe(url)
        self._secret = _password(url)
        self._closed = True
        try:
            given = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise ConfigError(f"bad PostgreSQL URL: {_reason(exc, self._secret)}") from exc
        self._kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in given:
            self._kwargs["connect_timeout"] = connect_timeout
        if "application_name" not in given:
            self._kwargs["application_name"] = "kimonaudit"
        # verify's native scan connects through libpq itself (_native.scan_pg):
        # the same server and options, UTF-8 text, and no JIT (as the readers).
        self._scan_conninfo = make_conninfo(
            url,
            **{k: v for k, v in self._kwargs.items() if k != "autocommit"},
            client_encoding="UTF8",
            options=f"{given.get('options') or ''} -c jit=off".strip(),
        )

        wconn = self._connect()
        try:
            self._migrate(wconn)
            self._partitions = self._partition_months(wconn)
        except psycopg.Error as exc:
            wconn.close()
            raise StoreError(
                f"cannot prepare the schema in PostgreSQL at {self.where}: "
                f"{_reason(exc, self._secret)}"
            ) from exc
        except BaseException:
            wconn.close()
            raise
        self._pool: ConnectionPool[Any] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs=self._kwargs,
            configure=_configure_reader,
            open=False,
            name="kimonaudit-readers",
        )
        try:
            self._pool.open(wait=True, timeout=float(connect_timeout))
        except psycopg.Error as exc:
            wconn.close()
            self._pool.close()
            raise StoreError(
                f"cannot connect to PostgreSQL at {self.where}: {_reason(exc, self._secret)}"
            ) from exc
        tasks = _WriteSession(self, wconn)
        try:
            batch = _open_batch(self._scan_conninfo, self._secret, self.where)
        except BaseException:
            wconn.close()
            self._pool.close()
            raise
        self._writer = GroupCommitWriter(
            tasks if batch is None else _BatchWriteSession(self, batch), tasks=tasks
        )
        self._closed = False
        # The projection's writer, on its own connection: a thread (True,
        # "thread"), or a child process ("process", KIMONAUDIT_INDEXER's
        # default) whose Python work then runs on another core. False or
        # "off" leaves it to other processes on the same database
        # (short-lived readers such as verify's workers).
        self._indexer: Indexer | IndexerProcess | None = None
        if indexer == "process":
            self._indexer = IndexerProcess(url, self._kwargs)
        elif indexer not in (False, "off"):
            self._indexer = Indexer(self._connect)

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r})"

    # -- plumbing ----------------------------------------------------------
    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self.url, **self._kwargs)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL at {self.where}: {_reason(exc, self._secret)}"
            ) from exc

    @staticmethod
    def _migrate(conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():
            # Two processes opening a fresh database at once: the second waits
            # here, then finds the migrations done.
            row = conn.execute(
                "SELECT current_schema(), "
                "pg_advisory_xact_lock(%s, hashtext(coalesce(current_schema(), '')))",
                (LOCK_MIGRATE,),
            ).fetchone()
            if row is None or row[0] is None:
                raise StoreError(
                    "no schema to create tables in: the connection's search_path names no "
                    "existing schema (create it, or fix options=-csearch_path=... in the URL)"
                )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
            )
            done = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
            newest = max(v for v, _ in MIGRATIONS)
            if done and max(done) > newest:
                raise StoreError(
                    f"database schema version {max(done)} is newer than this KimonAudit "
                    f"understands ({newest}); upgrade KimonAudit"
                )
            for version, sql in MIGRATIONS:
                if version in done:
                    continue
                conn.execute(sql)  # several statements: allowed without parameters
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (%s, %s)",
                    (version, int(time.time() * 1_000_000)),
                )
                log.info("applied schema migration %d", version)

    @staticmethod
    def _partition_months(conn: psycopg.Connection[Any]) -> set[Month]:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'entries'::regclass"
        ).fetchall()
        out: set[Month] = set()
        for (name,) in rows:
            m = _PARTITION_RE.fullmatch(name)
            if m:
                out.add((int(m.group(1)), int(m.group(2))))
        return out

    def _ensure_partitions(self, months: Iterable[Month]) -> None:
        """Create the monthly partitions that `months` need and that this
        process has not seen yet.

        Called by the writer while its transaction holds tree_state row
        locks but has not touched `entries`. The DDL runs on a second
        connection and commits at once, so the ACCESS EXCLUSIVE lock it
        needs on `entries` is held for milliseconds. It waits only for
        transactions already writing `entries`, and those wait for no
        tree_state lock (every writer takes all its locks before its first
        write), so no wait cycle can pass through our open transaction.
        The advisory lock makes concurrent creators in other processes take
        turns; the loser then finds the partition there.

        Invariant for any code that writes `entries` (retention included):
        take the tenant's tree_state row lock before touching `entries`.
        """
        want = sorted(m for m in months if m not in self._partitions)
        if not want:
            return
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(f"SET LOCAL lock_timeout = '{_DDL_LOCK_TIMEOUT}'")
            conn.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (LOCK_PARTITION,)
            )
            present = self._partition_months(conn)
            for m in want:
                if m in present:
                    continue
                try:
                    with conn.transaction():
                        conn.execute(create_partition_sql(m))
                except (pgerrors.DuplicateTable, pgerrors.UniqueViolation):
                    # Made meanwhile by a creator the advisory lock does not
                    # reach (on Citus, one connected to another node).
                    pass
                except pgerrors.CheckViolation:
                    # The default partition already holds rows of that month
                    # (written while creation failed): they stay there, and so
                    # do the month's later rows. Still correct, just unpruned.
                    log.warning(
                        "not creating %s: %s holds rows of that month",
                        partition_name(m),
                        "entries_default",
                    )
                else:
                    log.info("created partition %s", partition_name(m))
        self._partitions.update(want)

    @contextmanager
    def _read(self, what: str) -> Iterator[psycopg.Connection[Any]]:
        if self._closed:
            raise StoreError("the store is closed")
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            raise StoreError(
                f"{what} in PostgreSQL at {self.where} failed: {_reason(exc, self._secret)}"
            ) from exc

    @contextmanager
    def _planned(self, what: str, settings: Mapping[str, str]) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection in a transaction with planner `settings`
        (SET LOCAL: they end with the transaction)."""
        with self._read(what) as conn, conn.transaction():
            for name, value in settings.items():
                conn.execute(f"SET LOCAL {name} = '{value}'")  # constants of the search module
            yield conn

    def _exec(self, what: str, sql: str, params: Sequence[object] = ()) -> int:
        """One autocommit statement; returns the number of rows it touched."""
        with self._read(what) as conn:
            return conn.execute(sql, params).rowcount

    def writer_queue_depth(self) -> int:
        return self._writer.queue_depth()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._writer.close()
        if self._indexer is not None:
            self._indexer.close()
        self._pool.close()

    # -- tenants -----------------------------------------------------------
    def insert_tenant(self, t: TenantRecord) -> None:
        try:
            with self._read("creating a tenant") as conn, conn.transaction():
                conn.execute(
                    "INSERT INTO tenants (tenant_id, name, plan, created_at, retention_months,"
                    " legal_hold) VALUES (%s, %s, %s, %s, %s, %s)",
                    (t.id, t.name, t.plan, t.created_at, t.retention_months, t.legal_hold),
                )
                conn.execute(
                    "INSERT INTO tree_state (tenant_id, size, frontier, last_recorded_at, purged)"
                    " VALUES (%s, 0, %s, 0, 0)",
                    (t.id, CompactRange().to_bytes()),
                )
        except StoreError as exc:
            if isinstance(exc.__cause__, pgerrors.UniqueViolation):
                raise Conflict(f"tenant {t.id!r} already exists") from exc
            raise

    def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        with self._read("reading a tenant") as conn:
            r = conn.execute(
                "SELECT tenant_id, name, plan, created_at, retention_months, legal_hold"
                " FROM tenants WHERE tenant_id = %s",
                (tenant_id,),
            ).fetchone()
        return None if r is None else _tenant(r)

    def list_tenants(self) -> list[TenantRecord]:
        with self._read("listing tenants") as conn:
            rows = conn.execute(
                "SELECT tenant_id, name, plan, created_at, retention_months, legal_hold"
                " FROM tenants ORDER BY created_at, tenant_id"
            ).fetchall()
        return [_tenant(r) for r in rows]

    def set_legal_hold(self, tenant_id: str, hold: bool) -> None:
        n = self._exec(
            "setting a legal hold",
            "UPDATE tenants SET legal_hold = %s WHERE tenant_id = %s",
            (hold, tenant_id),
        )
        if not n:
            raise NotFound(f"no tenant {tenant_id!r}")

    # -- entries and tree --------------------------------------------------
    def tree_state(self, tenant_id: str) -> TreeState:
        with self._read("reading the tree state") as conn:
            row = conn.execute(_SELECT_STATE, (tenant_id,)).fetchone()
        return _state(tenant_id, row)

    def get_entry(self, tenant_id: str, seq: int) -> EntryRow | None:
        with self._read("reading an entry") as conn:
            r = conn.execute(
                f"{_SELECT_ENTRY} WHERE e.tenant_id = %s AND e.seq = %s", (tenant_id, seq)
            ).fetchone()
        return None if r is None else EntryRow._make(r)

    def get_entry_by_event_id(self, tenant_id: str, event_id: str) -> EntryRow | None:
        # event_ids carries recorded_at, so the entry lookup prunes to one
        # partition.
        with self._read("reading an entry") as conn:
            r = conn.execute(
                f"{_SELECT_ENTRY} JOIN event_ids i ON e.tenant_id = i.tenant_id "
                "AND e.seq = i.seq AND e.recorded_at = i.recorded_at "
                "WHERE i.tenant_id = %s AND i.event_id = %s",
                (tenant_id, event_id),
            ).fetchone()
        return None if r is None else EntryRow._make(r)

    def scans_natively(self) -> bool:
        return native is not None

    def scan_ledger(self, tenant_id: str, start: int, end: int | None) -> LedgerScan | None:
        # The rows arrive as binary COPY and are checked in C a few MB at a
        # time, without a Python object per row or column.
        if native is None:
            return None
        hi = (1 << 62) if end is None else end
        tenant = json_string(tenant_id)
        query = _COPY_LEDGER.format(Literal(tenant_id), Literal(start), Literal(hi))
        scan_pg = getattr(native, "scan_pg", None) if _SCAN_WITH_LIBPQ else None
        if scan_pg is not None:
            try:
                found = scan_pg(self._scan_conninfo, query.as_string(None), tenant)
            except (ConnectionError, ValueError) as exc:
                raise StoreError(
                    f"verify: reading the ledger failed: {_reason(exc, self._secret)}"
                ) from None
            return None if found is None else LedgerScan(*found)
        seqs, hashes, odd = bytearray(), bytearray(), []
        present = redacted = 0
        pending: list[Buffer] = []
        rest = b""
        ended = False

        def check(final: bool) -> bool:
            nonlocal present, redacted, rest, ended
            data = b"".join([rest, *pending])
            pending.clear()
            if ended and data:
                raise StoreError("verify: the ledger COPY held data after its end")
            found = native.scan_copy(data, tenant)
            if found is None:
                return False
            s, h, o, p, r, used, done = found
            ended = ended or done
            base = len(seqs) // 8
            seqs.extend(s)
            hashes.extend(h)
            odd.extend(i + base for i in o)
            present += p
            redacted += r
            rest = data[used:]
            if final and (rest or not ended):
                raise StoreError("verify: the ledger COPY ended early or held extra data")
            return True

        with (
            self._read("verifying entries") as conn,
            conn.cursor() as cur,
            cur.copy(query) as copy,
        ):
            for data in _copy_messages(conn, copy):
                pending.append(data)
                if len(pending) >= _COPY_ROWS and not check(False):
                    return None
            if not check(True):
                return None
        return LedgerScan(bytes(seqs), bytes(hashes), odd, present, redacted)

    def iter_entries(
        self, tenant_id: str, start: int = 0, end: int | None = None
    ) -> Iterator[EntryRow]:
        hi = (1 << 62) if end is None else end
        # Keyset pages, a pooled connection per page: a slow consumer (an
        # export streaming to a client) holds no connection and no snapshot.
        while True:
            with self._read("reading entries") as conn:
                rows = conn.execute(
                    f"{_SELECT_ENTRY} WHERE e.tenant_id = %s AND e.seq >= %s AND e.seq < %s "
                    "ORDER BY e.seq LIMIT %s",
                    (tenant_id, start, hi, _PAGE),
                ).fetchall()
            # EntryRow._make without its Python frame: once per row of a scan.
            yield from map(tuple.__new__, repeat(EntryRow), rows)
            if len(rows) < _PAGE:
                return
            start = rows[-1][1] + 1

    def leaf_hashes(self, tenant_id: str, start: int, end: int) -> list[bytes]:
        with self._read("reading leaf hashes") as conn:
            rows = conn.execute(
                "SELECT leaf_hash FROM entries WHERE tenant_id = %s AND seq >= %s AND seq < %s "
                "ORDER BY seq",
                (tenant_id, start, end),
            ).fetchall()
        return [h for (h,) in rows]

    def tree_hashes(
        self, tenant_id: str, keys: Iterable[tuple[int, int]], seqs: Sequence[int]
    ) -> tuple[dict[tuple[int, int], bytes], dict[int, bytes]]:
        keys = list(keys)
        nodes: dict[tuple[int, int], bytes] = {}
        leaves: dict[int, bytes] = {}
        if not keys and not seqs:
            return nodes, leaves
        # One round trip: stored nodes and leaf hashes, told apart by level
        # (leaves come back as level -1).
        with self._read("reading tree hashes") as conn:
            rows = conn.execute(
                "SELECT t.level, t.idx, t.hash FROM tree_nodes t "
                "JOIN unnest(%s::int4[], %s::int8[]) AS k(l, i) ON t.level = k.l AND t.idx = k.i "
                "WHERE t.tenant_id = %s "
                "UNION ALL "
                "SELECT -1, e.seq, e.leaf_hash FROM entries e "
                "WHERE e.tenant_id = %s AND e.seq = ANY(%s)",
                ([k[0] for k in keys], [k[1] for k in keys], tenant_id, tenant_id, list(seqs)),
            ).fetchall()
        for level, idx, h in rows:
            if level == -1:
                leaves[idx] = h
            else:
                nodes[(level, idx)] = h
        return nodes, leaves

    def leaf_hashes_at(self, tenant_id: str, seqs: Sequence[int]) -> dict[int, bytes]:
        if not seqs:
            return {}
        with self._read("reading leaf hashes") as conn:
            rows = conn.execute(
                "SELECT seq, leaf_hash FROM entries WHERE tenant_id = %s AND seq = ANY(%s)",
                (tenant_id, list(seqs)),
            ).fetchall()
        return dict(rows)

    def nodes(
        self, tenant_id: str, keys: Iterable[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        keys = list(keys)
        if not keys:
            return {}
        with self._read("reading tree nodes") as conn:
            rows = conn.execute(
                "SELECT t.level, t.idx, t.hash FROM tree_nodes t "
                "JOIN unnest(%s::int4[], %s::int8[]) AS k(l, i) ON t.level = k.l AND t.idx = k.i "
                "WHERE t.tenant_id = %s",
                ([k[0] for k in keys], [k[1] for k in keys], tenant_id),
            ).fetchall()
        return {(level, idx): h for level, idx, h in rows}

    def put_nodes(self, tenant_id: str, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        if not nodes:
            return
        merged = {(level, idx): h for level, idx, h in nodes}
        self._exec("storing tree nodes", _PUT_NODES, _node_params(tenant_id, merged))

    def redact(self, tenant_id: str, seq: int) -> bool:
        with self._read("redacting an entry") as conn, conn.transaction():
            # The tenant's append lock first, as every write to `entries`
            # must (see _ensure_partitions); then its index mark, which an
            # indexer batch holds while it works: a batch that read the
            # entry before the redaction cannot write its text back after.
            if conn.execute(_LOCK_STATE, (tenant_id,)).fetchone() is None:
                return False
            mark = lock_mark(conn, tenant_id, wait=True)
            before = read_rows(conn, tenant_id, seq, seq + 1)
            if not before:
                return False
            conn.execute(
                "UPDATE entries SET payload = NULL, salt = NULL, ip = NULL, occurred_at = NULL"
                " WHERE tenant_id = %s AND seq = %s",
                (tenant_id, seq),
            )
            if mark is not None and seq < mark:
                # Indexed: its projection becomes that of the redacted row
                # (header terms stay, the IP and the payload's words go), the
                # same as an indexer reaching it now would write.
                remove_rows(conn, tenant_id, before)
                write_rows(conn, tenant_id, projection_rows(conn, tenant_id, seq, seq + 1))
        return True

    # -- the projection's bookkeeping -----------------------------------------
    def indexed_upto(self, tenant_id: str) -> int:
        """The tenant's index high-water mark: entries below it are in the
        projection; entries at or above it are matched from the ledger."""
        with self._read("reading the index mark") as conn:
            r = conn.execute(
                "SELECT next_seq FROM search_marks WHERE tenant_id = %s", (tenant_id,)
            ).fetchone()
        return 0 if r is None else int(r[0])

    def _behind(self) -> list[tuple[str, int, int]]:
        with self._read("reading the index marks") as conn:
            return pending(conn)

    def _nudge(self) -> None:
        if self._indexer is not None:
            self._indexer.notify()

    def wait_indexed(self, timeout: float = 60.0) -> bool:
        """Block until the projection covers every committed entry (this
        process's indexer or another's); False on timeout."""
        if isinstance(self._indexer, IndexerProcess) and not self._indexer.alive():
            raise StoreError("the indexer process has stopped")
        return wait_until_indexed(self._behind, self._nudge, timeout)

    def check_index(self, tenant_id: str) -> tuple[int, list[str]]:
        """(entries checked, problems): the projection against the ledger."""

        def rows(start: int, end: int) -> list[EntryRow]:
            with self._read("reading entries") as conn:
                return read_rows(conn, tenant_id, start, end)

        with self._read("checking the search index") as conn:
            return check_projection(conn, tenant_id, rows)

    def rebuild_index(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Start the projection over from the ledger and wait until it has
        caught up (this process's indexer or another's); `progress(done,
        total)` as it goes. Returns entries indexed."""
        with self._read("clearing the search index") as conn, conn.transaction():
            # TRUNCATE waits for indexer batches in flight and makes the
            # others wait; search meanwhile answers from the ledger.
            conn.execute("TRUNCATE search_postings, search_docs, search_terms, search_marks")
        total = sum(size - start for _, start, size in self._behind())

        def report(left: int) -> None:
            if progress is not None:
                progress(total - left, total)

        wait_until_indexed(self._behind, self._nudge, float("inf"), report)
        return total

    # -- checkpoints -------------------------------------------------------
    def add_checkpoint(self, cp: CheckpointRecord) -> None:
        self._exec(
            "storing a checkpoint",
            "INSERT INTO checkpoints (tenant_id, size, root, note, issued_at, key_id)"
            " VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (tenant_id, size) DO NOTHING",
            (cp.tenant_id, cp.size, cp.root, cp.note, cp.issued_at, cp.key_id),
        )

    def latest_checkpoint(self, tenant_id: str) -> CheckpointRecord | None:
        with self._read("reading checkpoints") as conn:
            r = conn.execute(
                "SELECT tenant_id, size, root, note, issued_at, key_id FROM checkpoints"
                " WHERE tenant_id = %s "
                "ORDER BY size DESC LIMIT 1",
                (tenant_id,),
            ).fetchone()
        return None if r is None else CheckpointRecord(*r)

    def get_checkpoint(self, tenant_id: str, size: int) -> CheckpointRecord | None:
        with self._read("reading checkpoints") as conn:
            r = conn.execute(
                "SELECT tenant_id, size, root, note, issued_at, key_id FROM checkpoints"
                " WHERE tenant_id = %s AND size = %s",
                (tenant_id, size),
            ).fetchone()
        return None if r is None else CheckpointRecord(*r)

    def list_checkpoints(self, tenant_id: str) -> list[CheckpointRecord]:
        with self._read("reading checkpoints") as conn:
            rows = conn.execute(
                "SELECT tenant_id, size, root, note, issued_at, key_id FROM checkpoints"
                " WHERE tenant_id = %s ORDER BY size",
                (tenant_id,),
            ).fetchall()
        return [CheckpointRecord(*r) for r in rows]

    # -- actor directory ---------------------------------------------------
    def upsert_actors(self, tenant_id: str, actors: Sequence[ActorRow]) -> None:
        if not actors:
            return
        now = int(time.time() * 1_000_000)
        # By hash, so that two threads' overlapping batches lock rows in one
        # order (create_actor_secrets says why).
        with self._read("updating the actor directory") as conn, conn.transaction():
            conn.cursor().executemany(
                _UPSERT_ACTOR,
                [
                    (tenant_id, a.actor_hash, a.actor_id, a.actor_type, a.name, a.email, now)
                    for a in sorted(actors, key=attrgetter("actor_hash"))
                ],
            )

    def get_actor(self, tenant_id: str, actor_hash: str) -> ActorRecord | None:
        with self._read("reading the actor directory") as conn:
            r = conn.execute(
                "SELECT actor_hash, actor_id, actor_type, name, email, erased_at FROM actors"
                " WHERE tenant_id = %s AND actor_hash = %s",
                (tenant_id, actor_hash),
            ).fetchone()
        return None if r is None else ActorRecord(*r)

    def erase_actor(self, tenant_id: str, actor_hash: str, erased_at: int) -> bool:
        # A tombstone, as in the SQLite store: the console can say "erased".
        n = self._exec(
            "erasing an actor",
            "UPDATE actors SET actor_id = NULL, actor_type = NULL, name = NULL, email = NULL,"
            " erased_at = %s WHERE tenant_id = %s AND actor_hash = %s AND erased_at IS NULL",
            (erased_at, tenant_id, actor_hash),
        )
        return bool(n)

    # -- API keys ----------------------------------------------------------
    # As in the SQLite store: scopes space-separated, the secret only as its
    # SHA-256. Looked up by key id alone, before the tenant is known (see
    # docs/scaling.md for what that means on Citus).
    @staticmethod
    def _api_key(r: Sequence[Any]) -> ApiKeyRecord:
        return ApiKeyRecord(r[0], r[1], r[2], tuple(r[3].split()), bytes(r[4]), r[5], r[6], r[7])

    def insert_api_key(self, key: ApiKeyRecord) -> None:
        try:
            self._exec(
                "storing an API key",
                "INSERT INTO api_keys (key_id, tenant_id, name, scopes, secret_hash, created_at,"
                " revoked_at, last_used_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    key.key_id, key.tenant_id, key.name, " ".join(key.scopes), key.secret_hash,
                    key.created_at, key.revoked_at, key.last_used_at,
                ),
            )  # fmt: skip
        except StoreError as exc:
            if isinstance(exc.__cause__, pgerrors.UniqueViolation):
                raise Conflict(f"API key id {key.key_id!r} already exists") from exc
            raise

    def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        with self._read("reading an API key") as conn:
            r = conn.execute(
                "SELECT key_id, tenant_id, name, scopes, secret_hash, created_at, revoked_at,"
                " last_used_at FROM api_keys WHERE key_id = %s",
                (key_id,),
            ).fetchone()
        return None if r is None else self._api_key(r)

    def list_api_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        with self._read("listing API keys") as conn:
            rows = conn.execute(
                "SELECT key_id, tenant_id, name, scopes, secret_hash, created_at, revoked_at,"
                " last_used_at FROM api_keys WHERE tenant_id = %s ORDER BY created_at, key_id",
                (tenant_id,),
            ).fetchall()
        return [self._api_key(r) for r in rows]

    def revoke_api_key(self, tenant_id: str, key_id: str, revoked_at: int) -> bool:
        n = self._exec(
            "revoking an API key",
            "UPDATE api_keys SET revoked_at = %s WHERE tenant_id = %s AND key_id = %s"
            " AND revoked_at IS NULL",
            (revoked_at, tenant_id, key_id),
        )
        return bool(n)

    def touch_api_key(self, key_id: str, used_at: int) -> None:
        self._exec(
            "recording API key use",
            "UPDATE api_keys SET last_used_at = %s WHERE key_id = %s",
            (used_at, key_id),
        )
