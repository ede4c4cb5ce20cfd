"""The embedded store: one SQLite file in WAL mode.

One writer thread owns the only write connection (see writer.py); readers
get a connection per thread, which WAL lets run beside the writer.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

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
from kimonaudit.store.sqlite_checkpoint import Checkpointer
from kimonaudit.store.sqlite_console import SQLiteConsoleStore
from kimonaudit.store.sqlite_destinations import SQLiteDestinationStore
from kimonaudit.store.sqlite_index import (
    SEQ_BITS,
    SEQ_MASK,
    Indexer,
    IndexerProcess,
    KeyedRow,
    NoIndexer,
    add_rows,
    check_projection,
    index_path,
    keyed_rows,
    ledger_pending,
    ledger_rows,
    remove_rows,
    rid_indexed,
    rid_of,
)
from kimonaudit.store.sqlite_retention import SQLiteRetentionStore
from kimonaudit.store.sqlite_schema import MIGRATIONS
from kimonaudit.store.sqlite_search import SQLiteSearch
from kimonaudit.store.writer import GroupCommitWriter, QueuedAppends, StaleState

log = logging.getLogger(__name__)

# SQL here is assembled from constant fragments and, for search, from
# predicates compiled with every value as a parameter (store/querysql.py).
# The ledger's columns after (rid, tenant_no): the EntryRow fields after
# (tenant_id, seq), which rid encodes.
_LEDGER_COLS = "rid, tenant_no, " + ", ".join(ENTRY_COLUMNS[2:])
_ENTRY_COLS = ", ".join(f"e.{c}" for c in ENTRY_COLUMNS[1:])
_SELECT_ENTRY = f"SELECT {_ENTRY_COLS} FROM ledger e"  # noqa: S608
_PAGE = 5_000
_ROWS_PER_STATEMENT = 1_000  # 1,000 x 19 columns stays under SQLITE_MAX_VARIABLE_NUMBER (32766)


@functools.lru_cache(maxsize=32)
def _insert_ledger(n: int) -> str:
    """INSERT of `n` EntryRows bound as they are, flattened: the rid and
    tenant number are computed from each row's seq in SQL, and the row's
    tenant id is bound but not used. So binding a chunk is one C-level
    flatten instead of per-row Python work."""
    one = f"({', '.join('?' * len(ENTRY_COLUMNS))})"
    # VALUES columns are column1..columnN in EntryRow order: column1 is the
    # tenant id (unused), column2 the seq.
    cols = ", ".join(f"column{i}" for i in range(3, len(ENTRY_COLUMNS) + 1))
    return (
        f"INSERT INTO ledger ({_LEDGER_COLS}) "  # noqa: S608
        f"SELECT ? + column2, ?, {cols} FROM (VALUES {', '.join([one] * n)})"
    )


_PUT_NODE = "INSERT OR REPLACE INTO tree_nodes (tenant_id, level, idx, hash) VALUES (?, ?, ?, ?)"
_NODES_PER_STATEMENT = 4_096  # x 3 values, under SQLITE_MAX_VARIABLE_NUMBER


@functools.lru_cache(maxsize=16)
def _put_nodes(n: int) -> str:
    """INSERT OR REPLACE of `n` (level, idx, hash) rows of one tenant."""
    return (
        "INSERT OR REPLACE INTO tree_nodes (tenant_id, level, idx, hash) "  # noqa: S608
        f"SELECT ?, column1, column2, column3 FROM (VALUES {', '.join(['(?, ?, ?)'] * n)})"
    )


def _node_chunks(
    nodes: Sequence[tuple[int, int, bytes]],
) -> Iterator[Sequence[tuple[int, int, bytes]]]:
    """`nodes` in chunks of power-of-two sizes: a few statements instead of
    one step per node (each of which lets go of the GIL, and must wait for
    it again while an appending thread holds it), from a dozen statement
    texts at most, so they stay prepared in the connection's cache."""
    i, n = 0, len(nodes)
    while i < n:
        size = min(_NODES_PER_STATEMENT, 1 << ((n - i).bit_length() - 1))
        yield nodes[i : i + size]
        i += size


_API_KEY_COLS = "key_id, tenant_id, name, scopes, secret_hash, created_at, revoked_at, last_used_at"


def _same_value(value: None) -> None:
    return value


def _bind_without_failed_lookups() -> None:
    """Make binding bytes, bool and None cheap, changing no bound value.

    sqlite3 binds exact int, float, str and bytearray directly; any other
    value (bytes, bool, None: eight of a ledger row's nineteen) goes through
    its adapter registry first, where a miss costs a failed attribute lookup
    on a type that formats an AttributeError message, about a microsecond
    per value. An adapter returning what sqlite3 would bind anyway (the
    bytes themselves, the bool's int, None) turns that into a dict hit.
    Registered only where the application has none, so an adapter of its
    own still wins, as it always did."""
    proto = sqlite3.PrepareProtocol
    if (bytes, proto) not in sqlite3.adapters:
        sqlite3.register_adapter(bytes, bytes)
    if (bool, proto) not in sqlite3.adapters:
        sqlite3.register_adapter(bool, int)
    if (type(None), proto) not in sqlite3.adapters:
        sqlite3.register_adapter(type(None), _same_value)


def sqlite_path(url: str) -> str:
    """``sqlite:///rel.db`` -> rel.db, ``sqlite:////abs/x.db`` -> /abs/x.db."""
    parsed = urlparse(url)
    if parsed.scheme != "sqlite" or parsed.netloc not in ("", "localhost"):
        raise ConfigError(f"bad SQLite URL {url!r}: use sqlite:///path/to/file.db")
    path = unquote(parsed.path)
    if path.startswith("/"):  # sqlite:///rel.db -> rel.db; sqlite:////abs.db -> /abs.db
        path = path[1:]
    if not path:
        raise ConfigError(f"bad SQLite URL {url!r}: no file path")
    return path


# Page caches (KiB). The writer's is large: group commits touch many tree
# pages. Each reader thread has its own connection, so theirs is small, and
# all of SQLite's memory in the process is capped by a soft heap limit
# (past it, SQLite recycles cache pages instead of growing).
WRITER_CACHE_KIB = 65_536
READER_CACHE_KIB = 8_192
SOFT_HEAP_LIMIT = 256 << 20
# The WAL is copied into the database file by a thread of its own
# (sqlite_checkpoint.Checkpointer) every CHECKPOINT_INTERVAL seconds, so a
# group commit does not wait for a checkpoint's copying and fsync; the
# committing connection checkpoints itself only once the WAL holds
# WAL_AUTOCHECKPOINT pages, which bounds the file while appends never pause
# (a checkpoint racing the writer never reaches the WAL's end, and the WAL
# restarts only when one does).
WAL_AUTOCHECKPOINT = 8_192
CHECKPOINT_INTERVAL = 0.2


def _connect(path: str, synchronous: str, cache_kib: int = WRITER_CACHE_KIB) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: an acknowledged append survives power loss, not just a crash.
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
    conn.execute(f"PRAGMA soft_heap_limit={SOFT_HEAP_LIMIT}")
    conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}")
    return conn


# Appends through the native extension's SQLiteBatch where it was built
# (tests switch it off to run the sqlite3 module's path).
NATIVE_WRITES = True


def _open_batch(path: str, synchronous: str) -> Any:
    """The append path's native connection, with _connect's settings; None
    without the extension."""
    make = getattr(native, "SQLiteBatch", None)
    if make is None:
        return None
    pragmas = [
        f"PRAGMA synchronous={synchronous}",
        "PRAGMA busy_timeout=30000",
        f"PRAGMA cache_size=-{WRITER_CACHE_KIB}",
        f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}",
    ]
    try:
        return make(path, pragmas)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open SQLite database {path}: {exc}") from exc


def _row(tenant_id: str, r: Sequence[object]) -> EntryRow:
    # Stored as INTEGER; the leaf needs a real bool. tuple.__new__ rather
    # than EntryRow(...): a scan (verify, export) builds one per row, and
    # the NamedTuple's own __new__ is a Python call.
    return tuple.__new__(EntryRow, (tenant_id, *r[:6], bool(r[6]), *r[7:]))


class _WriteSession:
    def __init__(self, conn: sqlite3.Connection, tenant_nos: dict[str, int]) -> None:
        self.conn = conn
        self.tenant_nos = tenant_nos

    def begin(self) -> None:
        # IMMEDIATE takes the write lock now, so another process writing the
        # same file makes us wait here rather than fail at commit.
        self.conn.execute("BEGIN IMMEDIATE")

    def lock_state(self, tenant_id: str) -> TreeState:
        state, tno = _load_state(self.conn, tenant_id)
        self.tenant_nos[tenant_id] = tno
        return state

    def existing(self, tenant_id: str, event_ids: Sequence[str]) -> Mapping[str, EntryRow]:
        queries = _existing_queries(self.tenant_nos[tenant_id], event_ids)
        return _by_event_id(tenant_id, (self.conn.execute(q, p) for q, p in queries))

    def write_all(self, plans: Sequence[AppendPlan]) -> None:
        for sql, params in _write_statements(plans, self.tenant_nos):
            self.conn.execute(sql, params)

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()


_LOAD_STATE = (
    "SELECT s.size, s.frontier, s.last_recorded_at, s.purged, t.tenant_no"
    " FROM tree_state s JOIN tenants t ON t.tenant_id = s.tenant_id WHERE s.tenant_id = ?"
)
# A remembered tenant state checked in the commit's own call: the
# extension's kimonaudit_expect fails the statement (and so the group,
# before anything is written) when the stored state is not that one.
_CHECK_STATE = (
    "SELECT kimonaudit_expect(size = ? AND frontier = ? AND last_recorded_at = ? AND purged = ?)"
    " FROM tree_state WHERE tenant_id = ?"
)
_STALE = "kimonaudit: stale tenant state"  # its message (kimonaudit/_native.c)
_UPSERT_ACTOR = (
    "INSERT INTO actors (tenant_id, actor_hash, actor_id, actor_type, name, email, updated_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, actor_hash) DO UPDATE SET"
    " actor_id = excluded.actor_id, actor_type = excluded.actor_type,"
    " name = coalesce(excluded.name, actors.name),"
    " email = coalesce(excluded.email, actors.email),"
    " updated_at = excluded.updated_at"
    # An erased actor's tombstone is never filled in again (issue 8).
    " WHERE actors.erased_at IS NULL"
)
_SAVE_STATE = (
    "UPDATE tree_state SET size = ?, frontier = ?, last_recorded_at = ?, purged = ? "
    "WHERE tenant_id = ?"
)


def _state_of(tenant_id: str, row: Sequence[Any] | None) -> tuple[TreeState, int]:
    if row is None:
        raise NotFound(f"no tenant {tenant_id!r}")
    size, frontier, last, purged, tno = row
    return TreeState(tenant_id, CompactRange.from_bytes(size, frontier), last, purged), tno


def _load_state(conn: sqlite3.Connection, tenant_id: str) -> tuple[TreeState, int]:
    return _state_of(tenant_id, conn.execute(_LOAD_STATE, (tenant_id,)).fetchone())


def _existing_queries(tno: int, event_ids: Sequence[str]) -> list[tuple[str, Sequence[object]]]:
    """The lookups of stored entries with these ids (idempotent retries),
    500 ids per statement."""
    ids = list(event_ids)
    return [
        (
            f"{_SELECT_ENTRY} WHERE e.tenant_no = ? "
            f"AND e.event_id IN ({','.join('?' * len(ids[i : i + 500]))})",
            (tno, *ids[i : i + 500]),
        )
        for i in range(0, len(ids), 500)
    ]


def _by_event_id(
    tenant_id: str, results: Iterable[Iterable[Sequence[object]]]
) -> dict[str, EntryRow]:
    found: dict[str, EntryRow] = {}
    for rows in results:
        for r in rows:
            row = _row(tenant_id, r)
            found[row.event_id] = row
    return found


def _actor_params(tenant_id: str, a: ActorRow, now: int) -> tuple[object, ...]:
    return (tenant_id, a.actor_hash, a.actor_id, a.actor_type, a.name, a.email, now)


def _upsert_actors(conn: sqlite3.Connection, tenant_id: str, actors: Sequence[ActorRow]) -> None:
    now = int(time.time() * 1_000_000)
    conn.executemany(_UPSERT_ACTOR, [_actor_params(tenant_id, a, now) for a in actors])


def _write_statements(
    plans: Sequence[AppendPlan], tenant_nos: Mapping[str, int]
) -> list[tuple[str, Sequence[object]]]:
    """The statements that write `plans` (built one after the other), as
    (sql, params): the ledger rows and tree nodes in multi-row statements,
    the directory rows that changed, each tenant's new state."""
    out: list[tuple[str, Sequence[object]]] = []
    by_tenant: dict[str, list[AppendPlan]] = {}
    for plan in plans:
        by_tenant.setdefault(plan.tenant_id, []).append(plan)
    for tenant_id, mine in by_tenant.items():
        tno = tenant_nos[tenant_id]
        base = tno << SEQ_BITS
        rows = [row for plan in mine for row in plan.rows]
        # Multi-row statements rather than executemany: sqlite3 drops the
        # GIL once per statement step, and a thread preparing the next
        # batch would otherwise make this one wait a switch interval (5 ms)
        # to get it back after every single row.
        for i in range(0, len(rows), _ROWS_PER_STATEMENT):
            chunk = rows[i : i + _ROWS_PER_STATEMENT]
            out.append((_insert_ledger(len(chunk)), [base, tno, *chain.from_iterable(chunk)]))
        nodes = [node for plan in mine for node in plan.nodes]
        for part in _node_chunks(nodes):
            out.append((_put_nodes(len(part)), [tenant_id, *chain.from_iterable(part)]))
        actors = [a for plan in mine for a in plan.actors]
        if actors:
            now = int(time.time() * 1_000_000)
            out.extend((_UPSERT_ACTOR, _actor_params(tenant_id, a, now)) for a in actors)
        st = mine[-1].state
        out.append(
            (_SAVE_STATE, (st.size, st.tree.to_bytes(), st.last_recorded_at, st.purged, tenant_id))
        )
    return out


class _BatchWriteSession:
    """The append path's session on a native SQLiteBatch connection: the
    statements of a group commit are queued and run a step at a time (BEGIN
    with the tenants' states; the writes with COMMIT), each step one call
    that lets go of the GIL once (kimonaudit/_native.c explains why). Other
    writer tasks keep the sqlite3 connection (`_WriteSession`)."""

    def __init__(self, batch: Any, tenant_nos: dict[str, int]) -> None:
        self.batch = batch
        self.tenant_nos = tenant_nos
        self.queued: list[tuple[str, Sequence[object]]] = []
        # Each tenant's state after this session's last commit. Usually the
        # only appender, it hands that out without reading it, and checks it
        # in the commit's own call (_CHECK_STATE): one GIL wait fewer a group.
        self._known: dict[str, TreeState] = {}
        self._states: dict[str, TreeState] = {}

    def _run(self, steps: list[tuple[str, Sequence[object]]]) -> list[Any]:
        queued, self.queued = self.queued, []
        try:
            results: list[Any] = self.batch.run(queued + steps)
        except sqlite3.Error as exc:
            self._known.clear()
            if _STALE in str(exc):
                raise StaleState(
                    "a tenant's state changed since this process last appended to it"
                ) from exc
            raise
        return results[len(queued) :]

    def begin(self) -> None:
        # IMMEDIATE takes the write lock now, so another process writing the
        # same file makes us wait here rather than fail at commit.
        self.queued.append(("BEGIN IMMEDIATE", ()))

    def lock_state(self, tenant_id: str) -> TreeState:
        known = self._known.get(tenant_id)
        if known is not None:
            params = (known.size, known.tree.to_bytes(), known.last_recorded_at, known.purged)
            self.queued.append((_CHECK_STATE, (*params, tenant_id)))
            return known
        (rows,) = self._run([(_LOAD_STATE, (tenant_id,))])
        state, tno = _state_of(tenant_id, rows[0] if rows else None)
        self.tenant_nos[tenant_id] = tno
        self._known[tenant_id] = state
        return state

    def existing(self, tenant_id: str, event_ids: Sequence[str]) -> Mapping[str, EntryRow]:
        queries = _existing_queries(self.tenant_nos[tenant_id], event_ids)
        return _by_event_id(tenant_id, self._run(queries))

    def write_all(self, plans: Sequence[AppendPlan]) -> None:
        self.queued.extend(_write_statements(plans, self.tenant_nos))
        self._states.update((p.tenant_id, p.state) for p in plans)

    def commit(self) -> None:
        self._run([("COMMIT", ())])
        self._known.update(self._states)
        self._states.clear()

    def rollback(self) -> None:
        self.queued.clear()
        self._known.clear()
        self._states.clear()
        if self.batch.in_transaction:
            self.batch.run([("ROLLBACK", ())])

    def close(self) -> None:
        self.batch.close()


class _IdxView:
    """A reader connection seen as the index file (its tables under idx.)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql.replace(" FROM indexed", " FROM idx.indexed"), params)


class SQLiteStore(
    QueuedAppends,
    SQLiteSearch,
    SQLiteConsoleStore,
    SQLiteRetentionStore,
    SQLiteDestinationStore,
):
    dialect = "sqlite"

    def __init__(
        self, path: str | Path, synchronous: str = "FULL", indexer: str = "thread"
    ) -> None:
        self.path = str(path)
        self.url = f"sqlite:///{self.path}"
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA", "OFF"):
            raise ConfigError(f"bad synchronous setting {synchronous!r}")
        self._sync = synchronous.upper()
        _bind_without_failed_lookups()
        parent = Path(self.path).resolve().parent
        if not parent.is_dir():
            raise ConfigError(f"cannot create database {self.path}: folder {parent} does not exist")
        try:
            wconn = _connect(self.path, self._sync)
            self._migrate(wconn)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open SQLite database {self.path}: {exc}") from exc
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._write_lock = threading.Lock()  # see _write
        self._tenant_nos: dict[str, int] = {}
        self._closed = False
        self.index_file = index_path(self.path)
        if indexer not in ("thread", "process", "off"):
            wconn.close()
            raise ConfigError(f"indexer must be 'thread', 'process' or 'off', not {indexer!r}")
        try:
            self._indexer: Indexer | IndexerProcess | NoIndexer
            if indexer == "thread":
                self._indexer = Indexer(self.index_file, self._pending, self._read_for_index)
            elif indexer == "process":
                self._indexer = IndexerProcess(self.path, self.index_file)
            else:  # a short-lived reader (verify's workers): another process indexes
                self._indexer = NoIndexer(self.index_file)
        except sqlite3.DatabaseError as exc:
            wconn.close()
            raise StoreError(f"cannot open the search index {self.index_file}: {exc}") from exc
        tenant_nos: dict[str, int] = {}
        tasks = _WriteSession(wconn, tenant_nos)
        batch = _open_batch(self.path, self._sync) if NATIVE_WRITES else None
        self._writer = GroupCommitWriter(
            tasks if batch is None else _BatchWriteSession(batch, tenant_nos), tasks=tasks
        )
        self._checkpointer = Checkpointer(
            _connect(self.path, self._sync, READER_CACHE_KIB), lambda: CHECKPOINT_INTERVAL
        )

    # -- plumbing ----------------------------------------------------------
    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        if conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is None:
            # A new file: let retention hand purged pages back (issue 8).
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            conn.execute("VACUUM")  # an empty file: instant; makes the mode stick under WAL
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)"
        )
        conn.execute("BEGIN IMMEDIATE")
        try:
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
                for stmt in sql.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?)",
                    (version, int(time.time() * 1_000_000)),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _conn(self) -> sqlite3.Connection:
        """This thread's reader connection, with the index file attached as
        ``idx``. A thread keeps one (small cache, READER_CACHE_KIB); it is
        closed when the thread ends, so a server's worker threads coming and
        going never pile up connections."""
        return self._thread_conn("conn", attach=True)

    def _admin(self) -> sqlite3.Connection:
        """This thread's connection for writes to the ledger file alone
        (tenants, actor secrets, checkpoints, settings). BEGIN IMMEDIATE
        takes the write lock of every attached file, so on a reader
        connection a new actor's secret waited for the indexer's transaction
        on the index file to end (up to busy_timeout, 30 s, for a stalled
        indexer), and with it the append that met the actor."""
        return self._thread_conn("admin", attach=False)

    def _thread_conn(self, name: str, attach: bool) -> sqlite3.Connection:
        if self._closed:
            raise StoreError("the store is closed")
        conn: sqlite3.Connection | None = getattr(self._local, name, None)
        if conn is None:
            conn = _connect(self.path, self._sync, READER_CACHE_KIB)
            if attach:
                conn.execute("ATTACH DATABASE ? AS idx", (self.index_file,))
            setattr(self._local, name, conn)
            with self._readers_lock:
                self._readers.append(conn)
            weakref.finalize(threading.current_thread(), self._drop_reader, conn)
        return conn

    def _drop_reader(self, conn: sqlite3.Connection) -> None:
        with self._readers_lock:
            if conn in self._readers:
                self._readers.remove(conn)
        with contextlib.suppress(sqlite3.Error):
            conn.close()

    def reader_connections(self) -> int:
        """Reader connections open now (one per live thread that read)."""
        with self._readers_lock:
            return len(self._readers)

    def writer_queue_depth(self) -> int:
        return self._writer.queue_depth()

    def close(self) -> None:
        if self._closed:
            return
        self._writer.close()
        self._checkpointer.close()
        self._indexer.close()
        self._closed = True
        with self._readers_lock:
            for c in self._readers:
                c.close()
            self._readers.clear()

    @contextlib.contextmanager
    def _admin_tx(self) -> Iterator[sqlite3.Connection]:
        """An administrative transaction outside the append path, on this
        thread's `_admin` connection (SQLite serialises it against the
        writer thread): committed if the block ends, rolled back if it
        raises. Not nestable (one connection, one transaction).

        Threads of this process take turns on a lock first. Waiting for
        SQLite's write lock instead means its busy handler, which sleeps
        between tries in steps growing to 100 ms: a fresh server meeting
        new actors on forty worker threads at once (one secret each) had
        them sleep through each other's commits, and appends waited more
        than a second."""
        with self._write_lock:
            conn = self._admin()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _write(self, sql: str, params: Sequence[object] = ()) -> int:
        """One statement in its own `_admin_tx`; the rows it changed."""
        with self._admin_tx() as conn:
            return int(conn.execute(sql, params).rowcount)

    # -- tenants -----------------------------------------------------------
    def insert_tenant(self, t: TenantRecord) -> None:
        try:
            with self._admin_tx() as conn:
                conn.execute(
                    "INSERT INTO tenants (tenant_id, name, plan, created_at, retention_months,"
                    " legal_hold, tenant_no) VALUES (?, ?, ?, ?, ?, ?,"
                    " (SELECT coalesce(max(tenant_no), 0) + 1 FROM tenants))",
                    (t.id, t.name, t.plan, t.created_at, t.retention_months, int(t.legal_hold)),
                )
                conn.execute(
                    "INSERT INTO tree_state VALUES (?, 0, ?, 0, 0)",
                    (t.id, CompactRange().to_bytes()),
                )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"tenant {t.id!r} already exists") from exc

    def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        r = (
            self._conn()
            .execute(
                "SELECT tenant_id, name, plan, created_at, retention_months, legal_hold"
                " FROM tenants WHERE tenant_id = ?",
                (tenant_id,),
            )
            .fetchone()
        )
        return None if r is None else TenantRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5]))

    def list_tenants(self) -> list[TenantRecord]:
        rows = self._conn().execute(
            "SELECT tenant_id, name, plan, created_at, retention_months, legal_hold"
            " FROM tenants ORDER BY created_at, tenant_id"
        )
        return [TenantRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    def set_legal_hold(self, tenant_id: str, hold: bool) -> None:
        if not self._write(
            "UPDATE tenants SET legal_hold = ? WHERE tenant_id = ?", (int(hold), tenant_id)
        ):
            raise NotFound(f"no tenant {tenant_id!r}")

    # -- the ledger ----------------------------------------------------------
    def tenant_no(self, tenant_id: str) -> int:
        """The tenant's number (the high bits of its rids); NotFound if none."""
        tno = self._tenant_nos.get(tenant_id)
        if tno is None:
            r = (
                self._conn()
                .execute("SELECT tenant_no FROM tenants WHERE tenant_id = ?", (tenant_id,))
                .fetchone()
            )
            if r is None:
                raise NotFound(f"no tenant {tenant_id!r}")
            tno = int(r[0])
            self._tenant_nos[tenant_id] = tno
        return tno

    def _rid(self, tenant_id: str, seq: int) -> int:
        return rid_of(self.tenant_no(tenant_id), seq)

    def tree_state(self, tenant_id: str) -> TreeState:
        return _load_state(self._conn(), tenant_id)[0]

    def get_entry(self, tenant_id: str, seq: int) -> EntryRow | None:
        if not 0 <= seq <= SEQ_MASK:
            return None
        r = (
            self._conn()
            .execute(f"{_SELECT_ENTRY} WHERE e.rid = ?", (self._rid(tenant_id, seq),))
            .fetchone()
        )
        return None if r is None else _row(tenant_id, r)

    def get_entry_by_event_id(self, tenant_id: str, event_id: str) -> EntryRow | None:
        r = (
            self._conn()
            .execute(
                f"{_SELECT_ENTRY} WHERE e.tenant_no = ? AND e.event_id = ?",
                (self.tenant_no(tenant_id), event_id),
            )
            .fetchone()
        )
        return None if r is None else _row(tenant_id, r)

    def _span(self, tenant_id: str, start: int, end: int | None) -> tuple[int, int]:
        """The rid range [lo, hi) of seqs [start, end) of the tenant."""
        base = self.tenant_no(tenant_id) << SEQ_BITS
        start = min(max(start, 0), SEQ_MASK + 1)
        end = SEQ_MASK + 1 if end is None else min(max(end, 0), SEQ_MASK + 1)
        return base + start, base + end

    def iter_entries(
        self, tenant_id: str, start: int = 0, end: int | None = None
    ) -> Iterator[EntryRow]:
        lo, hi = self._span(tenant_id, start, end)
        conn = self._conn()
        # Keyset pages: no read transaction stays open across the whole scan,
        # so a long export or verify never pins the WAL.
        while True:
            rows = conn.execute(
                f"SELECT e.rid, {_ENTRY_COLS} FROM ledger e WHERE e.rid >= ? AND e.rid < ? "  # noqa: S608
                "ORDER BY e.rid LIMIT ?",
                (lo, hi, _PAGE),
            ).fetchall()
            new = tuple.__new__
            for r in rows:
                # _row(tenant_id, r[1:]), inline: once per row of a scan.
                yield new(EntryRow, (tenant_id, *r[1:7], bool(r[7]), *r[8:]))
            if len(rows) < _PAGE:
                return
            lo = rows[-1][0] + 1

    def scans_natively(self) -> bool:
        # A file only: the C scanner opens its own read-only connection.
        return native is not None and os.path.isfile(self.path)

    def scan_ledger(self, tenant_id: str, start: int, end: int | None) -> LedgerScan | None:
        if native is None or not self.scans_natively():
            return None
        lo, hi = self._span(tenant_id, start, end)
        try:
            found = native.scan(self.path, lo, hi, json_string(tenant_id))
        except OSError as exc:
            raise StoreError(str(exc)) from exc
        return None if found is None else LedgerScan(*found)

    def leaf_hashes(self, tenant_id: str, start: int, end: int) -> list[bytes]:
        lo, hi = self._span(tenant_id, start, end)
        return [
            h
            for (h,) in self._conn().execute(
                "SELECT leaf_hash FROM ledger WHERE rid >= ? AND rid < ? ORDER BY rid", (lo, hi)
            )
        ]

    def tree_hashes(
        self, tenant_id: str, keys: Iterable[tuple[int, int]], seqs: Sequence[int]
    ) -> tuple[dict[tuple[int, int], bytes], dict[int, bytes]]:
        # In-process: two local reads cost what one would.
        return self.nodes(tenant_id, keys), self.leaf_hashes_at(tenant_id, seqs)

    def leaf_hashes_at(self, tenant_id: str, seqs: Sequence[int]) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        conn = self._conn()
        base = self.tenant_no(tenant_id) << SEQ_BITS
        for i in range(0, len(seqs), 500):
            chunk = [base | s for s in seqs[i : i + 500] if 0 <= s <= SEQ_MASK]
            q = (
                "SELECT rid, leaf_hash FROM ledger "  # noqa: S608
                f"WHERE rid IN ({','.join('?' * len(chunk))})"
            )
            out.update((rid & SEQ_MASK, h) for rid, h in conn.execute(q, chunk))
        return out

    def nodes(
        self, tenant_id: str, keys: Iterable[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        out: dict[tuple[int, int], bytes] = {}
        conn = self._conn()
        for level, idx in keys:
            r = conn.execute(
                "SELECT hash FROM tree_nodes WHERE tenant_id = ? AND level = ? AND idx = ?",
                (tenant_id, level, idx),
            ).fetchone()
            if r is not None:
                out[(level, idx)] = r[0]
        return out

    def put_nodes(self, tenant_id: str, nodes: Sequence[tuple[int, int, bytes]]) -> None:
        with self._admin_tx() as conn:
            conn.executemany(_PUT_NODE, [(tenant_id, lvl, idx, h) for lvl, idx, h in nodes])

    def redact(self, tenant_id: str, seq: int) -> bool:
        row = self.get_entry(tenant_id, seq)
        if row is None:
            return False
        rid = self._rid(tenant_id, seq)
        # An indexer batch that read the row before this redaction would put
        # its text back after it: let the index catch up first.
        self._indexer.wait()
        conn = self._conn()
        # The index file first, while the payload still gives the document to
        # delete: a crash between the two leaves an entry that search no
        # longer finds by its (still present) text, never an index that
        # holds text the ledger has dropped.
        conn.execute("BEGIN IMMEDIATE")
        try:
            tno = self.tenant_no(tenant_id)
            if rid_indexed(conn, tno, seq):
                # Out with the payload's words, back with the header's: a
                # redacted entry is still found by its action, actor, target.
                remove_rows(conn, tno, [row], schema="idx.")
                kept = row._replace(payload=None, salt=None, ip=None, occurred_at=None)
                add_rows(conn, tno, [kept], schema="idx.")
            conn.execute(
                "UPDATE ledger SET payload = NULL, salt = NULL, ip = NULL, occurred_at = NULL"
                " WHERE rid = ?",
                (rid,),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return True

    # -- the projection's bookkeeping -----------------------------------------
    def _pending(self, index_conn: sqlite3.Connection) -> list[tuple[int, int, int]]:
        return ledger_pending(self._conn(), index_conn)

    def _read_for_index(self, tenant_no: int, start: int, end: int) -> list[KeyedRow]:
        return keyed_rows(self._conn(), tenant_no, start, end)

    def check_index(self, tenant_id: str) -> tuple[int, list[str]]:
        """(entries checked, problems): the projection against the ledger."""
        tno = self.tenant_no(tenant_id)
        purged = self.tree_state(tenant_id).purged
        conn = self._conn()
        # One read transaction: the mark and the projection rows from one
        # snapshot of the index file. Read one by one, a batch the indexer
        # committed in between would show rows above the mark read first,
        # and they would be reported as stray.
        conn.execute("BEGIN")
        try:
            return check_projection(conn, tno, lambda a, b: ledger_rows(conn, tno, a, b), purged)
        finally:
            conn.execute("COMMIT")

    def rebuild_index(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Start the projection over from the ledger and wait until it has
        caught up; `progress(done, total)` as it goes. Returns entries indexed."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM idx.postings")
            conn.execute("DELETE FROM idx.terms")
            conn.execute("DELETE FROM idx.indexed")
            conn.execute("INSERT INTO idx.entries_fts (entries_fts) VALUES ('delete-all')")
            # Term ids cached by any indexer (thread or process) are void now.
            conn.execute(
                "INSERT INTO idx.index_meta VALUES ('epoch', 1) "
                "ON CONFLICT (key) DO UPDATE SET value = value + 1"
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        total = sum(size - start for _, start, size in self._pending_now())
        while True:
            left = sum(size - start for _, start, size in self._pending_now())
            if progress is not None:
                progress(total - left, total)
            if left == 0:
                return total
            self._indexer.notify()
            time.sleep(0.05)

    def _pending_now(self) -> list[tuple[int, int, int]]:
        conn = self._conn()
        return ledger_pending(conn, _IdxView(conn))

    def wait_indexed(self, timeout: float = 60.0) -> bool:
        """Block until the projection covers every committed entry."""
        return self._indexer.wait(timeout)

    def indexed_upto(self, tenant_id: str) -> int:
        """The tenant's index high-water mark: entries below it are in the
        projection; entries at or above it are matched from the ledger."""
        r = (
            self._conn()
            .execute(
                "SELECT next_seq FROM idx.indexed WHERE tenant_no = ?", (self.tenant_no(tenant_id),)
            )
            .fetchone()
        )
        return 0 if r is None else int(r[0])

    # -- checkpoints -------------------------------------------------------
    def add_checkpoint(self, cp: CheckpointRecord) -> None:
        self._write(
            "INSERT OR IGNORE INTO checkpoints VALUES (?, ?, ?, ?, ?, ?)",
            (cp.tenant_id, cp.size, cp.root, cp.note, cp.issued_at, cp.key_id),
        )

    @staticmethod
    def _cp(r: Sequence[object]) -> CheckpointRecord:
        return CheckpointRecord(*r)  # type: ignore[arg-type]

    def latest_checkpoint(self, tenant_id: str) -> CheckpointRecord | None:
        r = (
            self._conn()
            .execute(
                "SELECT * FROM checkpoints WHERE tenant_id = ? ORDER BY size DESC LIMIT 1",
                (tenant_id,),
            )
            .fetchone()
        )
        return None if r is None else self._cp(r)

    def get_checkpoint(self, tenant_id: str, size: int) -> CheckpointRecord | None:
        r = (
            self._conn()
            .execute(
                "SELECT * FROM checkpoints WHERE tenant_id = ? AND size = ?", (tenant_id, size)
            )
            .fetchone()
        )
        return None if r is None else self._cp(r)

    def list_checkpoints(self, tenant_id: str) -> list[CheckpointRecord]:
        rows = self._conn().execute(
            "SELECT * FROM checkpoints WHERE tenant_id = ? ORDER BY size", (tenant_id,)
        )
        return [self._cp(r) for r in rows]

    # -- actor directory ---------------------------------------------------
    def upsert_actors(self, tenant_id: str, actors: Sequence[ActorRow]) -> None:
        with self._admin_tx() as conn:
            _upsert_actors(conn, tenant_id, actors)

    def get_actor(self, tenant_id: str, actor_hash: str) -> ActorRecord | None:
        r = (
            self._conn()
            .execute(
                "SELECT actor_hash, actor_id, actor_type, name, email, erased_at FROM actors"
                " WHERE tenant_id = ? AND actor_hash = ?",
                (tenant_id, actor_hash),
            )
            .fetchone()
        )
        return None if r is None else ActorRecord(*r)

    def erase_actor(self, tenant_id: str, actor_hash: str, erased_at: int) -> bool:
        # A tombstone, not a deletion: the console can then say "erased"
        # instead of "unknown", and nothing identifying is left in it.
        return bool(
            self._write(
                "UPDATE actors SET actor_id = NULL, actor_type = NULL, name = NULL, email = NULL,"
                " erased_at = ? WHERE tenant_id = ? AND actor_hash = ? AND erased_at IS NULL",
                (erased_at, tenant_id, actor_hash),
            )
        )

    # == API keys (owned by the HTTP API work; see kimonaudit.apikeys) =====
    # Scopes are stored space-separated; the secret only as its SHA-256.
    @staticmethod
    def _api_key(r: Sequence[Any]) -> ApiKeyRecord:
        return ApiKeyRecord(r[0], r[1], r[2], tuple(r[3].split()), bytes(r[4]), *r[5:8])

    def insert_api_key(self, key: ApiKeyRecord) -> None:
        row = (key.key_id, key.tenant_id, key.name, " ".join(key.scopes), key.secret_hash)
        try:
            self._write(
                f"INSERT INTO api_keys ({_API_KEY_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                (*row, key.created_at, key.revoked_at, key.last_used_at),
            )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"API key id {key.key_id!r} already exists") from exc

    def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        sql = f"SELECT {_API_KEY_COLS} FROM api_keys WHERE key_id = ?"  # noqa: S608
        r = self._conn().execute(sql, (key_id,)).fetchone()
        return None if r is None else self._api_key(r)

    def list_api_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        sql = f"SELECT {_API_KEY_COLS} FROM api_keys WHERE tenant_id = ?"  # noqa: S608
        sql += " ORDER BY created_at, key_id"
        return [self._api_key(r) for r in self._conn().execute(sql, (tenant_id,))]

    def revoke_api_key(self, tenant_id: str, key_id: str, revoked_at: int) -> bool:
        sql = (
            "UPDATE api_keys SET revoked_at = ? WHERE tenant_id = ? AND key_id = ?"
            " AND revoked_at IS NULL"
        )
        return bool(self._write(sql, (revoked_at, tenant_id, key_id)))

    def touch_api_key(self, key_id: str, used_at: int) -> None:
        self._write("UPDATE api_keys SET last_used_at = ? WHERE key_id = ?", (used_at, key_id))
