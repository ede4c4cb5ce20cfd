"""AuditLog.append's prepared leaves (computed before the lock, with
per-batch caches) are the leaves verify rebuilds from the stored rows."""

from __future__ import annotations

import hashlib

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
