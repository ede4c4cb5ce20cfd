"""AuditLog.append's prepared leaves (computed before the lock, with
per-batch caches) are the leaves verify rebuilds from the stored rows."""

from __future__ import annotations

import hashlib

import kimonaudit
from kimonaudit.core.ledger import leaf_of_row
from kimonaudit.core.merkle import LEAF_PREFIX
from kimonaudit.service import AuditLog
from tests.helpers import event


def test_tricky_ids_actors_and_targets_make_the_leaves_verify_rebuilds(log: AuditLog) -> None:
    t = log.create_tenant("acme %d %s")
    tricky = ['q"uote', "back\\slash", "pct %s %d %%", "ünï €", "emoji 😀"]
    batch = []
    for i in range(60):
        ev = event(i)
        if i % 4 == 0:
            ev["id"] = f"{tricky[i // 4 % len(tricky)]}-{i}"
        if i % 5 == 0:
            ev.pop("actor")
        if i % 7 == 0:
            ev["severity"] = "critical"
        if i % 3 == 0:
            ev["outcome"] = "failure"
        if i % 11 == 0:
            ev["target"] = {"type": 'ty"pe %s', "id": "ïd %d"}
        batch.append(ev)
    receipts = log.append(t.id, batch)
    # A second batch reusing some ids (retries) and adding new events.
    again = log.append(t.id, [batch[4], event(100), batch[8]])
    assert again[0] == receipts[4] and again[2] == receipts[8]
    assert again[1].seq == 60
    for r in [*receipts, again[1]]:
        row = log.get_entry(t.id, r.seq)
        assert row.leaf_hash == r.leaf_hash
        assert r.leaf_hash == hashlib.sha256(LEAF_PREFIX + leaf_of_row(row)).digest()
    assert log.verify(t.id).ok


def test_a_tenant_state_made_stale_by_another_store_is_read_again(db_url, key_file, caplog):
    """The extension's append sessions remember each tenant's state from
    their own last commit and check it only inside the commit's call, under
    the lock. Another store appending in between makes it stale: that group
    is built again on the state read under the lock, and seqs, receipts and
    idempotency come out as if nothing had been remembered."""
    import logging

    from kimonaudit.store.native import native

    with (
        kimonaudit.open(db_url, key_file=key_file, indexer="off") as a,
        kimonaudit.open(db_url, key_file=key_file, indexer="off") as b,
    ):
        tid = a.create_tenant("acme").id
        assert [r.seq for r in a.append(tid, [event(0)])] == [0]  # a remembers size 1
        assert [r.seq for r in b.append(tid, [event(1), event(2, id="y")])] == [1, 2]
        with caplog.at_level(logging.DEBUG, logger="kimonaudit.store.writer"):
            got = a.append(tid, [event(3, id="x"), event(2, id="y")])  # y: b's, a retry
        assert [(r.seq, r.id) for r in got] == [(3, "x"), (2, "y")]
        native_writes = hasattr(native, "PGBatch" if "postgres" in db_url else "SQLiteBatch")
        assert ("stale" in caplog.text) == native_writes  # caught, not used
        assert [(r.seq, r.id) for r in b.append(tid, [event(3, id="x")])] == [(3, "x")]
        assert [r.seq for r in a.append(tid, [event(4)])] == [4]  # remembered and right
        assert b.store.tree_state(tid).size == 5
        report = b.verify(tid)
        assert report.ok, report
