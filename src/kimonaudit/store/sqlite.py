"""The embedded store: one SQLite file in WAL mode.

One writer thread owns the only write connection (see writer.py); readers
get a connection per thread, which WAL lets run beside the writer.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

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
from kimonaudit.store.base import PlanBuilder
from kimonaudit.store.sqlite_schema import MIGRATIONS
from kimonaudit.store.writer import GroupCommitWriter

_COLS = ", ".join(ENTRY_COLUMNS)
_INSERT_ENTRY = f"INSERT INTO entries ({_COLS}) VALUES ({', '.join('?' * len(ENTRY_COLUMNS))})"
_SELECT_ENTRY = f"SELECT {_COLS} FROM entries e"
_PAGE = 5_000


def sqlite_path(url: str) -> str:
    """``sqlite:///rel.db`` -> rel.db, ``sqlite:////abs/x.db`` -> /abs/x.db."""
    parsed = urlparse(url)
    if parsed.scheme != "sqlite" or parsed.netloc not in ("", "localhost"):
        raise ConfigError(f"bad SQLite URL {url!r}: use sqlite:///path/to/file.db")
    path = unquote(parsed.path)
    if path.startswith("/"):
        path = path[1:] if not path.startswith("//") else path[1:]
    if not path:
        raise ConfigError(f"bad SQLite URL {url!r}: no file path")
    return path


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: an acknowledged append survives power loss, not just a crash.
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA cache_size=-65536")
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
                "SELECT event_id, seq, recorded_at, leaf_hash FROM entries "
                f"WHERE tenant_id = ? AND event_id IN ({','.join('?' * len(chunk))})"
            )
            for eid, seq, rec, lh in self.conn.execute(q, (tenant_id, *chunk)):
                found[eid] = Receipt(eid, seq, rec, lh)
        return found

    def write(self, plan: AppendPlan) -> None:
        c = self.conn
        if plan.rows:
            first = c.execute("SELECT coalesce(max(rid), 0) FROM entries").fetchone()[0] + 1
            c.executemany(_INSERT_ENTRY, plan.rows)
            c.executemany(
                "INSERT INTO entries_fts (rowid, text) VALUES (?, ?)",
                ((first + i, r.search_text) for i, r in enumerate(plan.rows)),
            )
        if plan.nodes:
            c.executemany(
                "INSERT OR REPLACE INTO tree_nodes (tenant_id, level, idx, hash) VALUES (?, ?, ?, ?)",
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
        " name = coalesce(excluded.name, actors.name), email = coalesce(excluded.email, actors.email),"
        " updated_at = excluded.updated_at, erased_at = NULL",
        [(tenant_id, a.actor_hash, a.actor_id, a.actor_type, a.name, a.email, now) for a in actors],
    )


class SQLiteStore:
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
        if self._closed:
            raise StoreError("the store is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, self._sync)
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

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
        r = self._conn().execute("SELECT * FROM tenants WHERE tenant_id = ?", (tenant_id,)).fetchone()
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
                f"{_SELECT_ENTRY} WHERE tenant_id = ? AND seq >= ? AND seq < ? ORDER BY seq LIMIT ?",
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
                "INSERT OR REPLACE INTO tree_nodes (tenant_id, level, idx, hash) VALUES (?, ?, ?, ?)",
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
        sql = f"SELECT count(*) FROM entries e WHERE e.tenant_id = ? AND ({where})"
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
            .execute("SELECT * FROM checkpoints WHERE tenant_id = ? AND size = ?", (tenant_id, size))
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
