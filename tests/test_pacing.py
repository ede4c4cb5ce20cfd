"""The indexer's pacing (kimonaudit.core.pacing): when a tenant's batch is due."""

from __future__ import annotations

import time

import pytest

import kimonaudit
from kimonaudit.core import pacing
from kimonaudit.core.pacing import Pacer
from tests.helpers import event


def test_a_batch_is_due_when_enough_entries_wait():
    p = Pacer(min_batch=100, max_delay=1.0)
    p.look(["a"], now=10.0)
    assert not p.due("a", 99, now=10.0)
    assert p.due("a", 100, now=10.0)
    assert not p.due("a", 0, now=99.0)  # nothing waits: never due


def test_a_batch_is_due_when_the_oldest_entry_may_have_waited_long_enough():
    p = Pacer(min_batch=100, max_delay=1.0)
    p.look(["a"], now=10.0)  # first seen behind
    p.look(["a"], now=10.5)  # still behind: its time stays 10.0
    assert not p.due("a", 1, now=10.99)
    assert p.due("a", 1, now=11.0)


def test_after_a_batch_that_caught_up_only_newer_entries_wait():
    p = Pacer(min_batch=100, max_delay=1.0)
    p.look(["a"], now=10.0)
    # The look at 12.0 found "a" due; its batch reached that look's size.
    p.look(["a"], now=12.0)
    assert p.due("a", 5, now=12.0)
    p.indexed("a", caught_up=True, looked_at=12.0)
    p.look(["a"], now=12.5)
    assert not p.due("a", 5, now=12.9)
    assert p.due("a", 5, now=13.0)


def test_a_batch_that_left_entries_behind_keeps_the_tenant_due():
    p = Pacer(min_batch=100, max_delay=1.0)
    p.look(["a"], now=10.0)
    p.indexed("a", caught_up=False, looked_at=11.0)
    p.look(["a"], now=11.1)
    assert p.due("a", 5, now=11.1)


def test_a_tenant_caught_up_is_forgotten_and_starts_again_when_next_behind():
    p = Pacer(min_batch=100, max_delay=1.0)
    p.look(["a", "b"], now=10.0)
    p.look(["b"], now=20.0)  # "a" caught up (another indexer, say)
    p.look(["a", "b"], now=20.5)
    assert not p.due("a", 5, now=21.0)
    assert p.due("b", 5, now=21.0)
    assert p.wait_hint(now=21.0, idle=5.0) == 0.0  # "b" is overdue
    assert p.wait_hint(now=20.5, idle=5.0) == 0.0
    p.look(["a"], now=21.0)
    assert p.wait_hint(now=21.0, idle=5.0) == pytest.approx(0.5)
    p.look([], now=22.0)
    assert p.wait_hint(now=22.0, idle=5.0) == 5.0


def test_hurry_makes_every_tenant_due_until_none_is_behind():
    p = Pacer(min_batch=100, max_delay=60.0)
    p.look(["a", "b"], now=10.0)
    p.hurry()
    assert p.due("a", 1, now=10.0) and p.due("b", 1, now=10.0)
    p.look(["b"], now=10.1)
    assert p.due("b", 1, now=10.1)
    p.look([], now=10.2)  # caught up: hurrying is over
    p.look(["b"], now=10.3)
    assert not p.due("b", 1, now=10.3)


def test_the_module_settings_are_read_when_a_pacer_is_made(monkeypatch):
    monkeypatch.setattr(pacing, "MIN_BATCH", 7)
    monkeypatch.setattr(pacing, "MAX_DELAY", 3.5)
    assert Pacer().settings == (7, 3.5)
    assert Pacer(9, 0.0).settings == (9, 0.0)
    with pytest.raises(ValueError, match="min_batch"):
        Pacer(0, 1.0)
    with pytest.raises(ValueError, match="max_delay"):
        Pacer(1, -1.0)


def _indexed_within(log, tid: str, n: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if log.store.indexed_upto(tid) >= n:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("indexer", ["thread", "process"])
def test_entries_wait_for_a_batch_but_stay_searchable_and_a_waiter_hurries(
    db_url, key_file, monkeypatch, indexer
):
    """With a long delay, a few entries are not indexed on their own, yet
    search finds them (the un-indexed tail); wait_indexed does not wait for
    the delay; a full batch is indexed without anyone waiting."""
    monkeypatch.setattr(pacing, "MIN_BATCH", 50)
    monkeypatch.setattr(pacing, "MAX_DELAY", 3600.0)
    with kimonaudit.open(db_url, key_file=key_file, indexer=indexer) as log:
        tid = log.create_tenant("acme").id
        log.append(tid, [event(i) for i in range(10)])
        assert not _indexed_within(log, tid, 10, 0.5)
        assert log.store.indexed_upto(tid) == 0
        viewed = [i for i in range(10) if event(i)["action"] == "ticket.viewed"]
        assert viewed
        found = log.search(tid, "action:ticket.viewed", limit=100)
        assert sorted(r.seq for r in found) == viewed
        t0 = time.monotonic()
        assert log.store.wait_indexed(timeout=60)
        assert time.monotonic() - t0 < 60
        assert log.store.indexed_upto(tid) == 10
        # 10 entries: still fewer than a batch, never hurried.
        log.append(tid, [event(i) for i in range(10, 20)])
        assert not _indexed_within(log, tid, 20, 0.5)
        # 50 waiting: a batch is due without a waiter.
        log.append(tid, [event(i) for i in range(20, 60)])
        assert _indexed_within(log, tid, 60, 30)
        assert log.verify_index(tid) == (60, [])
