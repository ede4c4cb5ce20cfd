"""The retention purge (issue 8, items 2 and 3) on both stores, over 40
months of simulated history with a purge every month: exactly the expired
entries go, and afterwards verify passes, every retained entry proves
inclusion and every checkpoint, before or after any purge, still proves
consistent; tampering with what the purge kept, or with the retained rows,
is still caught."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

import kimonaudit
from kimonaudit.core import merkle
from kimonaudit.core.records import Receipt
from kimonaudit.core.timefmt import to_us
from kimonaudit.errors import InvalidInput, NotFound
from kimonaudit.purge import months_before
from tests.core.test_merkle import NaiveTree  # the word-for-word RFC 6962 reference
from tests.helpers import event, raw_db


@dataclass
class History:
    log: kimonaudit.AuditLog
    tenants: dict[str, str]
    receipts: dict[str, list[Receipt]] = field(default_factory=dict)
    early_note: str = ""
    # Every leaf hash ever appended, read before each purge: the full tree
    # that the independent reference (NaiveTree) builds proofs from.
    leaves: dict[str, list[bytes]] = field(default_factory=dict)
    proofs_checked: int = 0


def _snapshot(h: History) -> None:
    for tid in h.tenants.values():
        seen = h.leaves.setdefault(tid, [])
        for row in h.log.store.iter_entries(tid, len(seen)):
            assert row.seq == len(seen)
            seen.append(bytes(row.leaf_hash))


def _old_checkpoints_prove(h: History) -> None:
    """Every checkpoint signed before the purge point gets a single RFC 9162
    proof to the newest checkpoint, which the standard verifier accepts against
    the old checkpoint's root and which equals the naive reference's."""
    for tid in h.tenants.values():
        purged = h.log.store.tree_state(tid).purged
        if not purged:
            continue
        _snapshot(h)
        latest = h.log.checkpoint(tid)
        full = NaiveTree(h.leaves[tid][: latest.size])
        for cp in h.log.list_checkpoints(tid):
            if cp.size >= purged:
                continue
            c = h.log.prove_consistency(tid, cp.size, latest.size)
            assert (c.old_root, c.new_root) == (cp.root, latest.root)
            merkle.verify_consistency(cp.size, latest.size, cp.root, latest.root, c.proof)
            assert list(c.proof) == full.consistency_proof(cp.size, latest.size)
            h.proofs_checked += 1


def simulate(log, clock, months: int = 40) -> History:
    h = History(log, {})
    for name, plan in (("free", "free"), ("ent", "enterprise"), ("held", "free")):
        h.tenants[name] = log.create_tenant(name, plan=plan).id
    log.set_legal_hold(h.tenants["held"], True, reason="litigation 4")
    for tid in h.tenants.values():
        h.receipts[tid] = []
    n = 0
    for month in range(months):
        for _week in range(4):
            for tid in h.tenants.values():
                h.receipts[tid] += log.append(tid, [event(n + i) for i in range(3)])
            n += 3
            clock.advance(days=7, hours=14)
        for tid in h.tenants.values():
            log.checkpoint(tid)
        if month == 2:
            h.early_note = log.checkpoint(h.tenants["free"]).note
        if month >= 12:
            _snapshot(h)
            log.run_retention()  # the daily job, here monthly
            _old_checkpoints_prove(h)
    _snapshot(h)
    log.run_retention()
    _old_checkpoints_prove(h)
    return h


@pytest.fixture
def history(db_url, key_file, clock) -> History:
    with kimonaudit.open(db_url, key_file=key_file, clock=clock) as log:
        yield simulate(log, clock)


def _retained(h: History, tid: str) -> list[int]:
    return [r.seq for r in h.receipts[tid] if _present(h, tid, r.seq)]


def _present(h: History, tid: str, seq: int) -> bool:
    try:
        h.log.get_entry(tid, seq)
    except NotFound:
        return False
    return True


def test_exactly_the_expired_entries_are_purged(history: History, clock) -> None:
    """Free keeps 12 months, enterprise 36, a tenant on legal hold everything."""
    h = history
    now = to_us(clock.now)
    for name, months in (("free", 12), ("ent", 36)):
        tid = h.tenants[name]
        cutoff = months_before(now, months)
        for r in h.receipts[tid]:
            assert _present(h, tid, r.seq) is (r.recorded_at >= cutoff), (name, r.seq)
        purged = h.log.store.tree_state(tid).purged
        # The first retained entry (maybe the log's own, e.g. audit_log.purged) is in time.
        assert h.log.get_entry(tid, purged).recorded_at >= cutoff
        assert purged <= min(r.seq for r in h.receipts[tid] if r.recorded_at >= cutoff)
    held = h.tenants["held"]
    assert h.log.store.tree_state(held).purged == 0
    assert all(_present(h, held, r.seq) for r in h.receipts[held][:50])
    # Each purge is an entry with the cut-off, the count and the first retained seq.
    purges = [
        e for e in h.log.store.iter_entries(h.tenants["free"]) if e.action == "audit_log.purged"
    ]
    assert len(purges) >= 10  # the last 12 months of monthly purges (older ones expired)
    import json

    last = json.loads(purges[-1].payload)["metadata"]
    assert last["first_retained_seq"] == h.log.store.tree_state(h.tenants["free"]).purged
    assert last["purged"] > 0 and last["retention_months"] == 12


def test_log_stays_provable_after_purges(history: History) -> None:
    """verify passes and reports the purged prefix; every retained entry proves
    inclusion in the newest checkpoint; every checkpoint proves consistent."""
    h = history
    for name in ("free", "ent", "held"):
        tid = h.tenants[name]
        state = h.log.store.tree_state(tid)
        report = h.log.verify(tid)
        assert report.ok, report.problems
        assert report.purged == state.purged and report.missing == 0
        assert report.checkpoints_checked == len(h.log.list_checkpoints(tid))
        latest = h.log.checkpoint(tid)
        for seq in range(state.purged, latest.size):
            p = h.log.prove_inclusion(tid, seq)
            merkle.verify_inclusion(p.leaf_hash, seq, p.tree_size, p.proof, p.root)
        cps = h.log.list_checkpoints(tid)
        for cp in cps:  # before and after the purge point alike
            c = h.log.prove_consistency(tid, cp.size, latest.size)
            merkle.verify_consistency(c.old_size, c.new_size, cp.root, latest.root, c.proof)
        # Between two checkpoints both signed before the purge, too.
        old = [cp for cp in cps if 0 < cp.size < state.purged]
        if len(old) >= 2:
            c = h.log.prove_consistency(tid, old[0].size, old[-1].size)
            merkle.verify_consistency(c.old_size, c.new_size, old[0].root, old[-1].root, c.proof)
    # Each purge served every older checkpoint its proof (checked as it went).
    assert h.proofs_checked > 100
    # Inside the purged prefix exactly what those proofs need is stored: nothing
    # of the old compact ranges lingers, nothing kept is missing.
    from kimonaudit.core.purged import kept_nodes

    for tid in h.tenants.values():
        purged = h.log.store.tree_state(tid).purged
        sizes = [cp.size for cp in h.log.list_checkpoints(tid) if cp.size < purged]
        with raw_db(h.log.store.url) as run:
            stored = {
                (int(lvl), int(i))
                for lvl, i in run("SELECT level, idx FROM tree_nodes WHERE tenant_id = ?", (tid,))
                if (int(i) + 1) << int(lvl) <= purged
            }
        assert stored == set(kept_nodes(purged, sizes))
    # A checkpoint saved outside the database in month 3 still checks out.
    free = h.tenants["free"]
    assert h.log.verify(free, against=h.early_note).ok
    # Inside the purged prefix only checkpoint sizes can be proven.
    sizes = {cp.size for cp in h.log.list_checkpoints(free)}
    unsigned = next(m for m in range(5, 100) if m not in sizes)
    with pytest.raises(InvalidInput, match="no checkpoint was signed at size"):
        h.log.prove_consistency(free, unsigned, h.log.checkpoint(free).size)


def test_bundle_of_a_purged_log_verifies(history: History) -> None:
    """A full bundle after a purge carries the prefix's compact range and verifies."""
    from kimonaudit.core.bundle import verify_bundle

    tid = history.tenants["free"]
    data, _ = history.log.export_bundle(tid)
    report = verify_bundle(data, [history.log.keys.vkey])
    assert report.ok, report.problems
    assert report.purged_prefix == history.log.store.tree_state(tid).purged > 0


def test_dry_run_and_status(history: History, clock) -> None:
    """A dry run changes nothing; status shows plan, retention, oldest, next purge, hold."""
    h = history
    clock.advance(days=40)
    size = {t: h.log.store.tree_state(t).size for t in h.tenants.values()}
    report = h.log.run_retention(dry_run=True)
    free = next(t for t in report.tenants if t.tenant_id == h.tenants["free"])
    assert free.purged > 0
    assert {t: h.log.store.tree_state(t).size for t in h.tenants.values()} == size
    held = next(t for t in report.tenants if t.tenant_id == h.tenants["held"])
    assert held.skipped == "legal hold" and held.purged == 0
    rows = {s.tenant_id: s for s in h.log.retention_status()}
    s = rows[h.tenants["free"]]
    assert (s.plan, s.retention_months, s.legal_hold) == ("free", 12, False)
    assert s.oldest is not None and s.next_purge is not None and s.entries > 0 and s.bytes > 0
    assert rows[h.tenants["held"]].next_purge is None


def test_tampering_after_a_purge_is_caught(history: History) -> None:
    """A deleted retained row, a changed kept hash, a dropped kept proof or a purge
    point moved forward by hand: each fails verify."""
    h = history
    tid = h.tenants["ent"]
    purged = h.log.store.tree_state(tid).purged
    url = h.log.store.url

    def fails() -> bool:
        return not h.log.verify(tid).ok

    from kimonaudit.core.purged import prefix_nodes

    level, idx = prefix_nodes(purged)[-1]  # the smallest node the purge kept
    with raw_db(url) as run:
        row = run(
            "SELECT level, idx, hash FROM tree_nodes WHERE tenant_id = ? AND level = ? AND idx = ?",
            (tid, level, idx),
        )[0]
        run(
            "UPDATE tree_nodes SET hash = ? WHERE tenant_id = ? AND level = ? AND idx = ?",
            (bytes(32), tid, row[0], row[1]),
        )
    assert fails()
    with raw_db(url) as run:
        run(
            "UPDATE tree_nodes SET hash = ? WHERE tenant_id = ? AND level = ? AND idx = ?",
            (bytes(row[2]), tid, row[0], row[1]),
        )
        proofs = run("SELECT old_size, new_size FROM purge_proofs WHERE tenant_id = ?", (tid,))
    assert not fails()
    with raw_db(url) as run:
        run(
            "DELETE FROM purge_proofs WHERE tenant_id = ? AND old_size = ? AND new_size = ?",
            (tid, *proofs[0]),
        )
    assert fails()
    other = h.tenants["free"]
    assert h.log.verify(other).ok
    with raw_db(url) as run:  # an over-eager purge: 10 more entries gone
        p = h.log.store.tree_state(other).purged
        run("UPDATE tree_state SET purged = ? WHERE tenant_id = ?", (p + 10, other))
        run("DELETE FROM entries WHERE tenant_id = ? AND seq < ?", (other, p + 10))
    assert not h.log.verify(other).ok
    assert purged > 0


def test_tampered_kept_checkpoint_hash_is_caught(history: History) -> None:
    """A hash kept only so that an old checkpoint can be proven (not part of the
    prefix's compact range): changed, verify fails and so does `prove --from M`;
    deleted, verify says the proof can no longer be served; put back, all is well."""
    from kimonaudit.core.purged import checkpoint_nodes, prefix_nodes
    from kimonaudit.errors import VerificationError

    h = history
    tid = h.tenants["ent"]
    purged = h.log.store.tree_state(tid).purged
    latest = h.log.checkpoint(tid).size
    cp, key = next(
        (cp, k)
        for cp in h.log.list_checkpoints(tid)
        if 0 < cp.size < purged
        for k in checkpoint_nodes(cp.size, purged)
        if k not in prefix_nodes(purged)
    )
    where = "tenant_id = ? AND level = ? AND idx = ?"
    with raw_db(h.log.store.url) as run:
        (orig,) = run(f"SELECT hash FROM tree_nodes WHERE {where}", (tid, *key))[0]
        run(f"UPDATE tree_nodes SET hash = ? WHERE {where}", (bytes(32), tid, *key))
    bad = h.log.verify(tid)
    assert not bad.ok
    assert any(p.kind == "purge" and f"checkpoint {cp.size}" in p.message for p in bad.problems)
    with pytest.raises(VerificationError, match="run `kimonaudit verify`"):
        h.log.prove_consistency(tid, cp.size, latest)
    with raw_db(h.log.store.url) as run:
        run(f"DELETE FROM tree_nodes WHERE {where}", (tid, *key))
    bad = h.log.verify(tid)
    assert any("cannot be served" in p.message for p in bad.problems), bad.problems
    with pytest.raises(VerificationError):
        h.log.prove_consistency(tid, cp.size, latest)
    with raw_db(h.log.store.url) as run:
        run(
            "INSERT INTO tree_nodes (tenant_id, level, idx, hash) VALUES (?, ?, ?, ?)",
            (tid, *key, bytes(orig)),
        )
    assert h.log.verify(tid).ok
    c = h.log.prove_consistency(tid, cp.size, latest)
    merkle.verify_consistency(cp.size, latest, cp.root, c.new_root, c.proof)


def test_deleted_retained_row_is_missing_not_purged(db_url, key_file, clock) -> None:
    """A row deleted inside the retained range is reported missing at its seq."""
    with kimonaudit.open(db_url, key_file=key_file, clock=clock) as log:
        t = log.create_tenant("acme")
        for _ in range(16):
            log.append(t.id, [event(i) for i in range(5)])
            log.checkpoint(t.id)
            clock.advance(days=31)
        clock.advance(days=200)
        log.append(t.id, [event(1)])
        report = log.run_retention()
        purged = log.store.tree_state(t.id).purged
        assert report.purged == purged > 0
        assert log.verify(t.id).ok
        with raw_db(log.store.url) as run:
            run("DELETE FROM entries WHERE tenant_id = ? AND seq = ?", (t.id, purged + 2))
        bad = log.verify(t.id)
        assert not bad.ok and bad.missing == 1 and bad.first_bad_seq == purged + 2
        assert bad.purged == purged


def test_ingest_continues_during_a_purge(db_url, key_file, clock) -> None:
    """Appends from another thread succeed while a purge deletes in small batches."""
    import threading

    with kimonaudit.open(db_url, key_file=key_file, clock=clock) as log:
        t = log.create_tenant("acme")
        for _ in range(20):
            log.append(t.id, [event(i) for i in range(100)])
            clock.advance(days=30)
        stop = threading.Event()
        appended: list[int] = []

        def ingest() -> None:
            while not stop.is_set():
                appended.append(log.append(t.id, [event(7)])[0].seq)

        th = threading.Thread(target=ingest)
        th.start()
        try:
            from kimonaudit.purge import run_retention

            report = run_retention(log, clock.now + timedelta(days=1), batch=50)
        finally:
            stop.set()
            th.join()
        assert report.purged > 0 and appended
        assert log.verify(t.id).ok


def test_sqlite_purge_writes_queue_with_appends(tmp_path, key_file, clock) -> None:
    """On SQLite the purge's ledger deletes run on the writer thread, in their own
    transaction, in arrival order with the appends: an append waiting for the lock
    goes next. A failing one rolls back alone and says so, and appends go on."""
    import sqlite3
    import threading

    from kimonaudit.errors import StoreError

    with kimonaudit.open(f"sqlite:///{tmp_path / 'a.db'}", key_file=key_file, clock=clock) as log:
        t = log.create_tenant("acme").id
        log.append(t, [event(i) for i in range(5)])
        writer = log.store._writer
        order: list[str] = []
        gate = threading.Event()

        def slow(s: object) -> int:
            gate.wait(10)
            order.append("task")
            return 7

        done: list[int] = []
        th = threading.Thread(target=lambda: done.append(writer.run(slow)))
        th.start()
        appender = threading.Thread(
            target=lambda: order.append(f"append {log.append(t, [event(9)])[0].seq}")
        )
        appender.start()
        gate.set()
        th.join()
        appender.join()
        assert done == [7] and order == ["task", "append 5"]

        def broken(s: object) -> None:
            s.conn.execute("DELETE FROM tree_state")  # type: ignore[attr-defined]
            raise sqlite3.OperationalError("disk I/O error")

        with pytest.raises(StoreError, match="disk I/O error"):
            writer.run(broken)
        assert log.store.tree_state(t).size == 6  # rolled back
        assert log.append(t, [event(10)])[0].seq == 6
        assert log.verify(t).ok


@pytest.mark.postgres
def test_postgres_drops_whole_monthly_partitions(pg_url, key_file, clock) -> None:
    """When every row of an old month is expired, its partition is dropped rather than
    deleted row by row; younger months stay; the log still verifies."""
    with kimonaudit.open(pg_url, key_file=key_file, clock=clock) as log:
        a = log.create_tenant("a").id
        b = log.create_tenant("b").id
        for _ in range(18):
            for t in (a, b):
                log.append(t, [event(i) for i in range(20)])
            log.checkpoint(a)
            clock.advance(days=30)
        report = log.run_retention()
        dropped = {name for t in report.tenants for name in t.partitions_dropped}
        assert len(dropped) >= 4, report.to_json()
        with raw_db(pg_url) as run:
            names = {
                r[0]
                for r in run("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            }
        assert not dropped & names
        for t in (a, b):
            assert log.verify(t).ok
            assert log.store.tree_state(t).purged > 0


def _old_history(path, key_file) -> str:
    """A SQLite log whose entries were written 30 to 6 months before today."""
    from datetime import UTC, datetime

    from tests.conftest import FakeClock

    clock = FakeClock(datetime.now(UTC) - timedelta(days=30 * 30))
    url = f"sqlite:///{path}"
    with kimonaudit.open(url, key_file=key_file, clock=clock) as log:
        t = log.create_tenant("acme", plan="free")
        for _ in range(24):
            log.append(t.id, [event(i) for i in range(10)])
            log.checkpoint(t.id)
            clock.advance(days=30)
    return t.id


def test_cli_retention_run_and_status(tmp_path) -> None:
    """`retention run --dry-run`, `retention run` and `retention status` on real history."""
    import json

    from tests.test_cli import kimon

    key = str(tmp_path / "audit.key")
    tid = _old_history(tmp_path / "audit.db", key)
    p = kimon(tmp_path, "retention", "run", "--dry-run", "--json")
    assert p.returncode == 0, p.stderr
    (t,) = json.loads(p.stdout)["tenants"]
    assert t["purged"] > 100 and json.loads(p.stdout)["dry_run"] is True
    p = kimon(tmp_path, "retention", "status", "--json")
    (s,) = json.loads(p.stdout)
    assert s["purged"] == 0 and s["retention_months"] == 12 and s["next_purge"] is not None
    p = kimon(tmp_path, "retention", "run", "--tenant", tid)
    assert p.returncode == 0 and f"purged {t['purged']:,} entries" in p.stdout, p.stdout
    p = kimon(tmp_path, "retention", "status")
    assert p.returncode == 0 and "12 months" in p.stdout
    p = kimon(tmp_path, "verify", "--tenant", tid, "--json")
    assert p.returncode == 0 and json.loads(p.stdout)[0]["purged"] == t["purged"]
    p = kimon(tmp_path, "verify", "--tenant", tid)
    assert p.returncode == 0 and f"{t['purged']:,} before them purged by policy" in p.stdout
    # `prove --from M` for a checkpoint signed before the purge: one RFC 9162 proof.
    p = kimon(tmp_path, "checkpoint", "--tenant", tid, "--json")
    latest = json.loads(p.stdout)
    p = kimon(tmp_path, "prove", "--tenant", tid, "--from", "30", "--to", str(latest["tree_size"]))
    assert p.returncode == 0, p.stderr
    proof = json.loads(p.stdout)
    merkle.verify_consistency(
        30,
        latest["tree_size"],
        base64.b64decode(proof["old_root"]),
        base64.b64decode(latest["root"]),
        [base64.b64decode(x) for x in proof["proof"]],
    )
    p = kimon(tmp_path, "prove", "--tenant", tid, "--from", "35", "--to", str(latest["tree_size"]))
    assert p.returncode == 2 and "no checkpoint was signed at size 35" in p.stderr
    assert "Traceback" not in p.stderr


def test_serve_job_purges(tmp_path, key_file) -> None:
    """The retention job of `kimonaudit serve` runs the purge on its schedule."""
    import time

    from kimonaudit.api.retention_job import RetentionJob

    tid = _old_history(tmp_path / "a.db", key_file)
    with kimonaudit.open(f"sqlite:///{tmp_path / 'a.db'}", key_file=key_file) as log:
        job = RetentionJob(log, interval=3600, first_delay=0.01)
        job.start()
        deadline = time.monotonic() + 30
        while job.runs == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        job.stop()
        assert job.runs == 1 and job.errors == 0
        assert log.store.tree_state(tid).purged > 0 and log.verify(tid).ok


def test_sqlite_purge_gives_space_back(tmp_path, key_file, clock) -> None:
    """A new SQLite file is made with incremental auto-vacuum, and a purge shrinks it."""
    import os
    import time

    url = f"sqlite:///{tmp_path / 'a.db'}"

    def checkpoint() -> None:
        # The store's own checkpoint thread may hold the checkpoint lock at
        # that moment (SQLite then answers busy, and nothing is copied back
        # into the file): try again until one completes.
        deadline = time.monotonic() + 30
        with raw_db(url) as run:
            while run("PRAGMA wal_checkpoint(TRUNCATE)")[0][0] != 0:
                assert time.monotonic() < deadline, "no checkpoint completed in 30 s"
                time.sleep(0.05)

    with kimonaudit.open(url, key_file=key_file, clock=clock) as log:
        t = log.create_tenant("acme").id
        for _ in range(30):
            log.append(t, [event(i, metadata={"pad": "x" * 2000}) for i in range(40)])
            clock.advance(days=30)
        log.checkpoint(t)
        with raw_db(url) as run:
            assert run("PRAGMA auto_vacuum")[0][0] == 2
        checkpoint()
        before = os.path.getsize(tmp_path / "a.db")
        assert log.run_retention().purged > 0
        checkpoint()
        assert os.path.getsize(tmp_path / "a.db") < before * 0.7
        assert log.verify(t).ok


def test_purge_waits_for_an_active_siem_destination(db_url, key_file, clock) -> None:
    """Nothing an active destination has yet to deliver is purged; once it is paused,
    the purge goes ahead (docs/streaming.md, "Retention")."""
    from kimonaudit.destinations import Destinations
    from kimonaudit.sinks import ssrf

    with kimonaudit.open(db_url, key_file=key_file, clock=clock) as log:
        t = log.create_tenant("acme").id
        for _ in range(15):
            log.append(t, [event(i) for i in range(10)])
            clock.advance(days=31)
        dests = Destinations(log, ssrf.parse_allowlist("127.0.0.0/8"))
        dest, _ = dests.create(
            t, name="siem", kind="webhook", url="http://127.0.0.1:9/hook", start=20
        )
        report = log.run_retention()
        assert log.store.tree_state(t).purged == 20 and report.purged == 20
        dests.pause(t, dest.record.destination_id)
        log.run_retention()
        assert log.store.tree_state(t).purged > 20
        assert log.verify(t).ok


def _forge_purge(log, tid: str, upto: int) -> None:
    """What someone with database access (and our code) could do: keep a correct
    compact range for a later purge point and delete the rows below it."""
    from kimonaudit.core.purged import prefix_nodes
    from kimonaudit.store.retention import purge_store
    from kimonaudit.treeread import TreeReader

    keys = prefix_nodes(upto)
    got = TreeReader(log.store, tid).node_hashes(keys)
    store = purge_store(log.store)
    store.begin_purge(tid, upto, [(lvl, i, got[(lvl, i)]) for lvl, i in keys], [])
    while store.delete_purged(tid, upto, 1000):
        pass


def test_unrecorded_purge_is_caught_and_an_interrupted_one_completed(db_url, key_file, clock):
    """A purge point that no audit_log.purged entry records fails verify, even with a
    correct compact range; the next retention run records an interrupted purge."""
    with kimonaudit.open(db_url, key_file=key_file, clock=clock) as log:
        t = log.create_tenant("acme").id
        for _ in range(16):
            log.append(t, [event(i) for i in range(10)])
            clock.advance(days=31)
        log.run_retention()
        purged = log.store.tree_state(t).purged
        assert log.verify(t).ok
        _forge_purge(log, t, purged + 25)  # 25 entries inside retention, gone
        bad = log.verify(t)
        assert not bad.ok and any(p.kind == "purge" for p in bad.problems)

    with kimonaudit.open(db_url, key_file=key_file, clock=clock) as log:
        other = log.create_tenant("beta").id
        for _ in range(16):
            log.append(other, [event(i) for i in range(10)])
            clock.advance(days=31)
        from kimonaudit.purge import plan

        upto = plan(log, other, log.now_us()).purge_point
        _forge_purge(log, other, upto)  # as if a run stopped before recording itself
        assert not log.verify(other).ok
        log.run_retention(tenant_id=other)
        assert log.verify(other).ok
