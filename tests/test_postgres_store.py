"""PostgreSQL-only behaviour of the store: monthly partitions, the per-tenant
row lock across processes, migrations, the COPY write path and connection
errors. The contract every store meets is in test_log_contract.py."""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import UTC, datetime

import psycopg
import pytest

import kimonaudit
from kimonaudit.core.leaf import payload_commitment
from kimonaudit.core.ledger import leaf_of_row, plan_append
from kimonaudit.core.merkle import leaf_hash
from kimonaudit.core.records import Prepared, TreeState
from kimonaudit.errors import StoreError
from kimonaudit.store.native import native
from kimonaudit.store.postgres import PostgresStore, _WriteSession
from kimonaudit.store.postgres_schema import MIGRATIONS, month_bounds
from tests.helpers import event

pytestmark = pytest.mark.postgres


def _us(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp()) * 1_000_000  # type: ignore[misc]


def _sql(url: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def _partitions(url: str) -> dict[str, str]:
    rows = _sql(
        url,
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'entries'::regclass",
    )
    return {str(n): str(b) for n, b in rows}


def _prepared(i: int, event_id: str) -> Prepared:
    payload, salt = b'{"n":%d}' % i, bytes([i % 256]) * 32
    return Prepared(
        event_id, "ticket.viewed", "ticket", 0, False, None, None, "ticket", str(i),
        "success", None, None, payload, salt, payload_commitment(salt, payload),
    )  # fmt: skip


# -- partitions ------------------------------------------------------------------
def test_month_bounds_are_utc_calendar_months():
    """Partition bounds are [first µs of the month, first µs of the next), December rolling over."""
    assert month_bounds((2026, 11)) == (_us(2026, 11, 1), _us(2026, 12, 1))
    assert month_bounds((2026, 12)) == (_us(2026, 12, 1), _us(2027, 1, 1))
    assert month_bounds((2028, 2)) == (_us(2028, 2, 1), _us(2028, 3, 1))  # leap year


def test_rows_of_two_months_land_in_two_partitions(pg_url, key_file, clock):
    """The last µs of January and the first of February go to entries_p202601 and _p202602."""
    clock.now = datetime(2026, 1, 31, 23, 59, 59, 999_999, tzinfo=UTC)
    with kimonaudit.open(pg_url, key_file=key_file, clock=clock) as log:
        t = log.create_tenant("acme")
        log.append(t.id, [event(i) for i in range(3)])
        clock.now = datetime(2026, 2, 1, tzinfo=UTC)
        log.append(t.id, [event(i) for i in range(3, 5)])
        assert log.verify(t.id).ok
    placed = dict(_sql(pg_url, "SELECT tableoid::regclass::text, count(*) FROM entries GROUP BY 1"))
    assert placed == {"entries_p202601": 3, "entries_p202602": 2}
    parts = _partitions(pg_url)
    assert parts["entries_p202601"] == (
        f"FOR VALUES FROM ('{_us(2026, 1, 1)}') TO ('{_us(2026, 2, 1)}')"
    )
    assert parts["entries_default"] == "DEFAULT"


def test_a_partition_created_elsewhere_is_reused(pg_url, key_file, clock):
    """A second store finds the month's partition another process made and adds no other."""
    clock.now = datetime(2026, 3, 10, tzinfo=UTC)
    with kimonaudit.open(pg_url, key_file=key_file, clock=clock) as a:
        t = a.create_tenant("acme")
        a.append(t.id, [event(0)])
        with kimonaudit.open(pg_url, key_file=key_file, clock=clock) as b:
            b.append(t.id, [event(1)])
            a.append(t.id, [event(2)])
    assert sorted(_partitions(pg_url)) == ["entries_default", "entries_p202603"]
    assert _sql(pg_url, "SELECT count(*) FROM entries_p202603") == [(3,)]


def test_concurrent_partition_creation_from_two_stores(pg_url):
    """Two stores creating the same months at once both succeed, leaving one partition each."""
    stores = [PostgresStore(pg_url), PostgresStore(pg_url)]
    errors: list[BaseException] = []

    def create(s: PostgresStore) -> None:
        try:
            s._ensure_partitions([(2027, m) for m in range(1, 7)])
        except BaseException as exc:
            errors.append(exc)

    try:
        threads = [threading.Thread(target=create, args=(s,)) for s in stores]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
    finally:
        for s in stores:
            s.close()
    assert errors == []
    assert sorted(_partitions(pg_url)) == ["entries_default"] + [
        f"entries_p2027{m:02d}" for m in range(1, 7)
    ]


def test_rows_of_a_month_already_in_the_default_partition_stay_there(pg_url, key_file, clock):
    """If the default partition holds rows of a month, appends of that month still commit there."""
    clock.now = datetime(2026, 5, 20, tzinfo=UTC)
    with kimonaudit.open(pg_url, key_file=key_file, clock=clock) as log:
        t = log.create_tenant("acme")
        # A stray row of May (another tenant) written while no May partition existed.
        _sql(
            pg_url,
            "INSERT INTO entries (tenant_id, seq, event_id, recorded_at, action, category,"
            " severity, security, outcome, payload_commitment, leaf_hash)"
            " VALUES ('other', 0, 'x', %s, 'a.b', 'c', 0, false, 'success', '\\x00', '\\x00')",
            (_us(2026, 5, 2),),
        )
        receipts = log.append(t.id, [event(i) for i in range(4)])
        assert [r.seq for r in receipts] == [0, 1, 2, 3]
        assert log.verify(t.id).ok
    assert "entries_p202605" not in _partitions(pg_url)
    assert _sql(pg_url, "SELECT count(*) FROM entries_default WHERE tenant_id = %s", (t.id,)) == [
        (4,)
    ]


# -- the per-tenant lock across processes ---------------------------------------------
def _append_worker(url, key_file, tenant_id, worker, batches, size, barrier, out):  # type: ignore[no-untyped-def]
    """Runs in a spawned process: append `batches` batches as fast as possible."""
    with kimonaudit.open(url, key_file=key_file) as log:
        barrier.wait(60)
        got = []
        for b in range(batches):
            base = (worker * batches + b) * size
            got.append(
                [r.seq for r in log.append(tenant_id, [event(base + k) for k in range(size)])]
            )
    out.put((worker, got))


def test_two_processes_appending_to_one_tenant_stay_gap_free(pg_url, key_file):
    """Concurrent appends from two processes give seqs 0..n-1 once each, and the log verifies."""
    with kimonaudit.open(pg_url, key_file=key_file) as log:
        tid = log.create_tenant("acme").id
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    batches, size = 12, 40
    procs = [
        ctx.Process(
            target=_append_worker,
            args=(pg_url, key_file, tid, w, batches, size, barrier, out),
        )
        for w in range(2)
    ]
    for p in procs:
        p.start()
    try:
        results = dict(out.get(timeout=240) for _ in procs)
    finally:
        for p in procs:
            p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    seqs = []
    for got in results.values():
        for batch in got:
            assert batch == list(range(batch[0], batch[0] + size))  # a batch is contiguous
            seqs.extend(batch)
    total = 2 * batches * size
    assert sorted(seqs) == list(range(total))
    with kimonaudit.open(pg_url, key_file=key_file) as log:
        assert log.store.tree_state(tid).size == total
        report = log.verify(tid)
        assert report.ok, report


def test_append_waits_for_the_tenant_row_lock(pg_url, key_file):
    """While another session holds the tenant's tree_state row FOR UPDATE, appends wait."""
    with kimonaudit.open(pg_url, key_file=key_file) as log:
        tid = log.create_tenant("acme").id
        log.append(tid, [event(0)])
        done: list[int] = []
        with psycopg.connect(pg_url) as other:
            other.execute("SELECT size FROM tree_state WHERE tenant_id = %s FOR UPDATE", (tid,))
            th = threading.Thread(
                target=lambda: done.extend(r.seq for r in log.append(tid, [event(1)]))
            )
            th.start()
            th.join(1.0)
            assert th.is_alive() and done == []
            other.commit()
        th.join(30)
        assert done == [1]


# -- migrations ----------------------------------------------------------------------
def test_reopening_applies_no_migration_twice(pg_url, key_file):
    """A second open finds the schema current: same migration rows, data kept, seqs continue."""
    with kimonaudit.open(pg_url, key_file=key_file) as log:
        tid = log.create_tenant("acme").id
        log.append(tid, [event(i) for i in range(3)])
    before = _sql(pg_url, "SELECT version, applied_at FROM schema_migrations ORDER BY version")
    with kimonaudit.open(pg_url, key_file=key_file) as log:
        assert [r.seq for r in log.append(tid, [event(3)])] == [3]
        assert log.verify(tid).ok
    after = _sql(pg_url, "SELECT version, applied_at FROM schema_migrations ORDER BY version")
    assert after == before and [v for v, _ in after] == [v for v, _ in MIGRATIONS]


def test_concurrent_openers_migrate_once(pg_url):
    """Four stores opening a fresh schema at once all succeed; each migration is recorded once."""
    opened: list[PostgresStore] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_one() -> None:
        start.wait(30)
        try:
            opened.append(PostgresStore(pg_url, pool_size=1))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    for s in opened:
        s.close()
    assert errors == [] and len(opened) == 4
    rows = _sql(pg_url, "SELECT version FROM schema_migrations ORDER BY version")
    assert rows == [(v,) for v, _ in MIGRATIONS]


def test_a_search_path_without_a_schema_is_a_clear_error(pg_admin_url):
    """A search_path naming no existing schema fails with StoreError, not a driver error."""
    url = pg_admin_url + ("&" if "?" in pg_admin_url else "?") + "options=-csearch_path%3Dnope_x1"
    with pytest.raises(StoreError, match="search_path"):
        PostgresStore(url)


# -- the COPY write path --------------------------------------------------------------
def test_copy_round_trips_every_column_kind(pg_url, key_file):
    """Non-ASCII text, quotes, backslashes, NULLs, bytea and booleans survive the binary COPY."""
    odd = {
        "action": "auth.login.failed",
        "actor": {"id": "agënt\\\"'7", "type": "agent", "name": "Zoë 'Q' \\ \"x\""},
        "target": {"type": "user", "id": "ü\\N,|;🙂"},
        "context": {"ip": "2001:db8::1", "user_agent": "\\.\\N"},
        "occurred_at": "2026-01-01T00:00:00.123456Z",
    }
    bare = {"action": "auth.logout", "outcome": "success"}
    with kimonaudit.open(pg_url, key_file=key_file) as log:
        tid = log.create_tenant("acme").id
        receipts = log.append(tid, [odd, bare])
        rows = [log.get_entry(tid, r.seq) for r in receipts]
        for r, row in zip(receipts, rows, strict=True):
            assert row.leaf_hash == r.leaf_hash == leaf_hash(leaf_of_row(row))
            assert payload_commitment(row.salt, row.payload) == row.payload_commitment
        assert rows[0].target_id == "ü\\N,|;🙂" and rows[0].security is True
        assert rows[0].ip is not None and len(rows[0].ip) == 16
        assert rows[0].occurred_at is not None
        assert rows[1].actor_hash is None and rows[1].target_id is None and rows[1].ip is None
        assert rows[1].security is False
        assert log.verify(tid).ok
    ids = _sql(
        pg_url, "SELECT event_id, seq FROM event_ids WHERE tenant_id = %s ORDER BY seq", (tid,)
    )
    assert ids == [(r.id, r.seq) for r in receipts]


def test_a_failed_copy_writes_nothing(pg_url):
    """A row the server rejects mid-COPY fails the append; entries, ids and state stay put."""
    store = PostgresStore(pg_url)
    try:
        from kimonaudit.core.records import TenantRecord

        store.insert_tenant(TenantRecord("t1", "acme", "free", 0, 12))

        def build(state: TreeState, existing):  # type: ignore[no-untyped-def]
            plan = plan_append(
                state, [_prepared(0, "a"), _prepared(1, "b")], existing, _us(2026, 1, 2)
            )
            plan.rows[1] = plan.rows[1]._replace(target_id="nul \x00 byte")
            return plan

        with pytest.raises(StoreError, match="append"):
            store.append("t1", ["a", "b"], build)
        assert store.tree_state("t1").size == 0
        assert store.get_entry("t1", 0) is None
        assert store.get_entry_by_event_id("t1", "a") is None
        ok = store.append(
            "t1", ["a"], lambda s, e: plan_append(s, [_prepared(0, "a")], e, _us(2026, 1, 2))
        )
        assert [r.seq for r in ok.receipts] == [0]
    finally:
        store.close()
    assert _sql(pg_url, "SELECT count(*) FROM event_ids") == [(1,)]


def test_ids_written_earlier_in_a_group_are_seen_before_commit(pg_url):
    """Within one transaction, a later request retrying an id gets the receipt buffered for COPY."""
    store = PostgresStore(pg_url)
    session = _WriteSession(store, store._connect())
    try:
        from kimonaudit.core.records import TenantRecord

        store.insert_tenant(TenantRecord("t1", "acme", "free", 0, 12))
        session.begin()
        state = session.lock_state("t1")
        first = plan_append(state, [_prepared(0, "a")], session.existing("t1", ["a"]), 5)
        session.write(first)
        seen = session.existing("t1", ["a", "b"])
        assert seen == {"a": first.rows[0]}
        second = plan_append(first.state, [_prepared(0, "a"), _prepared(1, "b")], seen, 5)
        session.write(second)
        session.commit()
        assert [r.seq for r in second.receipts] == [0, 1]
        assert store.tree_state("t1").size == 2
        assert store.get_entry_by_event_id("t1", "b").seq == 1  # type: ignore[union-attr]
    finally:
        session.close()
        store.close()


# -- connection errors ----------------------------------------------------------------
def _writer_pid(log: kimonaudit.AuditLog) -> int:
    session = log.store._writer._session  # type: ignore[attr-defined]
    batch = getattr(session, "batch", None)  # the extension's PGBatch
    return int(batch.pid if batch is not None else session.conn.info.backend_pid)


@pytest.mark.parametrize("native_writes", [True, False])
def test_writer_reconnects_after_its_connection_is_killed(
    pg_url, key_file, monkeypatch, native_writes
):
    """An idle writer connection terminated by the server is replaced; the
    next append commits (nothing of its group had been sent). Both append
    connections: the extension's and psycopg's."""
    import kimonaudit.store.postgres as pg

    monkeypatch.setattr(pg, "NATIVE_WRITES", native_writes)
    with kimonaudit.open(pg_url, key_file=key_file) as log:
        session = log.store._writer._session  # type: ignore[attr-defined]
        assert hasattr(session, "batch") == (native_writes and hasattr(native, "PGBatch"))
        tid = log.create_tenant("acme").id
        log.append(tid, [event(0)])
        pid = _writer_pid(log)
        assert _sql(pg_url, "SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
        while _sql(pg_url, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)):
            time.sleep(0.01)
        assert [r.seq for r in log.append(tid, [event(1), event(2)])] == [1, 2]
        assert _writer_pid(log) != pid
        assert log.verify(tid).ok


@pytest.mark.parametrize("native_writes", [True, False])
def test_a_connection_lost_while_committing_is_reported_not_retried(
    pg_url, key_file, monkeypatch, native_writes
):
    """The connection dies in the commit's last round trip, the one with the
    COMMIT: whether the group landed is unknown to the writer, so the caller
    gets CommitUnknown and nothing is run twice; the next append connects
    again and the log verifies. Both append connections."""
    import kimonaudit.store.postgres as pg
    from kimonaudit.store.writer import CommitUnknown

    monkeypatch.setattr(pg, "NATIVE_WRITES", native_writes)
    with kimonaudit.open(pg_url, key_file=key_file, indexer="off") as log:
        tid = log.create_tenant("acme").id
        log.append(tid, [event(0)])
        with monkeypatch.context() as m:
            # The state update, just before COMMIT, ends the connection instead.
            kill = "SELECT pg_terminate_backend(pg_backend_pid()), {}, {}, {}, {}, {}"
            m.setattr(pg, "_UPDATE_STATE", kill.format(*["%s"] * 5))
            m.setattr(pg, "_UPDATE_STATE_N", kill.format("$1::int8", "$2::bytea", "$3", "$4", "$5"))
            with pytest.raises(CommitUnknown, match="may or may not have been stored"):
                log.append(tid, [event(1), event(2)])
        assert log.store.tree_state(tid).size == 1  # killed before its COMMIT ran
        assert [r.seq for r in log.append(tid, [event(3)])] == [1]
        assert log.verify(tid).ok


def test_unreachable_server_is_a_store_error_without_the_password(key_file):
    """A closed port gives StoreError naming host:port/db, never a psycopg error or the password."""
    url = "postgresql://postgres:s3cret-pw@127.0.0.1:1/test"
    t0 = time.monotonic()
    with pytest.raises(StoreError) as exc:
        kimonaudit.open(url, key_file=key_file)
    assert time.monotonic() - t0 < 30
    assert not isinstance(exc.value, psycopg.Error)
    assert "cannot connect to PostgreSQL at 127.0.0.1:1/test" in str(exc.value)
    assert "s3cret-pw" not in str(exc.value)


def test_readers_run_without_jit(pg_url):
    """Search's probe plans are costed as if they read every candidate, so
    PostgreSQL's JIT compiled them (100-450 ms at 10M entries) before a 5 ms
    answer: the readers switch it off; the server's default is on."""
    from kimonaudit.store.postgres import PostgresStore

    store = PostgresStore(pg_url, indexer="off")
    try:
        with store._read("checking") as conn:
            assert conn.execute("SHOW jit").fetchone()[0] == "off"
        with psycopg.connect(pg_url) as plain:
            assert plain.execute("SHOW jit").fetchone()[0] == "on"
    finally:
        store.close()
