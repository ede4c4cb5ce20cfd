"""The PostgreSQL search projection, written by an indexer thread in large
sorted batches (issue 7).

The acknowledging transaction writes the ledger only (``entries``, by its
primary key). The indexer reads what was committed since a tenant's
high-water mark, derives each entry's posting terms and free-text document
(kimonaudit.core.projection, the same pure functions as the SQLite store),
and writes them in one transaction per batch together with the new mark:

- the terms are upserted into ``search_terms`` in one statement that also
  adds their counts and returns their numbers;
- the postings go in with one binary ``COPY``, sorted by (term, seq);
- the documents are copied into a temporary table and turned into stored
  tsvectors by one ``INSERT ... SELECT to_tsvector(...)``, so words are
  split and folded by the server exactly as ``phraseto_tsquery`` does;
- the mark moves in the same transaction, so a crash at any point resumes
  from the last committed batch.

Several processes may run an indexer on one database. Each batch starts
with ``SELECT ... FROM search_marks ... FOR UPDATE SKIP LOCKED``: exactly one
of them works on a tenant at a time, the others skip it, and the mark read
under the lock says where to start. Redaction takes the same row lock
(store/postgres.py), so a batch never writes back text a redaction removed.

Nothing here is the truth: `rebuild` empties the projection and the indexer
writes it again from the ledger; `check` compares it with the ledger.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from kimonaudit.core.projection import (
    PROJECTION_COLUMNS,
    entry_terms,
    entry_text,
    project,
)
from kimonaudit.core.records import ENTRY_COLUMNS, EntryRow
from kimonaudit.store.indexer_child import INDEX_SMALL, linger
from kimonaudit.store.native import native

log = logging.getLogger(__name__)

# Entries per indexer transaction: large enough that postings go in as long
# sorted runs and the round trips of a batch are amortised, small enough
# that the index lags a busy log by well under a second.
INDEX_BATCH = 20_000
_IDLE_WAIT = 0.25  # seconds between looks when no local append woke it

_SELECT_ROWS = (
    f"SELECT {', '.join(ENTRY_COLUMNS)} FROM entries "  # noqa: S608 (column names from EntryRow)
    "WHERE tenant_id = %s AND seq >= %s AND seq < %s ORDER BY seq"
)
_SELECT_PROJECTION = (
    f"SELECT {', '.join(PROJECTION_COLUMNS)} FROM entries "  # noqa: S608 (column names)
    "WHERE tenant_id = %s AND seq >= %s AND seq < %s ORDER BY seq"
)
# Tenants with entries to index, or a purge whose projection rows remain
# (reported as (tenant, size, size) then: nothing to index, something to do).
_PENDING = (
    "SELECT s.tenant_id, least(greatest(coalesce(m.next_seq, 0), s.purged), s.size), s.size"
    " FROM tree_state s LEFT JOIN search_marks m ON m.tenant_id = s.tenant_id"
    " WHERE s.size > greatest(coalesce(m.next_seq, 0), s.purged)"
    " OR s.purged > coalesce(m.purged, 0)"
)
_UPSERT_TERMS = (
    "INSERT INTO search_terms (tenant_id, field, value, n) "
    "SELECT %s, f, v, c FROM unnest(%s::int2[], %s::text[], %s::int8[]) AS u(f, v, c) "
    "ORDER BY f, v "
    "ON CONFLICT (tenant_id, field, value) DO UPDATE SET n = search_terms.n + excluded.n "
    "RETURNING term, field, value"
)
_COPY_POSTINGS = (
    "COPY search_postings (tenant_id, term, seq, recorded_at) FROM STDIN (FORMAT BINARY)"
)
_COPY_DOCS = "COPY search_docs (tenant_id, seq, recorded_at, doc) FROM STDIN (FORMAT BINARY)"
#: Documents sent as binary tsvectors made in C (`_native.tsvectors`) where
#: it can, instead of text the server parses; tests switch it off to compare.
NATIVE_TSVECTORS = True
_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS search_doc_stage "
    "(seq int8, recorded_at int8, body text) ON COMMIT DELETE ROWS"
)
_COPY_STAGE = "COPY search_doc_stage (seq, recorded_at, body) FROM STDIN (FORMAT BINARY)"
_DOCS_FROM_STAGE = (
    "INSERT INTO search_docs (tenant_id, seq, recorded_at, doc) "
    "SELECT %s, seq, recorded_at, to_tsvector('simple', body) FROM search_doc_stage ORDER BY seq"
)


def pending(conn: psycopg.Connection[Any]) -> list[tuple[str, int, int]]:
    """(tenant id, first seq not indexed, ledger size) of every tenant behind."""
    return [(t, int(a), int(b)) for t, a, b in conn.execute(_PENDING).fetchall()]


def waiting(conn: psycopg.Connection[Any]) -> int:
    """How many entries the projection lacks, all tenants together."""
    return sum(size - start for _, start, size in pending(conn))


def read_rows(
    conn: psycopg.Connection[Any], tenant_id: str, start: int, end: int
) -> list[EntryRow]:
    make = tuple.__new__  # EntryRow._make is a Python call per row
    return [make(EntryRow, r) for r in conn.execute(_SELECT_ROWS, (tenant_id, start, end))]


def lock_mark(conn: psycopg.Connection[Any], tenant_id: str, wait: bool) -> int | None:
    """Inside the caller's transaction: lock the tenant's mark row and return
    the mark, or None (wait=False) when another transaction holds it."""
    r = _lock_mark(conn, tenant_id, wait)
    return None if r is None else r[0]


def _lock_mark(conn: psycopg.Connection[Any], tenant_id: str, wait: bool) -> tuple[int, int] | None:
    """(mark, purged) of the locked mark row; None if skipped."""
    conn.execute(
        "INSERT INTO search_marks (tenant_id, next_seq) VALUES (%s, 0) ON CONFLICT DO NOTHING",
        (tenant_id,),
    )
    skip = "" if wait else " SKIP LOCKED"
    r = conn.execute(
        f"SELECT next_seq, purged FROM search_marks WHERE tenant_id = %s FOR UPDATE{skip}",  # noqa: S608
        (tenant_id,),
    ).fetchone()
    return None if r is None else (int(r[0]), int(r[1]))


def drop_purged(conn: psycopg.Connection[Any], tenant_id: str, upto: int) -> None:
    """Remove the projection of seqs below `upto` (purged from the ledger by
    retention), counts included, inside the caller's transaction (which
    holds the mark row). Purges are rare; this reads the tenant's postings
    once per purge."""
    conn.execute(
        "WITH gone AS (DELETE FROM search_postings WHERE tenant_id = %s AND seq < %s"
        " RETURNING term), c AS (SELECT term, count(*) AS k FROM gone GROUP BY term)"
        " UPDATE search_terms t SET n = t.n - c.k FROM c"
        " WHERE t.tenant_id = %s AND t.term = c.term",
        (tenant_id, upto, tenant_id),
    )
    conn.execute("DELETE FROM search_docs WHERE tenant_id = %s AND seq < %s", (tenant_id, upto))
    conn.execute("UPDATE search_marks SET purged = %s WHERE tenant_id = %s", (upto, tenant_id))


def _term_ids(
    conn: psycopg.Connection[Any], tenant_id: str, counts: dict[tuple[int, str], int]
) -> dict[tuple[int, str], int]:
    """Number the terms (inserting new ones) and add `counts` to their counts."""
    if not counts:
        return {}
    keys = list(counts)
    rows = conn.execute(
        _UPSERT_TERMS,
        (tenant_id, [k[0] for k in keys], [k[1] for k in keys], [counts[k] for k in keys]),
    ).fetchall()
    return {(int(f), v): int(t) for t, f, v in rows}


def projection_rows(
    conn: psycopg.Connection[Any], tenant_id: str, start: int, end: int
) -> list[tuple[Any, ...]]:
    """What the indexer needs of the rows with start <= seq < end, in
    ProjectionRow's column order: fewer columns than `read_rows`, no
    payload salt, commitment or leaf hash."""
    # Binary: the payload arrives as its bytes, not as hex text the server
    # encodes and psycopg decodes (about 0.5 us a row less here).
    with conn.cursor(row_factory=tuple_row, binary=True) as cur:
        return cur.execute(_SELECT_PROJECTION, (tenant_id, start, end)).fetchall()


def write_rows(conn: psycopg.Connection[Any], tenant_id: str, rows: list[tuple[Any, ...]]) -> None:
    """Add the projection of `rows` (as `projection_rows` reads them) inside
    the caller's transaction."""
    if not rows:
        return
    groups, texts = project(rows)
    ids = _term_ids(conn, tenant_id, {k: len(v) for k, v in groups.items()})
    # Sorted by (term, seq): by term here, by seq within each run.
    runs = sorted([(ids[k], v) for k, v in groups.items()], key=itemgetter(0))
    tsvectors = getattr(native, "tsvectors", None) if NATIVE_TSVECTORS else None
    vectors = tsvectors(texts) if tsvectors is not None else [None] * len(texts)
    with conn.cursor() as cur:
        if native is not None:
            with cur.copy(_COPY_POSTINGS) as cp:
                # Formatted from the runs in C: a tuple per posting (4-5 per
                # entry) cost about 3 us per entry to make and format.
                cp.write(native.copy_postings(tenant_id, runs, rows))
            docs = [
                (tenant_id, row[0], row[1], vector)
                for row, vector in zip(rows, vectors, strict=True)
                if vector is not None
            ]
            if docs:
                with cur.copy(_COPY_DOCS) as cp:
                    cp.write(native.copy_binary(docs, "tqqy", (0, 1, 2, 3)))
        else:
            recorded_at = {row[0]: row[1] for row in rows}
            with cur.copy(_COPY_POSTINGS) as cp:
                cp.set_types(["text", "int8", "int8", "int8"])
                for term_id, run in runs:
                    for seq in run:
                        cp.write_row((tenant_id, term_id, seq, recorded_at[seq]))
        # The documents the server must split itself.
        staged = [
            (row[0], row[1], text)
            for row, text, vector in zip(rows, texts, vectors, strict=True)
            if vector is None
        ]
        if staged:
            cur.execute(_STAGE)
            with cur.copy(_COPY_STAGE) as cp:
                cp.set_types(["int8", "int8", "text"])
                for row in staged:
                    cp.write_row(row)
            cur.execute(_DOCS_FROM_STAGE, (tenant_id,))
            cur.execute("TRUNCATE search_doc_stage")


def remove_rows(conn: psycopg.Connection[Any], tenant_id: str, rows: Sequence[EntryRow]) -> None:
    """Take entries out of the projection (redaction, purge) inside the
    caller's transaction, which must hold the tenant's mark row lock."""
    if not rows:
        return
    counts: dict[tuple[int, str], int] = {}
    for row in rows:
        for term in entry_terms(row):
            counts[term] = counts.get(term, 0) + 1
    keys = list(counts)
    found = conn.execute(
        "SELECT t.term, t.field, t.value FROM search_terms t"
        " JOIN unnest(%s::int2[], %s::text[]) AS u(f, v) ON t.field = u.f AND t.value = u.v"
        " WHERE t.tenant_id = %s",
        ([k[0] for k in keys], [k[1] for k in keys], tenant_id),
    ).fetchall()
    seqs = [r.seq for r in rows]
    for term, _field, _value in found:
        # Only what was actually there is subtracted: the count stays the
        # number of postings even if the projection was damaged.
        n = conn.execute(
            "DELETE FROM search_postings WHERE tenant_id = %s AND term = %s AND seq = ANY(%s)",
            (tenant_id, term, seqs),
        ).rowcount
        if n:
            conn.execute(
                "UPDATE search_terms SET n = n - %s WHERE tenant_id = %s AND term = %s",
                (n, tenant_id, term),
            )
    conn.execute(
        "DELETE FROM search_docs WHERE tenant_id = %s AND seq = ANY(%s)", (tenant_id, seqs)
    )


def index_batch(conn: psycopg.Connection[Any], tenant_id: str, batch: int = INDEX_BATCH) -> int:
    """Index the tenant's next batch in one transaction, mark included;
    returns how many seqs the mark moved (0 if another indexer holds the
    tenant or nothing is left)."""
    with conn.transaction():
        locked = _lock_mark(conn, tenant_id, wait=False)
        if locked is None:
            return 0
        mark, cleaned = locked
        r = conn.execute(
            "SELECT size, purged FROM tree_state WHERE tenant_id = %s", (tenant_id,)
        ).fetchone()
        if r is None:
            return 0
        size, purged = int(r[0]), int(r[1])
        if purged > cleaned:
            drop_purged(conn, tenant_id, purged)
        start = max(mark, purged)
        end = min(size, start + batch)
        if end <= start:
            return 1 if purged > cleaned else 0
        # A gap (rows purged, or removed by tampering) still moves the mark:
        # verify reports it, and indexing must not stall on it.
        write_rows(conn, tenant_id, projection_rows(conn, tenant_id, start, end))
        conn.execute("UPDATE search_marks SET next_seq = %s WHERE tenant_id = %s", (end, tenant_id))
    return end - mark


class Indexer:
    """The background thread that keeps the projection up with the ledger,
    on its own connection. `connect` opens one (autocommit)."""

    def __init__(
        self, connect: Callable[[], psycopg.Connection[Any]], batch: int = INDEX_BATCH
    ) -> None:
        self._connect = connect
        self._conn: psycopg.Connection[Any] | None = None
        self._batch = batch
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.batches = 0
        self._thread = threading.Thread(target=self._run, name="kimonaudit-indexer", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join()
        if self._conn is not None:
            self._conn.close()

    def step(self) -> int:
        """Index one batch of every tenant that is behind; seqs indexed."""
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                conn.close()
            conn = self._conn = self._connect()
        done = 0
        for tenant_id, _, _ in pending(conn):
            n = index_batch(conn, tenant_id, self._batch)
            if n:
                done += n
                self.batches += 1
        return done

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                n = self.step()
            except Exception as exc:  # a lost connection, a full disk: retry, never die
                log.warning("indexer: %s: %s", exc.__class__.__name__, exc)
                n = 0
                self._stop.wait(1.0)
            if n == 0:
                self._wake.wait(_IDLE_WAIT)
                self._wake.clear()


def run_process(url: str, kwargs: dict[str, Any], stop: Any) -> None:
    """The indexer as a child process (KIMONAUDIT_INDEXER=process): its
    Python work (decoding payloads, making documents) then runs on another
    core instead of taking turns with the appends for one interpreter lock.
    Polls the ledger (after a small pass, `linger`) and exits with its
    parent."""
    conn: psycopg.Connection[Any] | None = None
    while not stop.is_set():
        try:
            if conn is None or conn.closed or conn.broken:
                conn = psycopg.connect(url, **kwargs)
            n = 0
            for tenant_id, _, _ in pending(conn):
                n += index_batch(conn, tenant_id)
            if n < INDEX_SMALL:
                linger(stop, functools.partial(waiting, conn))
        except psycopg.Error as exc:
            log.warning("indexer: %s: %s", exc.__class__.__name__, exc)
            stop.wait(1.0)
    if conn is not None:
        conn.close()


class IndexerProcess:
    """`run_process` in a child interpreter (kimonaudit.store.indexer_child)."""

    def __init__(self, url: str, kwargs: dict[str, Any]) -> None:
        from kimonaudit.store.indexer_child import ChildIndexer

        self._child = ChildIndexer("postgres", {"url": url, "kwargs": kwargs})
        self.batches = 0

    def notify(self) -> None:
        pass  # the child polls

    def alive(self) -> bool:
        return self._child.alive()

    def close(self) -> None:
        self._child.close()


def wait_until_indexed(
    behind: Callable[[], list[tuple[str, int, int]]],
    notify: Callable[[], None],
    timeout: float,
    progress: Callable[[int], None] | None = None,
) -> bool:
    """Poll `behind` until no tenant is; False on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        left = behind()
        if progress is not None:
            progress(sum(size - start for _, start, size in left))
        if not left:
            return True
        if time.monotonic() >= deadline:
            return False
        notify()
        time.sleep(0.01)


# -- checking the projection against the ledger ---------------------------------


def _merge_postings(
    stream: Iterator[tuple[int, int | None, str | None]],
) -> Iterator[tuple[int, set[tuple[int, str]]]]:
    """(seq, terms) from a stream of (seq, field, value) ordered by seq. A
    posting whose term number is unknown (field None) counts as a term no
    entry has, so it shows as unexpected."""
    seq: int | None = None
    terms: set[tuple[int, str]] = set()
    for s, field, value in stream:
        if s != seq:
            if seq is not None:
                yield seq, terms
            seq, terms = int(s), set()
        terms.add((-1, "") if field is None else (int(field), str(value)))
    if seq is not None:
        yield seq, terms


_DOCS_DIFFER = (
    "SELECT coalesce(u.s, d.seq), u.s IS NOT NULL"
    " FROM unnest(%s::int8[], %s::text[]) AS u(s, body)"
    " FULL JOIN (SELECT seq, doc FROM search_docs WHERE tenant_id = %s AND seq >= %s AND seq < %s)"
    " AS d ON d.seq = u.s"
    " WHERE u.s IS NULL OR d.seq IS NULL OR d.doc IS DISTINCT FROM to_tsvector('simple', u.body)"
)


def check_projection(
    conn: psycopg.Connection[Any],
    tenant_id: str,
    rows: Callable[[int, int], list[EntryRow]],
    batch: int = INDEX_BATCH,
) -> tuple[int, list[str]]:
    """Compare the tenant's projection with the ledger rows below its mark.
    Returns (entries checked, problems), each problem naming a seq, in seq
    order; empty when they match exactly.

    Postings are streamed in seq order (one server-side sort) and merged
    with the ledger read in batches; each batch's documents are compared on
    the server, as tsvectors, with ``to_tsvector`` of the expected text, so
    the comparison is exact without reimplementing the server's parser."""
    problems: list[tuple[int, str]] = []
    # One snapshot for the mark and every projection row: read one by one,
    # a batch the indexer committed in between would show rows above the
    # mark read first, and they would be reported as stray.
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        checked = _check_snapshot(conn, tenant_id, rows, batch, problems)
    problems.sort(key=lambda p: p[0])
    # A stray seq may be named by both its postings and its document.
    return checked, list(dict.fromkeys(text for _, text in problems))


def _check_snapshot(
    conn: psycopg.Connection[Any],
    tenant_id: str,
    rows: Callable[[int, int], list[EntryRow]],
    batch: int,
    problems: list[tuple[int, str]],
) -> int:
    """check_projection's comparison, inside its snapshot: adds to
    `problems` and returns the number of ledger entries checked."""

    def stray(seq: int) -> None:
        problems.append((seq, f"seq {seq}: indexed, but no such entry in the ledger"))

    r = conn.execute("SELECT next_seq FROM search_marks WHERE tenant_id = %s", (tenant_id,))
    mark = int((r.fetchone() or (0,))[0])
    r = conn.execute("SELECT purged FROM tree_state WHERE tenant_id = %s", (tenant_id,))
    # Below the purge point the ledger is gone on purpose; projection rows
    # the indexer has not removed yet point at nothing and hide nothing.
    purged = int((r.fetchone() or (0,))[0])
    checked = 0
    with conn.cursor(name="kimonaudit_check_postings") as cur:
        cur.itersize = 10_000
        cur.execute(
            "SELECT p.seq, t.field, t.value FROM search_postings p"
            " LEFT JOIN search_terms t ON t.tenant_id = p.tenant_id AND t.term = p.term"
            " WHERE p.tenant_id = %s AND p.seq >= %s ORDER BY p.seq",
            (tenant_id, purged),
        )
        posted = _merge_postings(iter(cur))
        nxt = next(posted, None)
        start = purged
        while start < mark:
            end = min(mark, start + batch)
            ledger = {row.seq: row for row in rows(start, end)}
            checked += len(ledger)
            seen: set[int] = set()
            while nxt is not None and nxt[0] < end:
                seq, got = nxt
                row = ledger.get(seq)
                if row is None:
                    stray(seq)
                else:
                    seen.add(seq)
                    want = set(entry_terms(row))
                    if got != want:
                        problems.append((seq, _postings_differ(seq, want, got)))
                nxt = next(posted, None)
            for seq, row in ledger.items():
                if seq not in seen and entry_terms(row):
                    problems.append((seq, _postings_differ(seq, set(entry_terms(row)), set())))
            docs = conn.execute(
                _DOCS_DIFFER,
                (list(ledger), [entry_text(r) for r in ledger.values()], tenant_id, start, end),
            ).fetchall()
            for seq, in_ledger in docs:
                if in_ledger:
                    problems.append((seq, f"seq {seq}: full-text document differs from the ledger"))
                else:
                    stray(seq)
            start = end
        # Anything at or above the mark was never written by the indexer.
        while nxt is not None:
            stray(nxt[0])
            nxt = next(posted, None)
    for (seq,) in conn.execute(
        "SELECT seq FROM search_docs WHERE tenant_id = %s AND seq >= %s", (tenant_id, mark)
    ):
        stray(int(seq))
    return checked


def _postings_differ(seq: int, want: set[tuple[int, str]], got: set[tuple[int, str]]) -> str:
    return (
        f"seq {seq}: search postings differ from the ledger"
        f" (missing {len(want - got)}, unexpected {len(got - want)})"
    )
