"""The write path on both stores: a lean ledger acknowledged on its own, and
a search projection (postings + full text) built from it by the indexer,
checked by `verify --index`, rebuilt by `reindex`, and never hiding an
acknowledged entry from search."""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import kimonaudit
from kimonaudit.core.ledger import plan_append
from kimonaudit.core.records import TreeState
from kimonaudit.search import compile_query
from kimonaudit.store import postgres_index
from kimonaudit.store.indexer_child import INDEX_LINGER
from kimonaudit.store.sqlite import SQLiteStore
from kimonaudit.store.sqlite_index import Indexer
from kimonaudit.store.sqlite_schema import MIGRATIONS
from tests.helpers import event

QUERIES = [
    "",
    "action:ticket.viewed",
    "action:ticket.*",
    "actor:agent_42",
    "target:ticket:10003",
    "is:failure",
    "refund",
    '"refund requested"',
    "-refund action:ticket.*",
    "severity:>=high",
]


def _fill(log, tid: str, n: int = 60) -> None:
    batch = []
    for i in range(n):
        ev = event(i)
        if i % 7 == 0:
            ev["outcome"] = "failure"
        if i % 5 == 0:
            ev["metadata"] = {"note": "refund requested"}
        batch.append(ev)
    log.append(tid, batch)


def _seqs(log, tid: str, q: str) -> list[int]:
    return [r.seq for r in log.search(tid, q, limit=1000)]


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'audit.db'}"


def _stop_indexers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Indexers that never index (on either store): only the tail remains."""
    monkeypatch.setattr(Indexer, "step", lambda self: 0)
    monkeypatch.setattr(postgres_index.Indexer, "step", lambda self: 0)


def _other_db(db_url: str, request: pytest.FixtureRequest) -> str:
    """A second, empty database of the same kind."""
    if db_url.startswith("sqlite:"):
        return db_url.replace("audit.db", "tail.db")
    return str(request.getfixturevalue("pg_url_2"))


@pytest.fixture
def pg_url_2(pg_admin_url: str) -> Iterator[str]:
    import psycopg

    from tests.conftest import _with_schema

    schema = "kt_" + secrets.token_hex(6)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _with_schema(pg_admin_url, schema)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_search_finds_entries_the_indexer_has_not_reached(db_url, key_file, monkeypatch, request):
    """With the indexer stopped, every query answers from the ledger tail;
    once it catches up, through the projection, with the same results."""
    with kimonaudit.open(db_url, key_file=key_file) as log:
        tid = log.create_tenant("acme").id
        _fill(log, tid)
        assert log.store.wait_indexed()
        indexed = {q: _seqs(log, tid, q) for q in QUERIES}
        counts = {q: log.store.count_matches(tid, compile_query(log, tid, q).sql) for q in QUERIES}
    assert indexed["refund"] and indexed["is:failure"] and indexed["actor:agent_42"]
    assert counts == {q: len(v) for q, v in indexed.items()}
    # The same history in a fresh log whose indexer never runs.
    _stop_indexers(monkeypatch)
    other = _other_db(db_url, request)
    with kimonaudit.open(other, key_file=key_file) as log:
        tid2 = log.create_tenant("acme").id
        _fill(log, tid2)
        assert log.store.indexed_upto(tid2) == 0
        for q in QUERIES:
            assert _seqs(log, tid2, q) == indexed[q], q
            assert log.histogram(tid2, q).total == len(indexed[q]), q
            assert log.store.count_matches(tid2, compile_query(log, tid2, q).sql) == counts[q], q


def test_a_search_spanning_index_and_tail_pages_through_both(db_url, key_file, monkeypatch):
    """Half indexed, half not: pages and exports cover both, each entry once."""
    with kimonaudit.open(db_url, key_file=key_file) as log:
        tid = log.create_tenant("acme").id
        _fill(log, tid, 30)
        assert log.store.wait_indexed()
        _stop_indexers(monkeypatch)
        _fill(log, tid, 30)
        assert log.store.indexed_upto(tid) == 30
        seen, cursor = [], None
        while True:
            page = log.search(tid, "action:ticket.*", limit=7, cursor=cursor)
            seen += [r.seq for r in page]
            cursor = page.next_cursor
            if cursor is None:
                break
        everything = [r.seq for r in log.store.iter_entries(tid)]
        want = [
            s for s in reversed(everything) if log.get_entry(tid, s).action.startswith("ticket.")
        ]
        assert seen == want
        exported = b"".join(log.export(tid, "action:ticket.*", "ndjson"))
        assert exported.count(b"\n") == len(want)


def test_the_indexer_resumes_from_its_mark_after_a_restart(db_url, key_file, monkeypatch):
    """The mark is stored with each batch: a reopened store indexes only what is left."""
    with kimonaudit.open(db_url, key_file=key_file) as log:
        tid = log.create_tenant("acme").id
        _fill(log, tid, 40)
        assert log.store.wait_indexed()
    _stop_indexers(monkeypatch)
    with kimonaudit.open(db_url, key_file=key_file) as log:
        _fill(log, tid, 25)
        assert log.store.indexed_upto(tid) == 40
    monkeypatch.undo()
    with kimonaudit.open(db_url, key_file=key_file) as log:
        assert log.store.wait_indexed()
        assert log.store.indexed_upto(tid) == 65
        assert log.verify_index(tid) == (65, [])


def test_the_indexer_runs_as_a_child_process(sqlite_url, key_file):
    """KIMONAUDIT_INDEXER=process: the projection is built by another process."""
    with kimonaudit.open(sqlite_url, key_file=key_file, indexer="process") as log:
        tid = log.create_tenant("acme").id
        _fill(log, tid)
        assert log.store.wait_indexed(timeout=60)
        assert log.store.indexed_upto(tid) == 60
        assert _seqs(log, tid, "refund")
        assert log.verify_index(tid) == (60, [])


def _trickle(log, tid: str, run_indexer) -> float:
    """150 single events appended one by one while `run_indexer(stop)` runs
    on a thread; seconds until all were indexed (or 30 s passed)."""
    import threading
    import time

    stop = threading.Event()
    child = threading.Thread(target=run_indexer, args=(stop,))
    child.start()
    try:
        started = time.monotonic()
        for i in range(150):
            log.append(tid, [event(i)])
            time.sleep(0.004)
        deadline = time.monotonic() + 30
        while log.store.indexed_upto(tid) < 150 and time.monotonic() < deadline:
            time.sleep(0.02)
        return time.monotonic() - started
    finally:
        stop.set()
        child.join(10)


def test_the_indexer_process_gathers_a_trickle_into_batches(sqlite_url, key_file, monkeypatch):
    """Single events appended one by one are indexed a linger's worth at a
    time (polled every 10 ms, each came in a batch of its own and the index
    file was rewritten per event), and all of them are indexed."""
    from kimonaudit.store import sqlite_index as si

    sizes: list[int] = []
    real = si.write_batch

    def counted(conn, terms, batch):
        sizes.append(batch.end - batch.start)
        return real(conn, terms, batch)

    monkeypatch.setattr(si, "write_batch", counted)
    with kimonaudit.open(sqlite_url, key_file=key_file, indexer="off") as log:
        tid = log.create_tenant("acme").id
        store = log.store
        assert isinstance(store, SQLiteStore)
        elapsed = _trickle(
            log, tid, lambda stop: si.run_process(store.path, store.index_file, stop)
        )
        assert store.indexed_upto(tid) == 150 and sum(sizes) == 150
        # A pass per linger at most (67 batches of one or two when it polled
        # every 10 ms, with a run of this test taking 0.8 s).
        assert len(sizes) <= elapsed / INDEX_LINGER + 2, (sizes, elapsed)
        assert log.verify_index(tid) == (150, [])


@pytest.mark.postgres
def test_the_postgres_indexer_process_gathers_a_trickle_into_batches(pg_url, key_file, monkeypatch):
    """As on SQLite: polled every 10 ms, 1,000 single events/s were indexed
    in transactions of about ten, and the child used 0.39 ms of CPU per
    event; a linger after a small pass gathers them."""
    from kimonaudit.store.postgres import PostgresStore

    sizes: list[int] = []
    real = postgres_index.index_batch

    def counted(conn, tenant_id, batch=postgres_index.INDEX_BATCH):
        n = real(conn, tenant_id, batch)
        if n:
            sizes.append(n)
        return n

    monkeypatch.setattr(postgres_index, "index_batch", counted)
    with kimonaudit.open(pg_url, key_file=key_file, indexer="off") as log:
        tid = log.create_tenant("acme").id
        store = log.store
        assert isinstance(store, PostgresStore)
        elapsed = _trickle(
            log, tid, lambda stop: postgres_index.run_process(store.url, store._kwargs, stop)
        )
        assert store.indexed_upto(tid) == 150 and sum(sizes) == 150
        assert len(sizes) <= elapsed / INDEX_LINGER + 2, (sizes, elapsed)
        assert log.verify_index(tid) == (150, [])


def test_the_indexer_process_checkpoints_the_index_file_in_a_thread(
    sqlite_url, key_file, monkeypatch
):
    """The index file's WAL is copied into it by the child's checkpointer
    thread, not by the indexer's commits (whose threshold is set out of
    reach here), and everything is indexed."""
    from kimonaudit.store import sqlite_index as si

    made: list[si.Checkpointer] = []

    class Kept(si.Checkpointer):
        def __init__(self, *args) -> None:
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(si, "Checkpointer", Kept)
    monkeypatch.setattr(si, "INDEX_WAL_AUTOCHECKPOINT", 1_000_000)
    monkeypatch.setattr(si, "INDEX_CHECKPOINT_INTERVAL", 0.05)
    with kimonaudit.open(sqlite_url, key_file=key_file, indexer="off") as log:
        tid = log.create_tenant("acme").id
        store = log.store
        assert isinstance(store, SQLiteStore)
        _trickle(log, tid, lambda stop: si.run_process(store.path, store.index_file, stop))
        assert store.indexed_upto(tid) == 150
        (checkpointer,) = made
        assert checkpointer.passes >= 1
        assert log.verify_index(tid) == (150, [])


def test_the_linger_ends_when_a_batch_is_waiting(monkeypatch):
    """After a small pass the child waits for INDEX_SMALL entries or
    INDEX_LINGER, whichever comes first, so a trickle is gathered while a
    rate that fills a batch sooner is not held back; and it stops at once."""
    import threading
    import time

    from kimonaudit.store import indexer_child

    monkeypatch.setattr(indexer_child, "INDEX_LINGER", 30.0)
    monkeypatch.setattr(indexer_child, "INDEX_POLL", 0.01)
    stop = threading.Event()
    counts = iter([0, 10, indexer_child.INDEX_SMALL, 0])
    asked: list[int] = []

    def waiting() -> int:
        asked.append(1)
        return next(counts)

    started = time.monotonic()
    indexer_child.linger(stop, waiting)
    assert len(asked) == 3 and time.monotonic() - started < 15

    monkeypatch.setattr(indexer_child, "INDEX_LINGER", 0.2)
    started = time.monotonic()
    indexer_child.linger(stop, lambda: 0)
    assert time.monotonic() - started >= 0.2

    stop.set()
    monkeypatch.setattr(indexer_child, "INDEX_LINGER", 30.0)
    started = time.monotonic()
    indexer_child.linger(stop, waiting)
    assert time.monotonic() - started < 15 and len(asked) == 3


def test_index_files_merge_full_text_segments_sixteen_at_a_time(tmp_path):
    """A new index file, and one made with FTS5's default merging, both end
    up with automerge 16 (a setting stored in the file, so every writer of
    it uses it), and the indexer's connection has its larger page cache;
    searching still finds every document."""
    from kimonaudit.store import sqlite_index as si

    path = str(tmp_path / "i.db")
    conn = si.open_index(path)
    cfg = "SELECT v FROM entries_fts_config WHERE k = 'automerge'"
    assert conn.execute(cfg).fetchone() == (si.FTS_AUTOMERGE,) == (16,)
    assert conn.execute("PRAGMA cache_size").fetchone() == (-si.INDEX_CACHE_KIB,)
    conn.execute("INSERT INTO entries_fts (entries_fts, rank) VALUES ('automerge', 4)")
    for i in range(40):  # a segment each
        conn.execute("INSERT INTO entries_fts (rowid, text) VALUES (?, ?)", (i, f"w{i} common"))
    conn.close()
    conn = si.open_index(path)
    assert conn.execute(cfg).fetchone() == (16,)
    found = conn.execute("SELECT count(*) FROM entries_fts WHERE entries_fts MATCH 'common'")
    assert found.fetchone() == (40,)
    conn.close()


def test_the_child_collects_cycles_on_a_clock():
    """The indexer child turns the automatic collector off; its own clock
    still collects a cycle, and stops with the child."""
    import gc
    import threading
    import time
    import weakref

    from kimonaudit.store.indexer_child import collect_on_a_clock

    class Node:
        pass

    stop = threading.Event()
    try:
        thread = collect_on_a_clock(stop, every=0.05)
        assert not gc.isenabled()
        node = Node()
        node.me = node  # a cycle only the collector can free
        gone = weakref.ref(node)
        del node
        deadline = time.monotonic() + 10
        while gone() is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert gone() is None
        stop.set()
        thread.join(5)
        assert not thread.is_alive()
    finally:
        stop.set()
        gc.enable()


def test_sqlite_term_counts_match_postings_across_batches(sqlite_url, key_file):
    """Each term's count is its number of postings, and its number the one
    it was given first, whichever way a batch met it: new, already known,
    numbered first by another indexer, or after the cache overflowed."""
    from kimonaudit.store import sqlite_index as si

    with kimonaudit.open(sqlite_url, key_file=key_file, indexer="off") as log:
        tid = log.create_tenant("acme").id
        for _ in range(4):
            _fill(log, tid, 50)  # the same actors and actions: known terms
        ledger_path = sqlite_url.removeprefix("sqlite:///")
    ledger = si._open_ledger(ledger_path)
    index = si.open_index(si.index_path(ledger_path))
    tno = ledger.execute("SELECT tenant_no FROM tenants").fetchone()[0]
    first, other, small = si.TermCache(), si.TermCache(), si.TermCache(limit=5)
    numbered: dict[tuple[int, str], int] = {}
    for cache, (start, end) in zip(
        (first, first, other, small), ((0, 50), (50, 100), (100, 150), (150, 200)), strict=True
    ):
        rows = si.keyed_rows(ledger, tno, start, end)
        assert si.write_batch(index, cache, si.Batch(tno, start, end, rows))
        for term, field, value in index.execute("SELECT term, field, value FROM terms"):
            assert numbered.setdefault((field, value), term) == term
    wrong = index.execute(
        "SELECT count(*) FROM terms t WHERE t.n <>"
        " (SELECT count(*) FROM postings p WHERE p.term = t.term)"
    ).fetchone()
    assert wrong == (0,)
    assert index.execute("SELECT count(*) FROM postings").fetchone()[0] > 200
    # Some term was counted in more than one batch of 50.
    assert index.execute("SELECT max(n) FROM terms").fetchone()[0] > 50
    index.close()
    ledger.close()
    with kimonaudit.open(sqlite_url, key_file=key_file) as log:
        assert log.verify_index(tid) == (200, [])


def _verify_index(url: str, key_file: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KIMONAUDIT_DATABASE_URL": url, "KIMONAUDIT_SIGNING_KEY_FILE": key_file}
    return subprocess.run(
        [sys.executable, "-m", "kimonaudit", "verify", "--index"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


TAMPERS = {
    "untouched": ("SELECT 1", lambda rid, doc: (), None),
    "posting deleted": (
        "DELETE FROM postings WHERE rid = (SELECT max(rid) FROM postings)",
        lambda rid, doc: (),
        "seq 59",
    ),
    "posting moved to another term": (
        "UPDATE postings SET term = (SELECT max(term) FROM terms)"
        " WHERE rid = ? AND term = (SELECT min(term) FROM postings WHERE rid = ?)",
        lambda rid, doc: (rid, rid),
        "seq 3",
    ),
    "document deleted": (
        "INSERT INTO entries_fts (entries_fts, rowid, text) VALUES ('delete', ?, ?)",
        lambda rid, doc: (rid, doc),
        "seq 3",
    ),
    "document planted": (
        "INSERT INTO entries_fts (rowid, text) VALUES (?, 'planted words')",
        lambda rid, doc: (rid + 1000,),
        "seq 1003",
    ),
}


@pytest.mark.parametrize("case", list(TAMPERS))
def test_verify_index_catches_a_changed_projection(sqlite_url, key_file, case):
    """A deleted or altered index row is named by seq; an untouched index passes."""
    from kimonaudit.core.projection import entry_text

    sql, params, named = TAMPERS[case]
    with kimonaudit.open(sqlite_url, key_file=key_file) as log:
        tid = log.create_tenant("acme").id
        _fill(log, tid)
        assert log.store.wait_indexed()
        rid = log.store.tenant_no(tid) << 40 | 3
        doc = entry_text(log.get_entry(tid, 3))
    conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///") + "-index", isolation_level=None)
    conn.execute(sql, params(rid, doc))
    conn.close()
    proc = _verify_index(sqlite_url, key_file)
    assert "Traceback" not in proc.stderr, proc.stderr
    if named is None:
        assert proc.returncode == 0, proc.stdout
        assert "search index matches the ledger (60 entries)" in proc.stdout
    else:
        assert proc.returncode == 1, proc.stdout
        assert named in proc.stdout


def test_reindex_rebuilds_a_damaged_projection(sqlite_url, key_file):
    """`kimonaudit reindex` starts the index over; verify --index then passes."""
    with kimonaudit.open(sqlite_url, key_file=key_file) as log:
        tid = log.create_tenant("acme").id
        _fill(log, tid)
        assert log.store.wait_indexed()
    conn = sqlite3.connect(sqlite_url.removeprefix("sqlite:///") + "-index", isolation_level=None)
    conn.execute("DELETE FROM postings")
    conn.close()
    assert _verify_index(sqlite_url, key_file).returncode == 1
    env = {
        **os.environ,
        "KIMONAUDIT_DATABASE_URL": sqlite_url,
        "KIMONAUDIT_SIGNING_KEY_FILE": key_file,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "kimonaudit", "reindex"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "reindexed 60 entries" in proc.stdout
    assert _verify_index(sqlite_url, key_file).returncode == 0


def test_an_old_database_is_migrated_to_the_ledger(tmp_path, key_file):
    """A database made before the ledger (schema 3, one `entries` table) opens
    with its entries moved, verifying and searchable."""
    from kimonaudit.core.leaf import payload_commitment
    from kimonaudit.core.merkle import CompactRange
    from kimonaudit.core.projection import entry_text
    from kimonaudit.core.records import Prepared

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER)")
    for version, sql in MIGRATIONS:
        if version > 3:
            break
        for stmt in sql.split(";"):
            if stmt.strip():
                conn.execute(stmt)
        conn.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
    conn.execute("INSERT INTO tenants VALUES ('t_old', 'old', 'free', 0, 12, 0)")
    prepared = []
    for i in range(5):
        payload = b'{"changes":[],"context":{},"metadata":{"note":"migrated %d"}}' % i
        salt = bytes([i]) * 32
        fields = ("ticket.viewed", "ticket", 0, False, None, None, "ticket", str(i))
        rest = ("success", None, None, payload, salt, payload_commitment(salt, payload))
        prepared.append(Prepared(f"ev-{i}", *fields, *rest))
    plan = plan_append(TreeState("t_old"), prepared, {}, 1_700_000_000_000_000)
    for row in plan.rows:
        conn.execute(
            f"INSERT INTO entries ({', '.join(row._fields)}, search_text) "
            f"VALUES ({', '.join('?' * (len(row) + 1))})",
            (*row, entry_text(row)),
        )
    conn.executemany("INSERT INTO tree_nodes VALUES ('t_old', ?, ?, ?)", [n for n in plan.nodes])
    st = plan.state
    conn.execute(
        "INSERT INTO tree_state VALUES ('t_old', ?, ?, ?, 0)",
        (st.size, st.tree.to_bytes(), st.last_recorded_at),
    )
    conn.close()
    assert isinstance(st.tree, CompactRange)
    SQLiteStore(path).close()
    with kimonaudit.open(f"sqlite:///{path}", key_file=key_file) as log:
        assert log.verify("t_old").ok
        assert log.store.wait_indexed()
        assert [r.seq for r in log.search("t_old", '"migrated 3"')] == [3]
        assert log.verify_index("t_old") == (5, [])


# -- PostgreSQL ------------------------------------------------------------------


def _pg(url: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


PG_TAMPERS = {
    "untouched": ("SELECT 1", None),
    "posting deleted": (
        "DELETE FROM search_postings WHERE seq = (SELECT max(seq) FROM search_postings)",
        "seq 59",
    ),
    "posting moved to an unknown term": (
        "UPDATE search_postings SET term = term + 1000000 WHERE seq = 3"
        " AND term = (SELECT min(term) FROM search_postings WHERE seq = 3)",
        "seq 3",
    ),
    "posting planted": (
        "INSERT INTO search_postings SELECT tenant_id, term, 4, recorded_at FROM search_postings"
        " WHERE seq = 5 AND term NOT IN (SELECT term FROM search_postings WHERE seq = 4) LIMIT 1",
        "seq 4",
    ),
    "term renamed": (
        "UPDATE search_terms SET value = 'ticket.deleted' WHERE value = 'ticket.viewed'",
        "search postings differ",
    ),
    "document deleted": ("DELETE FROM search_docs WHERE seq = 3", "seq 3"),
    "document altered": (
        "UPDATE search_docs SET doc = to_tsvector('simple', 'planted words') WHERE seq = 3",
        "seq 3",
    ),
    "document planted": (
        "INSERT INTO search_docs SELECT tenant_id, 1003, recorded_at, doc FROM search_docs"
        " WHERE seq = 3",
        "seq 1003",
    ),
}


@pytest.mark.postgres
@pytest.mark.parametrize("case", list(PG_TAMPERS))
def test_verify_index_catches_a_changed_postgres_projection(pg_url, key_file, case):
    """A deleted, altered or planted projection row is named by seq; an
    untouched projection passes."""
    sql, named = PG_TAMPERS[case]
    with kimonaudit.open(pg_url, key_file=key_file) as log:
        tid = log.create_tenant("acme").id
        _fill(log, tid)
        assert log.store.wait_indexed()
    _pg(pg_url, sql)
    proc = _verify_index(pg_url, key_file)
    assert "Traceback" not in proc.stderr, proc.stderr
    if named is None:
        assert proc.returncode == 0, proc.stdout
        assert "search index matches the ledger (60 entries)" in proc.stdout
    else:
        assert proc.returncode == 1, proc.stdout
        assert named in proc.stdout


@pytest.mark.postgres
def test_reindex_rebuilds_a_damaged_postgres_projection(pg_url, key_file):
    """`kimonaudit reindex` starts the index over; verify --index then passes."""
    with kimonaudit.open(pg_url, key_file=key_file) as log:
        tid = log.create_tenant("acme").id
        _fill(log, tid)
        assert log.store.wait_indexed()
    _pg(pg_url, "DELETE FROM search_postings")
    assert _verify_index(pg_url, key_file).returncode == 1
    env = {**os.environ, "KIMONAUDIT_DATABASE_URL": pg_url, "KIMONAUDIT_SIGNING_KEY_FILE": key_file}
    proc = subprocess.run(
        [sys.executable, "-m", "kimonaudit", "reindex"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "reindexed 60 entries" in proc.stdout
    assert _verify_index(pg_url, key_file).returncode == 0
    with kimonaudit.open(pg_url, key_file=key_file) as log:
        assert _seqs(log, tid, "refund") == [55, 50, 45, 40, 35, 30, 25, 20, 15, 10, 5, 0]


@pytest.mark.postgres
def test_several_processes_index_one_postgres_database(pg_url, key_file, monkeypatch):
    """Two stores (as two processes would) with indexers on one database:
    the tenant lock lets one of them index each batch, and the projection
    comes out exactly once."""
    monkeypatch.setattr(postgres_index, "INDEX_BATCH", 7)
    with (
        kimonaudit.open(pg_url, key_file=key_file) as a,
        kimonaudit.open(pg_url, key_file=key_file) as b,
    ):
        a.store._indexer._batch = b.store._indexer._batch = 7
        tid = a.create_tenant("acme").id
        for i in range(6):
            (a if i % 2 else b).append(tid, [event(j) for j in range(i * 10, i * 10 + 10)])
        assert a.store.wait_indexed() and b.store.wait_indexed()
        assert a.store._indexer.batches + b.store._indexer.batches >= 60 // 7
        assert a.verify_index(tid) == (60, [])
    assert _pg(pg_url, "SELECT count(*) FROM search_docs") == [(60,)]


def test_redaction_takes_the_payload_out_of_the_projection(db_url, key_file):
    """A redacted entry is no longer found by its payload's words, is still
    found by its header, and the projection still matches the ledger."""
    with kimonaudit.open(db_url, key_file=key_file) as log:
        tid = log.create_tenant("acme").id
        _fill(log, tid)
        assert log.store.wait_indexed()
        assert 5 in _seqs(log, tid, '"refund requested"')
        action = log.get_entry(tid, 5).action
        log.redact(tid, 5, "legal request")
        assert 5 not in _seqs(log, tid, '"refund requested"')
        assert 5 in _seqs(log, tid, f"action:{action}")
        assert log.store.wait_indexed()
        assert log.verify_index(tid) == (log.store.tree_state(tid).size, [])


@pytest.mark.postgres
def test_an_old_postgres_database_is_migrated_to_the_ledger(pg_url, key_file):
    """A database made before migration 5 (search_text and seven indexes on
    `entries`) opens with them gone, verifying, and searchable once the
    indexer has built the projection."""
    import psycopg

    from kimonaudit.core.leaf import payload_commitment
    from kimonaudit.core.projection import entry_text
    from kimonaudit.core.records import Prepared
    from kimonaudit.store.postgres_schema import MIGRATIONS as PG_MIGRATIONS
    from kimonaudit.store.postgres_schema import create_partition_sql, month_of

    prepared = []
    for i in range(5):
        payload = b'{"changes":[],"context":{},"metadata":{"note":"migrated %d"}}' % i
        salt = bytes([i]) * 32
        fields = ("ticket.viewed", "ticket", 0, False, None, None, "ticket", str(i))
        rest = ("success", None, None, payload, salt, payload_commitment(salt, payload))
        prepared.append(Prepared(f"ev-{i}", *fields, *rest))
    plan = plan_append(TreeState("t_old"), prepared, {}, 1_700_000_000_000_000)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT)"
        )
        for version, sql in PG_MIGRATIONS:
            if version >= 5 and version != 6:
                continue
            conn.execute(sql)
            conn.execute("INSERT INTO schema_migrations VALUES (%s, 0)", (version,))
        conn.execute(create_partition_sql(month_of(plan.rows[0].recorded_at)))
        conn.execute("INSERT INTO tenants VALUES ('t_old', 'old', 'free', 0, 12, false)")
        for row in plan.rows:
            conn.execute(
                f"INSERT INTO entries ({', '.join(row._fields)}, search_text) "
                f"VALUES ({', '.join(['%s'] * (len(row) + 1))})",
                (*row, entry_text(row)),
            )
        for level, idx, h in plan.nodes:
            conn.execute("INSERT INTO tree_nodes VALUES ('t_old', %s, %s, %s)", (level, idx, h))
        st = plan.state
        conn.execute(
            "INSERT INTO tree_state VALUES ('t_old', %s, %s, %s, 0)",
            (st.size, st.tree.to_bytes(), st.last_recorded_at),
        )
    with kimonaudit.open(pg_url, key_file=key_file) as log:
        assert log.verify("t_old").ok
        assert log.store.wait_indexed()
        assert [r.seq for r in log.search("t_old", '"migrated 3"')] == [3]
        assert log.verify_index("t_old") == (5, [])
    indexes = _pg(
        pg_url,
        "SELECT indexname FROM pg_indexes"
        " WHERE tablename = 'entries' AND schemaname = current_schema()",
    )
    assert indexes == [("entries_pkey",)]
    columns = _pg(
        pg_url,
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_name = 'entries' AND table_schema = current_schema()",
    )
    assert ("search_text",) not in columns


@pytest.mark.postgres
def test_a_purged_prefix_leaves_the_postgres_projection(pg_url, key_file):
    """After retention deletes a prefix of the ledger (and moves
    tree_state.purged), the indexer removes that prefix's projection rows
    and their counts; verify --index passes and search finds only what is left."""
    with kimonaudit.open(pg_url, key_file=key_file) as log:
        tid = log.create_tenant("acme").id
        _fill(log, tid)
        assert log.store.wait_indexed()
        before = _seqs(log, tid, "refund")
        # What a purge of seqs below 20 does to the ledger (retention's code).
        _pg(pg_url, "DELETE FROM entries WHERE tenant_id = %s AND seq < 20", (tid,))
        _pg(pg_url, "UPDATE tree_state SET purged = 20 WHERE tenant_id = %s", (tid,))
        assert log.verify_index(tid) == (40, [])  # leftovers below the purge are ignored
        log.append(tid, [event(99)])
        assert log.store.wait_indexed()
        assert _pg(pg_url, "SELECT min(seq) FROM search_docs") == [(20,)]
        assert _pg(pg_url, "SELECT count(*) FROM search_postings WHERE seq < 20") == [(0,)]
        counts = _pg(
            pg_url,
            "SELECT count(*) FROM search_terms t WHERE t.n <>"
            " (SELECT count(*) FROM search_postings p WHERE p.term = t.term)",
        )
        assert counts == [(0,)]
        assert log.verify_index(tid) == (41, [])
        assert _seqs(log, tid, "refund") == [s for s in before if s >= 20]


@pytest.mark.postgres
def test_the_postgres_indexer_runs_as_a_child_process(pg_url, key_file):
    """KIMONAUDIT_INDEXER=process: another process builds the projection."""
    with kimonaudit.open(pg_url, key_file=key_file, indexer="process") as log:
        tid = log.create_tenant("acme").id
        _fill(log, tid)
        assert log.store.wait_indexed(timeout=60)
        assert log.store.indexed_upto(tid) == 60
        assert _seqs(log, tid, "refund")
        assert log.verify_index(tid) == (60, [])


def test_a_script_without_a_main_guard_can_use_the_child_indexer(tmp_path, key_file):
    """The child is a fresh interpreter, not multiprocessing's spawn, so a
    plain script that opens the log at top level works, and leaves no
    process behind."""
    script = tmp_path / "plain.py"
    script.write_text(
        "import kimonaudit\n"
        f"log = kimonaudit.open('sqlite:///{tmp_path / 'plain.db'}', key_file={key_file!r},"
        " indexer='process')\n"
        "t = log.create_tenant('acme')\n"
        "log.append(t.id, [{'action': 'ticket.viewed', 'metadata': {'note': 'refund'}}])\n"
        "assert log.store.wait_indexed(timeout=60)\n"
        "print(log.store.indexed_upto(t.id), len(log.search(t.id, 'refund')))\n"
        "log.close()\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "1"]
    for status in Path("/proc").glob("[0-9]*/environ"):
        try:
            env = status.read_bytes()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        assert str(tmp_path / "plain.db").encode() not in env, "an indexer child outlived its log"


@pytest.mark.postgres
def test_postgres_documents_are_the_same_from_c_or_the_server(pg_url, key_file, monkeypatch):
    """The stored vectors are the same whether the indexer sends binary
    vectors made in C or text for the server to split, including the
    documents the C code leaves to the server (non-ASCII words, a word the
    parser reads as a number in scientific notation); phrase search and
    verify --index agree with both."""
    from kimonaudit.store import postgres_index

    notes = ["refund requested", "Müller über", "1e5abc 2e10x refund", "plain words here"]
    with kimonaudit.open(pg_url, key_file=key_file, indexer="thread") as log:
        tid = log.create_tenant("acme").id
        batch = [event(i) for i in range(40)]
        for i, ev in enumerate(batch):
            ev["metadata"] = {"note": notes[i % len(notes)]}
        log.append(tid, batch)
        assert log.store.wait_indexed()
        dump = "SELECT seq, doc::text FROM search_docs ORDER BY seq"
        made_in_c = _pg(pg_url, dump)
        assert log.verify_index(tid) == (40, [])
        assert _seqs(log, tid, '"1e5abc 2e10x"') == [38, 34, 30, 26, 22, 18, 14, 10, 6, 2]
        monkeypatch.setattr(postgres_index, "NATIVE_TSVECTORS", False)
        log.reindex()
        assert log.store.wait_indexed()
        assert _pg(pg_url, dump) == made_in_c and len(made_in_c) == 40
        assert _seqs(log, tid, '"muller uber"') == [37, 33, 29, 25, 21, 17, 13, 9, 5, 1]
        # Without the extension at all (psycopg's own COPY of the postings).
        postings = (
            "SELECT t.field, t.value, p.seq, p.recorded_at FROM search_postings p"
            " JOIN search_terms t USING (tenant_id, term) ORDER BY 1, 2, 3"
        )
        with_c = _pg(pg_url, postings)
        monkeypatch.setattr(postgres_index, "native", None)
        log.reindex()
        assert log.store.wait_indexed()
        assert _pg(pg_url, dump) == made_in_c
        assert _pg(pg_url, postings) == with_c and len(with_c) > 80
        assert log.verify_index(tid) == (40, [])


def test_verify_index_while_the_indexer_works_reports_nothing(db_url, key_file):
    """`verify --index` reads the mark and the projection from one snapshot:
    checks run over and over while appends go on and the indexer commits
    batch after batch never name an entry (a mark read before a batch's
    commit and projection rows read after it would look like stray rows)."""
    import threading

    with kimonaudit.open(db_url, key_file=key_file, indexer="thread") as log:
        tid = log.create_tenant("acme").id
        done = threading.Event()

        def appending() -> None:
            try:
                for b in range(30):
                    log.append(tid, [event(b * 500 + k) for k in range(500)])
            finally:
                done.set()

        th = threading.Thread(target=appending)
        th.start()
        checks = 0
        try:
            while not done.is_set() or checks < 3:
                checked, problems = log.store.check_index(tid)
                assert problems == [], (checked, problems[:3])
                checks += 1
        finally:
            th.join()
        assert log.store.wait_indexed(60)
        assert log.store.check_index(tid) == (15_000, [])
