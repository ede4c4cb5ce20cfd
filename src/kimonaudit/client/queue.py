"""Where recorded events wait for the sender: a SQLite spool file or memory.

Both keep events in the order they were recorded, under an increasing
sequence number, and hand them out head first. Only a delivered (or
dead-lettered) event leaves the queue, so a crash at any point leaves every
undelivered event in the spool; the server's idempotency on event ids makes
the resend after a restart harmless.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    status INTEGER,
    error TEXT NOT NULL,
    failed_at REAL NOT NULL
);
"""


class Item(NamedTuple):
    """One queued event: `body` is its JSON text, exactly as it is sent."""

    seq: int
    id: str
    body: str


@dataclass(frozen=True)
class DeadLetter:
    """An event the server refused (a 4xx other than 401/403/404/408/429):
    kept with the status and message so it can be fixed and requeued."""

    seq: int
    id: str
    body: str
    status: int | None
    error: str
    failed_at: float


class EventQueue(Protocol):
    durable: bool

    def put(self, items: Sequence[tuple[str, str]]) -> int:
        """Append (id, body) pairs atomically; returns the last sequence number."""
        ...

    def head(self, limit: int) -> list[Item]: ...
    def remove(self, items: Sequence[Item]) -> None: ...
    def dead_letter(self, item: Item, status: int | None, error: str) -> None: ...
    def dead_letters(self) -> list[DeadLetter]: ...
    def requeue_dead_letters(self) -> int: ...
    def count(self) -> int: ...
    def last_seq(self) -> int: ...
    def close(self) -> None: ...


class MemoryQueue:
    """Events in a deque: fast, and gone if the process dies."""

    durable = False

    def __init__(self) -> None:
        self._items: collections.deque[Item] = collections.deque()
        self._dead: list[DeadLetter] = []
        self._seq = 0
        self._lock = threading.Lock()

    def put(self, items: Sequence[tuple[str, str]]) -> int:
        with self._lock:
            for event_id, body in items:
                self._seq += 1
                self._items.append(Item(self._seq, event_id, body))
            return self._seq

    def head(self, limit: int) -> list[Item]:
        with self._lock:
            return [self._items[i] for i in range(min(limit, len(self._items)))]

    def remove(self, items: Sequence[Item]) -> None:
        gone = {it.seq for it in items}
        with self._lock:
            # Only the head is ever removed, so this stops after len(items) pops.
            while self._items and self._items[0].seq in gone:
                self._items.popleft()

    def dead_letter(self, item: Item, status: int | None, error: str) -> None:
        with self._lock:
            self._dead.append(DeadLetter(item.seq, item.id, item.body, status, error, time.time()))
            self._items = collections.deque(it for it in self._items if it.seq != item.seq)

    def dead_letters(self) -> list[DeadLetter]:
        with self._lock:
            return list(self._dead)

    def requeue_dead_letters(self) -> int:
        with self._lock:
            dead, self._dead = self._dead, []
            for d in dead:
                self._seq += 1
                self._items.append(Item(self._seq, d.id, d.body))
            return len(dead)

    def count(self) -> int:
        with self._lock:
            return len(self._items)

    def last_seq(self) -> int:
        with self._lock:
            return self._seq

    def close(self) -> None:
        pass


class SqliteSpool:
    """Events in a SQLite file (WAL). One connection, guarded by a lock, so
    recording threads and the sender never contend inside SQLite.

    `fsync=False` (synchronous=NORMAL) keeps every recorded event across a
    process crash or SIGKILL; `fsync=True` (FULL) also across power loss, at
    the cost of one fsync per `record()`.
    """

    durable = True

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        self._lock = threading.Lock()
        import sqlite3  # only a spooling client pays for it

        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._conn.execute("PRAGMA busy_timeout = 10000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute(f"PRAGMA synchronous = {'FULL' if fsync else 'NORMAL'}")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"spool {self.path} has schema version {version}; "
                    f"this client understands up to {SCHEMA_VERSION}"
                )
            self._conn.executescript(_SCHEMA)
            self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            self._conn.close()
            raise

    def put(self, items: Sequence[tuple[str, str]]) -> int:
        now = time.time()
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                last = 0
                for event_id, body in items:
                    last = (
                        conn.execute(
                            "INSERT INTO pending (id, body, recorded_at) VALUES (?, ?, ?)",
                            (event_id, body, now),
                        ).lastrowid
                        or last
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return last

    def head(self, limit: int) -> list[Item]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, id, body FROM pending ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [Item(*r) for r in rows]

    def remove(self, items: Sequence[Item]) -> None:
        if not items:
            return
        with self._lock:
            # Items are consecutive heads of the queue, so one range delete
            # suffices; the IN list guards against a gap left by a requeue.
            lo, hi = items[0].seq, items[-1].seq
            if hi - lo + 1 == len(items):
                self._conn.execute("DELETE FROM pending WHERE seq BETWEEN ? AND ?", (lo, hi))
            else:
                self._conn.executemany(
                    "DELETE FROM pending WHERE seq = ?", [(it.seq,) for it in items]
                )

    def dead_letter(self, item: Item, status: int | None, error: str) -> None:
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT OR REPLACE INTO dead_letter (seq, id, body, status, error, failed_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (item.seq, item.id, item.body, status, error, time.time()),
                )
                conn.execute("DELETE FROM pending WHERE seq = ?", (item.seq,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def dead_letters(self) -> list[DeadLetter]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, id, body, status, error, failed_at FROM dead_letter ORDER BY seq"
            ).fetchall()
        return [DeadLetter(*r) for r in rows]

    def requeue_dead_letters(self) -> int:
        now = time.time()
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.execute(
                    "INSERT INTO pending (id, body, recorded_at)"
                    " SELECT id, body, ? FROM dead_letter ORDER BY seq",
                    (now,),
                )
                conn.execute("DELETE FROM dead_letter")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return cur.rowcount

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM pending").fetchone()[0])

    def last_seq(self) -> int:
        with self._lock:
            # AUTOINCREMENT keeps the high-water mark in sqlite_sequence even
            # after the rows are gone, so numbers never repeat across restarts.
            row = self._conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'pending'"
            ).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._lock:
            self._conn.close()
