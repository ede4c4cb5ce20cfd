"""The embedded store: one SQLite file in WAL mode.

One writer thread owns the only write connection (see writer.py); readers
get a connection per thread, which WAL lets run beside the writer.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from kimonaudit.apikeys import ApiKeyRecord
from kimonaudit.core.merkle import CompactRange
from kimonaudit.core.records import (
    ENTRY_COLUMNS,
    ActorRecord,
    ActorRow,
    AppendPlan,
    CheckpointRecord,
    EntryRow,
    Receipt,
    TenantRecord,
    TreeState,
)
from kimonaudit.errors import ConfigError, Conflict, NotFound, StoreError
from kimonaudit.store.base import PlanBuilder, SearchSql
from kimonaudit.store.sqlite_console import SQLiteConsoleStore
from kimonaudit.store.sqlite_destinations import SQLiteDestinationStore
from kimonaudit.store.sqlite_retention import SQLiteRetentionStore
from kimonaudit.store.sqlite_schema import MIGRATIONS
from kimonaudit.store.writer import GroupCommitWriter

# SQL here is assembled from constant fragments and, for search, from
# predicates compiled with every value as a parameter (store/querysql.py).
_COLS = ", ".join(ENTRY_COLUMNS)
_INSERT_ENTRY = f"INSERT INTO entries ({_COLS}) VALUES ({', '.join('?' * len(ENTRY_COLUMNS))})"  # noqa: S608
_SELECT_ENTRY = f"SELECT {_COLS} FROM entries e"  # noqa: S608
_PAGE = 5_000
# Search (see the search section at the end): rows per export page, and the
# work an ordered walk may do, in thousands of VM steps, before giving way
# to an index lookup and a sort.
_SEARCH_PAGE = 1_000
_FILTER_BUDGET = 60
_TEXT_BUDGET = 400
_ROWS_PER_STATEMENT = 400  # 400 x 20 columns stays under SQLITE_MAX_VARIABLE_NUMBER (32766)


@functools.lru_cache(maxsize=32)
def _insert_entries(n: int) -> str:
    one = f"({', '.join('?' * len(ENTRY_COLUMNS))})"
    return f"INSERT INTO entries ({_COLS}) VALUES {', '.join([one] * n)}"  # noqa: S608


@functools.lru_cache(maxsize=32)
def _insert_fts(n: int) -> str:
    return f"INSERT INTO entries_fts (rowid, text) VALUES {', '.join(['(?, ?)'] * n)}"  # noqa: S608


_PUT_NODE = "INSERT OR REPLACE INTO tree_nodes (tenant_id, level, idx, hash) VALUES (?, ?, ?, ?)"
_API_KEY_COLS = "key_id, tenant_id, name, scopes, secret_hash, created_at, revoked_at, last_used_at"


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


def _connect(path: str, synchronous: str, cache_kib: int = WRITER_CACHE_KIB) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: an acknowledged append survives power loss, not just a crash.
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
    conn.execute(f"PRAGMA soft_heap_limit={SOFT_HEAP_LIMIT}")
    return conn


def _row(r: Sequence[object]) -> EntryRow:
    # Stored as INTEGER; the leaf needs a real bool.
    return EntryRow._make((*r[:7], bool(r[7]), *r[8:]))


class _WriteSession:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def begin(self) -> None:
        # IMMEDIATE takes the write lock now, so another process writing the
        # same file makes us wait here rather than fail at commit.
        self.conn.execute("BEGIN IMMEDIATE")

    def lock_state(self, tenant_id: str) -> TreeState:
        return _load_state(self.conn, tenant_id)

    def existing(self, tenant_id: str, event_ids: Sequence[str]) -> Mapping[str, Receipt]:
        found: dict[str, Receipt] = {}
        ids = list(event_ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            q = (
                "SELECT event_id, seq, recorded_at, leaf_hash FROM entries "  # noqa: S608
                f"WHERE tenant_id = ? AND event_id IN ({','.join('?' * len(chunk))})"
            )
            for eid, seq, rec, lh in self.conn.execute(q, (tenant_id, *chunk)):
                found[eid] = Receipt(eid, seq, rec, lh)
        return found

    def write(self, plan: AppendPlan) -> None:
        c = self.conn
        if plan.rows:
            first = c.execute("SELECT coalesce(max(rid), 0) FROM entries").fetchone()[0] + 1
            rows = plan.rows
            # Multi-row statements rather than executemany: sqlite3 drops
            # the GIL once per statement, and a thread preparing the next
            # batch would otherwise make this one wait a switch interval
            # (5 ms) to get it back after every single row.
            for i in range(0, len(rows), _ROWS_PER_STATEMENT):
                chunk = rows[i : i + _ROWS_PER_STATEMENT]
                c.execute(_insert_entries(len(chunk)), list(chain.from_iterable(chunk)))
                c.execute(
                    _insert_fts(len(chunk)),
                    [v for j, r in enumerate(chunk, first + i) for v in (j, r.search_text)],
                )
        if plan.nodes:
            c.executemany(
                _PUT_NODE,
                ((plan.tenant_id, lvl, idx, h) for lvl, idx, h in plan.nodes),
            )
        if plan.actors:
            _upsert_actors(c, plan.tenant_id, plan.actors)
        st = plan.state
        c.execute(
            "UPDATE tree_state SET size = ?, frontier = ?, last_recorded_at = ?, purged = ? "
            "WHERE tenant_id = ?",
            (st.size, st.tree.to_bytes(), st.last_recorded_at, st.purged, st.tenant_id),
        )

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()


def _load_state(conn: sqlite3.Connection, tenant_id: str) -> TreeState:
    row = conn.execute(
        "SELECT size, frontier, last_recorded_at, purged FROM tree_state WHERE tenant_id = ?",
        (tenant_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no tenant {tenant_id!r}")
    size, frontier, last, purged = row
    return TreeState(tenant_id, CompactRange.from_bytes(size, frontier), last, purged)


def _upsert_actors(conn: sqlite3.Connection, tenant_id: str, actors: Sequence[ActorRow]) -> None:
    now = int(time.time() * 1_000_000)
    conn.executemany(
        "INSERT INTO actors (tenant_id, actor_hash, actor_id, actor_type, name, email, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant_id, actor_hash) DO UPDATE SET"
        " actor_id = excluded.actor_id, actor_type = excluded.actor_type,"
        " name = coalesce(excluded.name, actors.name),"
        " email = coalesce(excluded.email, actors.email),"
        " updated_at = excluded.updated_at"
        # An erased actor's tombstone is never filled in again (issue 8).
        " WHERE actors.erased_at IS NULL",
        [(tenant_id, a.actor_hash, a.actor_id, a.actor_type, a.name, a.email, now) for a in actors],
    )


class SQLiteStore(SQLiteConsoleStore, SQLiteRetentionStore, SQLiteDestinationStore):
    dialect = "sqlite"

    def __init__(self, path: str | Path, synchronous: str = "FULL") -> None:
        self.path = str(path)
        self.url = f"sqlite:///{self.path}"
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA", "OFF"):
            raise ConfigError(f"bad synchronous setting {synchronous!r}")
        self._sync = synchronous.upper()
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
        self._writer = GroupCommitWriter(_WriteSession(wconn))
        self._closed = False

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
        """This thread's reader connection. A thread keeps one (small cache,
        READER_CACHE_KIB); it is closed when the thread ends, so a server's
        worker threads coming and going never pile up connections."""
        if self._closed:
            raise StoreError("the store is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, self._sync, READER_CACHE_KIB)
            self._local.conn = conn
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
        self._closed = True
        with self._readers_lock:
            for c in self._readers:
                c.close()
            self._readers.clear()

    def _write(self, sql: str, params: Sequence[object] = ()) -> int:
        """A small administrative write outside the append path, on a reader
        connection (SQLite serialises it against the writer thread)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = conn.execute(sql, params).rowcount
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return n

    # -- tenants -----------------------------------------------------------
    def insert_tenant(self, t: TenantRecord) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "INSERT INTO tenants VALUES (?, ?, ?, ?, ?, ?)",
                (t.id, t.name, t.plan, t.created_at, t.retention_months, int(t.legal_hold)),
            )
            conn.execute(
                "INSERT INTO tree_state VALUES (?, 0, ?, 0, 0)", (t.id, CompactRange().to_bytes())
            )
            conn.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            conn.execute("ROLLBACK")
            raise Conflict(f"tenant {t.id!r} already exists") from exc
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def get_tenant(self, tenant_id: str) -> TenantRecord | None:
        r = (
            self._conn()
            .execute("SELECT * FROM tenants WHERE tenant_id = ?", (tenant_id,))
            .fetchone()
        )
        return None if r is None else TenantRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5]))

    def list_tenants(self) -> list[TenantRecord]:
        rows = self._conn().execute("SELECT * FROM tenants ORDER BY created_at, tenant_id")
        return [TenantRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    def set_legal_hold(self, tenant_id: str, hold: bool) -> None:
        if not self._write(
            "UPDATE tenants SET legal_hold = ? WHERE tenant_id = ?", (int(hold), tenant_id)
        ):
            raise NotFound(f"no tenant {tenant_id!r}")

    # -- appends -----------------------------------------------------------
    def append(self, tenant_id: str, event_ids: Sequence[str], build: PlanBuilder) -> AppendPlan:
        return self._writer.submit(tenant_id, event_ids, build)

    # -- entries and tree --------------------------------------------------
    def tree_state(self, tenant_id: str) -> TreeState:
        return _load_state(self._conn(), tenant_id)

    def get_entry(self, tenant_id: str, seq: int) -> EntryRow | None:
        r = (
            self._conn()
            .execute(f"{_SELECT_ENTRY} WHERE tenant_id = ? AND seq = ?", (tenant_id, seq))
            .fetchone()
        )
        return None if r is None else _row(r)

    def get_entry_by_event_id(self, tenant_id: str, event_id: str) -> EntryRow | None:
        r = (
            self._conn()
            .execute(f"{_SELECT_ENTRY} WHERE tenant_id = ? AND event_id = ?", (tenant_id, event_id))
            .fetchone()
        )
        return None if r is None else _row(r)

    def iter_entries(
        self, tenant_id: str, start: int = 0, end: int | None = None
    ) -> Iterator[EntryRow]:
        conn = self._conn()
        hi = (1 << 62) if end is None else end
        # Keyset pages: no read transaction stays open across the whole scan,
        # so a long export or verify never pins the WAL.
        while True:
            rows = conn.execute(
                f"{_SELECT_ENTRY} WHERE tenant_id = ? AND seq >= ? AND seq < ? "
                "ORDER BY seq LIMIT ?",
                (tenant_id, start, hi, _PAGE),
            ).fetchall()
            for r in rows:
                yield _row(r)
            if len(rows) < _PAGE:
                return
            start = rows[-1][1] + 1

    def leaf_hashes(self, tenant_id: str, start: int, end: int) -> list[bytes]:
        return [
            h
            for (h,) in self._conn().execute(
                "SELECT leaf_hash FROM entries WHERE tenant_id = ? AND seq >= ? AND seq < ? "
                "ORDER BY seq",
                (tenant_id, start, end),
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
        for i in range(0, len(seqs), 500):
            chunk = list(seqs[i : i + 500])
            q = (
                "SELECT seq, leaf_hash FROM entries WHERE tenant_id = ? "  # noqa: S608
                f"AND seq IN ({','.join('?' * len(chunk))})"
            )
            out.update(conn.execute(q, (tenant_id, *chunk)).fetchall())
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
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                _PUT_NODE,
                [(tenant_id, lvl, idx, h) for lvl, idx, h in nodes],
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def search(
        self,
        tenant_id: str,
        where: str,
        params: Sequence[object],
        limit: int,
        before_seq: int | None = None,
    ) -> list[EntryRow]:
        sql = f"{_SELECT_ENTRY} WHERE e.tenant_id = ? AND ({where})"
        args: list[object] = [tenant_id, *params]
        if before_seq is not None:
            sql += " AND e.seq < ?"
            args.append(before_seq)
        sql += " ORDER BY e.seq DESC LIMIT ?"
        args.append(limit)
        return [_row(r) for r in self._conn().execute(sql, args)]

    def count(self, tenant_id: str, where: str, params: Sequence[object]) -> int:
        sql = f"SELECT count(*) FROM entries e WHERE e.tenant_id = ? AND ({where})"  # noqa: S608
        return int(self._conn().execute(sql, [tenant_id, *params]).fetchone()[0])

    def redact(self, tenant_id: str, seq: int) -> bool:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            r = conn.execute(
                "SELECT rid, search_text FROM entries WHERE tenant_id = ? AND seq = ?",
                (tenant_id, seq),
            ).fetchone()
            if r is None:
                conn.execute("ROLLBACK")
                return False
            conn.execute(
                "INSERT INTO entries_fts (entries_fts, rowid, text) VALUES ('delete', ?, ?)", r
            )
            conn.execute(
                "UPDATE entries SET payload = NULL, salt = NULL, ip = NULL, occurred_at = NULL,"
                " search_text = '' WHERE rid = ?",
                (r[0],),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return True

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
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            _upsert_actors(conn, tenant_id, actors)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

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

    # == search, export and histogram (owned by the search work) ==========
    # `where` and `rest_where` are compiled by kimonaudit.store.querysql from
    # constants only; every user value arrives as a bound parameter.
    # Within one tenant rid grows with seq (one writer appends in seq order),
    # so "newest first" is rid order too, and the full-text index, whose
    # rowid is rid, can hand matches over newest first without a sort.
    def _plan_is_ordered(self, conn: sqlite3.Connection, sql: str, args: Sequence[object]) -> bool:
        """Whether SQLite would answer `sql` in ORDER BY order straight from
        an index (no temporary B-tree, no materialised subquery)."""
        plans: dict[str, bool] = self.__dict__.setdefault("_plans", {})
        known = plans.get(sql)
        if known is None:
            details = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args)]
            known = not any("TEMP B-TREE" in d or "SUBQUERY" in d for d in details)
            if len(plans) > 512:
                plans.clear()
            plans[sql] = known
        return known

    @staticmethod
    def _within_budget(
        conn: sqlite3.Connection, sql: str, args: Sequence[object], budget: int
    ) -> list[Any] | None:
        """Rows of `sql`, or None if SQLite needs more than `budget` thousand
        virtual-machine steps (about 0.1 ms each here) to produce them."""
        spent = 0

        def tick() -> int:
            nonlocal spent
            spent += 1
            return int(spent > budget)

        conn.set_progress_handler(tick, 1000)
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            if spent > budget:
                return None
            raise
        finally:
            conn.set_progress_handler(None, 0)

    def _rid_below(self, conn: sqlite3.Connection, tenant_id: str, seq: int | None) -> int | None:
        """The rid bound equivalent to ``seq < `seq```: the rid of the first
        entry at or after it (None: no bound needed)."""
        if seq is None:
            return None
        r = conn.execute(
            "SELECT rid FROM entries WHERE tenant_id = ? AND seq >= ? ORDER BY seq LIMIT 1",
            (tenant_id, seq),
        ).fetchone()
        return None if r is None else int(r[0])

    def search_page(
        self, tenant_id: str, sql: SearchSql, limit: int, before_seq: int | None = None
    ) -> list[EntryRow]:
        conn = self._conn()
        where, params = sql.where, list(sql.params)
        bound, bound_args = ("", []) if before_seq is None else (" AND e.seq < ?", [before_seq])
        # 1. Walk an ordered index newest first and stop at `limit` matches:
        # instant when matches are common, hopeless when they are rare, so
        # it runs on a budget.
        if sql.text_match is not None:
            rid = self._rid_below(conn, tenant_id, before_seq)
            q = (
                f"{_SELECT_ENTRY} JOIN entries_fts f ON e.rid = f.rowid "
                f"WHERE entries_fts MATCH ?{'' if rid is None else ' AND f.rowid < ?'} "
                f"AND e.tenant_id = ? AND ({sql.rest_where}) ORDER BY f.rowid DESC LIMIT ?"
            )
            args = [sql.text_match, *([] if rid is None else [rid]), tenant_id,
                    *sql.rest_params, limit]  # fmt: skip
            budget = _TEXT_BUDGET
        else:
            rest = f"WHERE e.tenant_id = ? AND ({where}){bound} ORDER BY e.seq DESC LIMIT ?"
            args = [tenant_id, *params, *bound_args, limit]
            q = f"{_SELECT_ENTRY} {rest}"
            if not self._plan_is_ordered(conn, q, args):
                q = f"{_SELECT_ENTRY} INDEXED BY entries_seq {rest}"
            budget = _FILTER_BUDGET
        rows = self._within_budget(conn, q, args, budget)
        if rows is None:
            # 2. Rare matches: let the planner pick the most selective index
            # for the WHERE alone (the + keeps it from choosing one for the
            # order), sort the matching rids, then read just `limit` rows.
            q = (
                f"{_SELECT_ENTRY} WHERE e.rid IN (SELECT e.rid FROM entries e "  # noqa: S608
                f"WHERE e.tenant_id = ? AND ({where}){bound} ORDER BY +e.seq DESC LIMIT ?) "
                "ORDER BY e.seq DESC"
            )
            rows = conn.execute(q, [tenant_id, *params, *bound_args, limit]).fetchall()
        return [_row(r) for r in rows]

    def iter_search(
        self, tenant_id: str, sql: SearchSql, after_seq: int = -1, before_seq: int | None = None
    ) -> Iterator[EntryRow]:
        hi = (1 << 62) if before_seq is None else before_seq
        if sql.text_match is not None:
            yield from self._iter_text(tenant_id, sql, after_seq, hi)
            return
        rest = (
            f"WHERE e.tenant_id = ? AND ({sql.where}) AND e.seq > ? AND e.seq < ? "
            "ORDER BY e.seq LIMIT ?"
        )
        args: list[object] = [tenant_id, *sql.params, after_seq, hi, _SEARCH_PAGE]
        q = f"{_SELECT_ENTRY} {rest}"
        # A plan that sorts would sort every remaining match again for each
        # page; one walk along (tenant_id, seq) is linear instead.
        if not self._plan_is_ordered(self._conn(), q, args):
            q = f"{_SELECT_ENTRY} INDEXED BY entries_seq {rest}"
        lo = after_seq
        while True:
            args[-3] = lo
            rows = self._conn().execute(q, args).fetchall()
            for r in rows:
                yield _row(r)
            if len(rows) < _SEARCH_PAGE:
                return
            lo = rows[-1][1]

    def _iter_text(
        self, tenant_id: str, sql: SearchSql, after_seq: int, before_seq: int
    ) -> Iterator[EntryRow]:
        conn = self._conn()
        start = self._rid_below(conn, tenant_id, after_seq + 1)
        if start is None:
            return  # nothing after after_seq
        end = self._rid_below(conn, tenant_id, before_seq)
        lo, hi = start - 1, (1 << 62) if end is None else end
        q = (
            f"SELECT e.rid, {_COLS} FROM entries e JOIN entries_fts f ON e.rid = f.rowid "  # noqa: S608
            "WHERE entries_fts MATCH ? AND f.rowid > ? AND f.rowid < ? "
            f"AND e.tenant_id = ? AND ({sql.rest_where}) ORDER BY f.rowid LIMIT ?"
        )
        while True:
            rows = (
                self._conn()
                .execute(q, [sql.text_match, lo, hi, tenant_id, *sql.rest_params, _SEARCH_PAGE])
                .fetchall()
            )
            for r in rows:
                yield _row(r[1:])
            if len(rows) < _SEARCH_PAGE:
                return
            lo = rows[-1][0]

    def histogram(
        self, tenant_id: str, sql: SearchSql, width_us: int, origin_us: int
    ) -> list[tuple[int, int]]:
        q = (
            "SELECT (e.recorded_at - ?) / ? AS b, count(*) FROM entries e "  # noqa: S608
            f"WHERE e.tenant_id = ? AND ({sql.where}) GROUP BY b ORDER BY b"
        )
        args = [origin_us, width_us, tenant_id, *sql.params]
        return [(int(b), int(n)) for b, n in self._conn().execute(q, args)]

    def seq_at(self, tenant_id: str, recorded_at: int) -> int | None:
        # The first entry of the earliest time at or after `recorded_at`:
        # the smallest rid there is the smallest seq (see above).
        r = (
            self._conn()
            .execute(
                "SELECT seq FROM entries WHERE rid = (SELECT min(rid) FROM entries "
                "WHERE tenant_id = ?1 AND recorded_at = (SELECT min(recorded_at) FROM entries "
                "WHERE tenant_id = ?1 AND recorded_at >= ?2))",
                (tenant_id, recorded_at),
            )
            .fetchone()
        )
        return None if r is None else int(r[0])
