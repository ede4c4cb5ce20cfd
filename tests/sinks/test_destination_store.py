"""The streaming tables behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace

import pytest

import kimonaudit
from kimonaudit.core.destination_records import DeliveryState, DestinationRecord
from kimonaudit.errors import Conflict


def _rec(tid: str, did: str = "dst_1") -> DestinationRecord:
    return DestinationRecord(
        tid, did, "n", "webhook", "json", "{}", b"\x01sealed", "active", None, 1, 1
    )


def test_crud_lease_and_cursor(db_url: str, key_file: str) -> None:
    """Insert, list, lease compare-and-set, guarded saves, delete."""
    log = kimonaudit.open(db_url, key_file=key_file)
    try:
        store = log.store
        t = log.create_tenant("a").id
        store.insert_destination(_rec(t), DeliveryState(t, "dst_1", 5))
        with pytest.raises(Conflict):
            store.insert_destination(_rec(t), DeliveryState(t, "dst_1"))
        assert store.get_destination(t, "dst_1").sealed == b"\x01sealed"
        assert [r.destination_id for r in store.list_destinations(None)] == ["dst_1"]
        assert store.get_destination("other", "dst_1") is None
        assert store.acquire_lease(t, "dst_1", "A", now=100, until=200)
        assert not store.acquire_lease(t, "dst_1", "B", now=150, until=250)
        assert store.acquire_lease(t, "dst_1", "A", now=150, until=300)  # renew
        st = store.get_delivery(t, "dst_1")
        assert (st.lease_owner, st.next_seq) == ("A", 5)
        assert not store.save_delivery(replace(st, next_seq=9), "B")
        assert store.save_delivery(replace(st, next_seq=9, inflight='{"x":1}'), "A")
        assert store.acquire_lease(t, "dst_1", "B", now=301, until=400)  # expired
        assert not store.save_delivery(replace(st, next_seq=11), "A")
        got = store.get_delivery(t, "dst_1")
        assert (got.next_seq, got.inflight, got.lease_owner) == (9, '{"x":1}', "B")
        assert store.delivery_floor(t) == 9
        store.add_lag_sample(t, "dst_1", 60, 3, 1.5, keep_after=0)
        store.add_lag_sample(t, "dst_1", 60, 4, 2.5, keep_after=0)
        store.add_lag_sample(t, "dst_1", 120, 0, 0.0, keep_after=61)
        assert store.lag_samples(t, "dst_1", 0) == [(120, 0, 0.0)]
        assert store.set_destination_state(t, "dst_1", "paused", "why", 7)
        assert store.get_destination(t, "dst_1").state_reason == "why"
        assert store.delivery_floor(t) is None  # paused: holds nothing back
        assert store.delete_destination(t, "dst_1")
        assert store.get_delivery(t, "dst_1") is None and store.delivery_floor(t) is None
    finally:
        log.close()
