"""The SQLite search projection: its own file beside the ledger, written by
one indexer thread in large sorted batches.

The acknowledging transaction writes the ledger only (store/sqlite.py). The
indexer reads what was committed since its high-water mark, derives each
entry's posting terms and free-text document (kimonaudit.core.projection)
and writes them to ``<database>-index`` in one transaction per batch, the
mark included, so a crash at any point resumes from the last batch that
committed. Being another file, its writes never wait for the ledger's write
lock, and the SQLite code of both runs on both cores.

Nothing here is the truth: deleting the index file loses nothing (it is
rebuilt on the next open), and `verify --index` compares it with the ledger.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

from kimonaudit.core.projection import (
    PROJECTION_COLUMNS,
    entry_terms,
    entry_text,
    project,
)
from kimonaudit.core.records import EntryRow
from kimonaudit.store.indexer_child import INDEX_SMALL, linger
from kimonaudit.store.native import native
from kimonaudit.store.sqlite_checkpoint import Checkpointer
from kimonaudit.store.sqlite_schema import INDEX_SCHEMA, INDEX_VERSION

log = logging.getLogger(__name__)

SEQ_BITS = 40
SEQ_MASK = (1 << SEQ_BITS) - 1
# Entries per indexer transaction: large enough that postings go in as long
# sorted runs, small enough that the index lags a busy log by well under a
# second.
INDEX_BATCH = 20_000
_IDLE_WAIT = 0.25  # seconds between looks when no local commit woke it
_ROWS_PER_STATEMENT = 500
INDEX_PAGE_SIZE = 16_384
# The index connection's page cache (KiB). With SQLite's 2 MiB default, a
# batch's postings inserts and FTS5 merges into a large index spilled dirty
# pages mid-transaction and read others back from the file (20% of the
# indexer's samples at 1M entries).
INDEX_CACHE_KIB = 32_768
# The indexer process's checkpointer (run_process): how often it copies the
# index file's WAL, and the WAL size (16 KiB pages, 64 MiB) past which the
# indexer's own commit copies it, when the thread has not kept up. Small
# and often: when the indexer's commits copied 4,000 pages at a time, that
# writeback delayed the ledger's own fsyncs, and single-event p99 at 1,500
# requests/s went from 15-25 ms to 35-660 ms (docs/scaling.md); every 0.2 s
# it stayed at 9-11 ms, every 1 s 12-13 ms (2026-12-08).
INDEX_CHECKPOINT_INTERVAL = 0.2
INDEX_WAL_AUTOCHECKPOINT = 4_096
# FTS5 merges 16 segments of a level instead of 4: each document is
# rewritten about half as often as the index grows (the indexer's cost per
# entry at 1M entries 24-29 -> 17-19 us), for a few more segments per query
# (the 10M search run in docs/scaling.md).
FTS_AUTOMERGE = 16


def rid_of(tenant_no: int, seq: int) -> int:
    return (tenant_no << SEQ_BITS) | seq


def index_path(ledger_path: str) -> str:
    return ledger_path + "-index"


def open_index(path: str, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """The index file, created and brought to INDEX_VERSION if needed."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    # Pages of 16 KiB for a new file (an existing one keeps its size): the
    # indexer writes long sorted runs, and a quarter as many pages cost it
    # about a third less system time (docs/scaling.md).
    conn.execute(f"PRAGMA page_size={INDEX_PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode=WAL")
    # NORMAL: a power cut may lose the newest index batch, which the indexer
    # then writes again from the ledger; the ledger itself stays FULL.
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=30000")
    # Each multi-row insert of a batch keeps a statement journal; in files
    # that was about half of the indexer's page writes and system time.
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute(f"PRAGMA cache_size=-{INDEX_CACHE_KIB}")
    conn.execute("BEGIN IMMEDIATE")
    try:
        for stmt in INDEX_SCHEMA.split(";"):
            if stmt.strip():
                conn.execute(stmt)
        row = conn.execute("SELECT value FROM index_meta WHERE key = 'version'").fetchone()
        if row is None:
            conn.execute("INSERT INTO index_meta VALUES ('version', ?)", (INDEX_VERSION,))
        elif row[0] != INDEX_VERSION:
            _clear(conn)
            conn.execute("UPDATE index_meta SET value = ? WHERE key = 'version'", (INDEX_VERSION,))
        # A persistent FTS5 setting, so every writer of the file uses it;
        # written only when it differs (a write makes other connections
        # reload the table's configuration).
        r = conn.execute("SELECT v FROM entries_fts_config WHERE k = 'automerge'").fetchone()
        if r is None or r[0] != FTS_AUTOMERGE:
            conn.execute(
                "INSERT INTO entries_fts (entries_fts, rank) VALUES ('automerge', ?)",
                (FTS_AUTOMERGE,),
            )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return conn


def _clear(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM postings")
    conn.execute("DELETE FROM terms")
    conn.execute("DELETE FROM indexed")
    conn.execute("INSERT INTO entries_fts (entries_fts) VALUES ('delete-all')")


#: A ledger row as the indexer reads it: ProjectionRow's columns with the
#: rid (tenant number and seq, what postings and documents are keyed by) in
#: place of the seq.
KeyedRow = tuple[Any, ...]


@dataclass
class Batch:
    tenant_no: int
    start: int
    end: int  # the high-water mark after this batch (rows may have gaps)
    rows: list[KeyedRow]


class TermCache:
    """(tenant_no, field, value) -> term id, for terms known to be stored."""

    def __init__(self, limit: int = 500_000) -> None:
        self.ids: dict[tuple[int, int, str], int] = {}
        self.limit = limit
        self.epoch = -1  # index_meta 'epoch' the ids belong to (a rebuild bumps it)

    def check_epoch(self, conn: sqlite3.Connection) -> None:
        r = conn.execute("SELECT value FROM index_meta WHERE key = 'epoch'").fetchone()
        epoch = 0 if r is None else int(r[0])
        if epoch != self.epoch:
            self.ids.clear()
            self.epoch = epoch

    def add(
        self, conn: sqlite3.Connection, keys: Sequence[tuple[int, int, str]], counts: Sequence[int]
    ) -> None:
        """Add `counts` to the terms' counts, numbering (inserting) the new
        ones, so that `ids` holds every key afterwards.

        A few multi-row statements rather than one per term: sqlite3 drops
        and retakes the interpreter lock on every step, and a batch of a
        busy log meets thousands of terms (most target ids are new)."""
        ids = self.ids
        if len(ids) + len(keys) > self.limit:
            ids.clear()
        known: list[int] = []
        new: list[tuple[int, int, str, int]] = []
        for key, n in zip(keys, counts, strict=True):
            term = ids.get(key)
            if term is None:
                new.append((*key, n))
            else:
                known += (term, n)
        _execute_flat(conn, _add_counts, known, 2)
        for i in range(0, len(new), _ROWS_PER_STATEMENT):
            part = new[i : i + _ROWS_PER_STATEMENT]
            for term, tenant_no, field, value in conn.execute(
                _upsert_terms(len(part)), list(chain.from_iterable(part))
            ):
                ids[(tenant_no, field, value)] = term


def write_batch(conn: sqlite3.Connection, terms: TermCache, batch: Batch) -> bool:
    """Index one batch in one transaction; False if another indexer (another
    process on the same files) got there first."""
    tno = batch.tenant_no
    groups, texts = project(batch.rows)
    docs = list(chain.from_iterable(zip([row[0] for row in batch.rows], texts, strict=True)))
    end = batch.end
    conn.execute("BEGIN IMMEDIATE")
    try:
        r = conn.execute("SELECT next_seq FROM indexed WHERE tenant_no = ?", (tno,)).fetchone()
        if (0 if r is None else r[0]) != batch.start:
            conn.execute("ROLLBACK")
            return False
        terms.check_epoch(conn)
        keys = [(tno, field, value) for field, value in groups]
        runs_of = list(groups.values())
        try:
            terms.add(conn, keys, [len(r) for r in runs_of])
        except BaseException:
            terms.ids.clear()  # ids inserted in a rolled-back transaction are not stored
            raise
        ids = terms.ids
        # Postings go in sorted by (term, rid): by term here, by rid within.
        runs = sorted(zip([ids[k] for k in keys], runs_of, strict=True), key=itemgetter(0))
        flat = _pair_runs(runs)
        _execute_flat(conn, _insert_postings, flat, 2)
        _execute_flat(conn, _insert_docs, docs, 2)
        conn.execute(
            "INSERT INTO indexed (tenant_no, next_seq) VALUES (?, ?) "
            "ON CONFLICT (tenant_no) DO UPDATE SET next_seq = excluded.next_seq",
            (tno, end),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        terms.ids.clear()
        raise
    return True


def _pair_runs_py(runs: list[tuple[int, list[int]]]) -> list[int]:
    return list(
        chain.from_iterable(chain.from_iterable(zip(repeat(term), rids) for term, rids in runs))
    )


# [term, rid, term, rid, ...] in C where it can: the chained iterators above
# cost about 1.3 us per indexed entry (4.67 postings each).
_pair_runs: Callable[[list[tuple[int, list[int]]]], list[int]] = getattr(
    native, "pair_runs", _pair_runs_py
)


def _execute_flat(
    conn: sqlite3.Connection,
    statement: Callable[[int], str],
    flat: Sequence[object],
    width: int,
) -> None:
    """Run `statement(n)`, a multi-row statement for n rows, over `flat`
    (rows of `width` values laid end to end), _ROWS_PER_STATEMENT rows at
    a time: one step each, where executemany would take one per row."""
    step = width * _ROWS_PER_STATEMENT
    for i in range(0, len(flat), step):
        chunk = flat[i : i + step]
        conn.execute(statement(len(chunk) // width), chunk)


@functools.lru_cache(maxsize=8)
def _add_counts(n: int) -> str:
    """Add counts to `n` known terms: (term, count) pairs bound flat."""
    return (
        "UPDATE terms SET n = n + v.column2 FROM (VALUES "  # noqa: S608
        + ", ".join(["(?, ?)"] * n)
        + ") AS v WHERE terms.term = v.column1"
    )


@functools.lru_cache(maxsize=8)
def _upsert_terms(n: int) -> str:
    """Insert `n` terms with their counts, or add the counts where another
    indexer numbered them first; returns (term, tenant_no, field, value)."""
    return (
        "INSERT INTO terms (tenant_no, field, value, n) VALUES "  # noqa: S608
        + ", ".join(["(?, ?, ?, ?)"] * n)
        + " ON CONFLICT (tenant_no, field, value) DO UPDATE SET n = n + excluded.n"
        " RETURNING term, tenant_no, field, value"
    )


def _insert_postings(n: int) -> str:
    return "INSERT INTO postings (term, rid) VALUES " + ", ".join(["(?, ?)"] * n)  # noqa: S608


def _insert_docs(n: int) -> str:
    return "INSERT INTO entries_fts (rowid, text) VALUES " + ", ".join(["(?, ?)"] * n)  # noqa: S608


def rid_indexed(conn: sqlite3.Connection, tenant_no: int, seq: int, schema: str = "idx.") -> bool:
    r = conn.execute(
        f"SELECT next_seq FROM {schema}indexed WHERE tenant_no = ?",  # noqa: S608
        (tenant_no,),
    ).fetchone()
    return r is not None and seq < r[0]


def remove_rows(
    conn: sqlite3.Connection, tenant_no: int, rows: Sequence[EntryRow], schema: str = ""
) -> None:
    """Take entries out of the projection (redaction, purge), inside the
    caller's transaction on `conn`. The full-text index is contentless, so
    each document is recomputed from the row, which must still hold its
    payload."""
    for row in rows:
        rid = rid_of(tenant_no, row.seq)
        for field, value in entry_terms(row):
            r = conn.execute(
                f"SELECT term FROM {schema}terms WHERE tenant_no = ? AND field = ? AND value = ?",  # noqa: S608
                (tenant_no, field, value),
            ).fetchone()
            if r is not None:
                n = conn.execute(
                    f"DELETE FROM {schema}postings WHERE term = ? AND rid = ?",  # noqa: S608
                    (r[0], rid),
                ).rowcount
                conn.execute(f"UPDATE {schema}terms SET n = n - ? WHERE term = ?", (n, r[0]))  # noqa: S608
        conn.execute(
            f"INSERT INTO {schema}entries_fts (entries_fts, rowid, text)"  # noqa: S608
            " VALUES ('delete', ?, ?)",
            (rid, entry_text(row)),
        )


_ROW_COLS = (
    "rid, event_id, recorded_at, action, category, severity, security, actor_hash, actor_type,"
    " target_type, target_id, outcome, occurred_at, ip, payload, salt, payload_commitment,"
    " leaf_hash"
)


def ledger_pending(
    ledger: sqlite3.Connection, index: sqlite3.Connection
) -> list[tuple[int, int, int]]:
    """(tenant_no, first seq not indexed, ledger size) of every tenant behind."""
    marks = dict(index.execute("SELECT tenant_no, next_seq FROM indexed").fetchall())
    out = []
    for tno, size, purged in ledger.execute(
        "SELECT t.tenant_no, s.size, s.purged FROM tree_state s"
        " JOIN tenants t ON t.tenant_id = s.tenant_id"
    ):
        start = max(marks.get(tno, 0), purged)
        if start < size:
            out.append((tno, start, size))
    return out


_PROJECTION_SELECT = (
    f"SELECT rid, {', '.join(PROJECTION_COLUMNS[1:])} FROM ledger"  # noqa: S608
    " WHERE rid >= ? AND rid < ? ORDER BY rid"
)


def keyed_rows(ledger: sqlite3.Connection, tenant_no: int, start: int, end: int) -> list[KeyedRow]:
    """What the indexer needs of one tenant's rows with start <= seq < end:
    a third of the columns of `ledger_rows`, read in half the time, as the
    driver returns them."""
    base = tenant_no << SEQ_BITS
    return ledger.execute(_PROJECTION_SELECT, (base + start, base + end)).fetchall()


def ledger_rows(ledger: sqlite3.Connection, tenant_no: int, start: int, end: int) -> list[EntryRow]:
    """Ledger rows of one tenant with start <= seq < end (tenant id left
    empty: the projection keys by tenant number)."""
    base = tenant_no << SEQ_BITS
    make = tuple.__new__  # EntryRow(...)'s own __new__ is a Python call per row
    return [
        make(EntryRow, ("", r[0] - base, *r[1:6], bool(r[6]), *r[7:]))
        for r in ledger.execute(
            f"SELECT {_ROW_COLS} FROM ledger WHERE rid >= ? AND rid < ? ORDER BY rid",  # noqa: S608
            (base + start, base + end),
        )
    ]


def _open_ledger(path: str) -> sqlite3.Connection:
    """A connection to a file already set up (the ledger, or the index file
    for its checkpointer), usable from any thread."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def run_process(ledger_path: str, index_file: str, stop: Any) -> None:
    """The indexer as a child process (KIMONAUDIT_INDEXER=process): its
    Python work then runs on the other core instead of taking turns with
    the appends for one interpreter lock. Polls the ledger (after a small
    pass, `linger`) and exits with its parent."""
    ledger = _open_ledger(ledger_path)
    index = open_index(index_file)
    terms = TermCache()
    # The index file's WAL is copied by a thread of its own, as the ledger's
    # is: inline, each batch's commit past 1,000 pages copied and synced the
    # file while the next batch waited (about a tenth of the indexer's time
    # at 50,000 events/s). Index lag p99 at 50,000 offered, five alternated
    # pairs: 663-864 ms against 760-1,309 ms (2026-12-08).
    index.execute(f"PRAGMA wal_autocheckpoint={INDEX_WAL_AUTOCHECKPOINT}")
    checkpointer = Checkpointer(_open_ledger(index_file), lambda: INDEX_CHECKPOINT_INTERVAL)

    def waiting() -> int:
        return sum(size - start for _, start, size in ledger_pending(ledger, index))

    while not stop.is_set():
        try:
            n = 0
            for tno, start, size in ledger_pending(ledger, index):
                end = min(size, start + INDEX_BATCH)
                rows = keyed_rows(ledger, tno, start, end)
                if write_batch(index, terms, Batch(tno, start, end, rows)):
                    n += end - start
            if n < INDEX_SMALL:
                linger(stop, waiting)
        except sqlite3.Error as exc:
            log.warning("indexer: %s: %s", exc.__class__.__name__, exc)
            stop.wait(1.0)
    checkpointer.close()
    ledger.close()
    index.close()


class NoIndexer:
    """For a store opened only to read (verify's worker processes): the
    index file must exist for searches to attach it, nothing more."""

    def __init__(self, index_file: str) -> None:
        open_index(index_file).close()
        self.error: BaseException | None = None

    def notify(self) -> None:
        pass

    def wait(self, timeout: float = 60.0) -> bool:
        return False

    def close(self) -> None:
        pass


def add_rows(
    conn: sqlite3.Connection, tenant_no: int, rows: Sequence[EntryRow], schema: str = "idx."
) -> None:
    """Put entries into the projection inside the caller's transaction (a
    redacted entry goes back with its header terms and header words)."""
    for row in rows:
        rid = rid_of(tenant_no, row.seq)
        for field, value in entry_terms(row):
            conn.execute(
                f"INSERT OR IGNORE INTO {schema}terms (tenant_no, field, value) VALUES (?, ?, ?)",  # noqa: S608
                (tenant_no, field, value),
            )
            (term,) = conn.execute(
                f"SELECT term FROM {schema}terms WHERE tenant_no = ? AND field = ? AND value = ?",  # noqa: S608
                (tenant_no, field, value),
            ).fetchone()
            n = conn.execute(
                f"INSERT OR IGNORE INTO {schema}postings (term, rid) VALUES (?, ?)",  # noqa: S608
                (term, rid),
            ).rowcount
            conn.execute(f"UPDATE {schema}terms SET n = n + ? WHERE term = ?", (n, term))  # noqa: S608
        conn.execute(
            f"INSERT INTO {schema}entries_fts (rowid, text) VALUES (?, ?)",  # noqa: S608
            (rid, entry_text(row)),
        )


def drop_rows(
    conn: sqlite3.Connection, tenant_no: int, rows: Sequence[EntryRow], schema: str = "idx."
) -> None:
    """Take a run of consecutive entries out of the projection (a purge):
    one ranged delete per term instead of one per posting."""
    if not rows:
        return
    lo, hi = rid_of(tenant_no, rows[0].seq), rid_of(tenant_no, rows[-1].seq)
    keys = {key for row in rows for key in entry_terms(row)}
    for field, value in keys:
        r = conn.execute(
            f"SELECT term FROM {schema}terms WHERE tenant_no = ? AND field = ? AND value = ?",  # noqa: S608
            (tenant_no, field, value),
        ).fetchone()
        if r is None:
            continue
        n = conn.execute(
            f"DELETE FROM {schema}postings WHERE term = ? AND rid >= ? AND rid <= ?",  # noqa: S608
            (r[0], lo, hi),
        ).rowcount
        conn.execute(f"UPDATE {schema}terms SET n = n - ? WHERE term = ?", (n, r[0]))  # noqa: S608
    for row in rows:
        rid = rid_of(tenant_no, row.seq)
        # A contentless index must be told exactly what it holds: only
        # documents that are there are deleted.
        if conn.execute(
            f"SELECT 1 FROM {schema}entries_fts WHERE rowid = ?",  # noqa: S608
            (rid,),
        ).fetchone():
            conn.execute(
                f"INSERT INTO {schema}entries_fts (entries_fts, rowid, text)"  # noqa: S608
                " VALUES ('delete', ?, ?)",
                (rid, entry_text(row)),
            )


class IndexerProcess:
    """`run_process` in a child interpreter (kimonaudit.store.indexer_child)."""

    def __init__(self, ledger_path: str, index_file: str) -> None:
        from kimonaudit.store.indexer_child import ChildIndexer

        open_index(index_file).close()  # created (or migrated) before the child starts
        self._child = ChildIndexer("sqlite", {"ledger": ledger_path, "index": index_file})
        self._index = open_index(index_file)
        self._ledger = _open_ledger(ledger_path)
        self._lock = threading.Lock()
        self.error: BaseException | None = None

    def notify(self) -> None:
        pass  # the child polls

    def wait(self, timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not ledger_pending(self._ledger, self._index):
                    return True
            if not self._child.alive():
                raise RuntimeError("the indexer process has stopped")
            time.sleep(0.005)
        return False

    def close(self) -> None:
        self._child.close()
        self._index.close()
        self._ledger.close()


class Indexer:
    """The background thread that keeps the projection up with the ledger.

    `pending` lists, per tenant, (tenant_no, indexed up to, ledger size);
    `read` returns ledger rows of one tenant in [start, end) in seq order.
    """

    def __init__(
        self,
        index_file: str,
        pending: Callable[[sqlite3.Connection], list[tuple[int, int, int]]],
        read: Callable[[int, int, int], list[KeyedRow]],
        batch: int = INDEX_BATCH,
    ) -> None:
        self._conn = open_index(index_file)
        self._pending = pending
        self._read = read
        self._batch = batch
        self._terms = TermCache()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.batches = 0
        self._thread = threading.Thread(target=self._run, name="kimonaudit-indexer", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()
        self._conn.close()

    def wait(self, timeout: float = 60.0) -> bool:
        """Block until the projection covers everything committed before the
        call (tests, `reindex`, the search reference); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.error is not None:
                raise self.error
            if not self._pending(self._conn):
                return True
            self._wake.set()
            time.sleep(0.005)
        return False

    def step(self) -> int:
        """Index one batch of every tenant that is behind; entries indexed."""
        done = 0
        for tenant_no, start, size in self._pending(self._conn):
            end = min(size, start + self._batch)
            # A gap (rows purged, or removed by tampering) still moves the
            # mark: verify reports it, and indexing must not stall on it.
            rows = self._read(tenant_no, start, end)
            if write_batch(self._conn, self._terms, Batch(tenant_no, start, end, rows)):
                done += end - start
                self.batches += 1
        return done

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                n = self.step()
                self.error = None
            except Exception as exc:  # a locked or damaged file: retry, never die
                log.warning("indexer: %s: %s", exc.__class__.__name__, exc)
                self.error = None
                n = 0
                self._stop.wait(1.0)
            if n == 0:
                self._wake.wait(_IDLE_WAIT)
                self._wake.clear()


_MASK64 = (1 << 64) - 1


def _doc_sum(words: Sequence[str]) -> int:
    # An order-aware multiset digest of a document: (position, word) pairs
    # summed, so instances read back in any order add up the same.
    return sum(hash((i, w)) for i, w in enumerate(words)) & _MASK64


def check_projection(
    conn: sqlite3.Connection,
    tenant_no: int,
    rows: Callable[[int, int], list[EntryRow]],
    purged: int = 0,
) -> tuple[int, list[str]]:
    """Compare the tenant's projection (on `conn`, attached as ``idx``) with
    the ledger rows below its high-water mark. Returns (entries checked,
    problems), each problem naming a seq; empty when they match exactly."""
    base = tenant_no << SEQ_BITS
    r = conn.execute("SELECT next_seq FROM idx.indexed WHERE tenant_no = ?", (tenant_no,))
    mark = (r.fetchone() or (0,))[0]
    posted: dict[int, set[tuple[int, str]]] = {}
    # Below the purge point the ledger is gone by design: an indexer batch
    # that was in flight during a purge may have left postings there, which
    # search never returns (it reads the ledger row).
    floor = base + purged
    for rid, field, value in conn.execute(
        "SELECT p.rid, t.field, t.value FROM idx.postings p JOIN idx.terms t ON t.term = p.term"
        " WHERE t.tenant_no = ? AND p.rid >= ?",
        (tenant_no, floor),
    ):
        posted.setdefault(rid, set()).add((field, value))
    docs: dict[int, int] = {}
    conn.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.kimonaudit_fts_words"
        " USING fts5vocab(idx, entries_fts, instance)"
    )
    for doc, term, offset in conn.execute(
        "SELECT doc, term, offset FROM temp.kimonaudit_fts_words WHERE doc >= ? AND doc < ?",
        (floor, base + SEQ_MASK + 1),
    ):
        docs[doc] = (docs.get(doc, 0) + hash((offset, term))) & _MASK64
    problems: list[str] = []
    checked = 0
    start = purged
    while start < mark:
        end = min(mark, start + INDEX_BATCH)
        for row in rows(start, end):
            rid = base + row.seq
            checked += 1
            want = set(entry_terms(row))
            got = posted.pop(rid, set())
            if got != want:
                missing = sorted(want - got)
                extra = sorted(got - want)
                problems.append(
                    f"seq {row.seq}: search postings differ from the ledger"
                    f" (missing {len(missing)}, unexpected {len(extra)})"
                )
            words = entry_text(row).split()
            if docs.pop(rid, None) != (_doc_sum(words) if words else None):
                problems.append(f"seq {row.seq}: full-text document differs from the ledger")
        start = end
    for rid in sorted(set(posted) | set(docs)):
        problems.append(f"seq {rid - base}: indexed, but no such entry in the ledger")
    return checked, problems
