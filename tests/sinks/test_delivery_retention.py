"""Retention and a destination whose cursor lies behind the purge point
(docs/streaming.md, "Retention"), end to end on both stores with a
simulated clock and a real webhook receiver on loopback.

While the destination is retrying within its schedule the purge stops at
its cursor; once the schedule is exhausted (about 4.2 days) it is paused
and holds nothing back, so the expired entries it never received are
purged. On resume the gap is reported as its last error, the batch it was
retrying is dropped (its entries are gone), and delivery continues in seq
order with the oldest entry retained."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import kimonaudit
from kimonaudit.destinations import Destinations
from kimonaudit.errors import NotFound
from kimonaudit.service import AuditLog
from kimonaudit.sinks import ssrf
from kimonaudit.sinks.delivery import SCHEDULE, Deliverer
from tests.conftest import FakeClock
from tests.helpers import event
from tests.sinks.receivers import HttpReceiver, webhook_checker, webhook_events

LOOPBACK = ssrf.parse_allowlist("127.0.0.0/8")


@pytest.fixture
def log(db_url: str, key_file: str, clock: FakeClock) -> Iterator[AuditLog]:
    lg = kimonaudit.open(db_url, key_file=key_file, clock=clock)
    yield lg
    lg.close()


def _pass(dests: Destinations) -> None:
    """One delivery pass, as `kimonaudit deliver --once` runs it."""
    d = Deliverer(dests, lease_s=10, timeout_s=3)
    try:
        d.run_once()
    finally:
        d.close()


def _present(log: AuditLog, tid: str, seq: int) -> bool:
    try:
        log.get_entry(tid, seq)
    except NotFound:
        return False
    return True


def test_purge_waits_within_the_retry_window_and_skips_past_it(
    log: AuditLog, clock: FakeClock
) -> None:
    tid = log.create_tenant("acme", plan="free").id  # 12 months' retention
    dests = Destinations(log, LOOPBACK)
    with HttpReceiver() as rx:
        dest, gen = dests.create(tid, name="siem", kind="webhook", url=rx.url,
                                 batch={"max_events": 5, "max_wait_ms": 0})  # fmt: skip
        rx.check = webhook_checker(gen["signing_secret"])
        log.append(tid, [event(i) for i in range(4)])  # seq 1-4 (0 is audit_stream.created)
        _pass(dests)
        assert [e["seq"] for e in webhook_events(rx)] == [0, 1, 2, 3, 4]

        # The receiver goes down; ten more entries wait for it.
        rx.plan.replies = [(503, {}, 0.0)] * 100
        clock.advance(minutes=5)
        log.append(tid, [event(i) for i in range(4, 14)])  # seq 5-14
        _pass(dests)  # failure 1
        assert log.store.get_delivery(tid, dest.id).next_seq == 5

        # A year and a day later every entry so far has expired, but the
        # destination is still retrying (failure 2 of 14): the purge stops
        # at its cursor, removing only what it already received.
        clock.advance(days=366)
        _pass(dests)  # failure 2
        report = log.run_retention()
        assert report.tenants[0].purge_point == 5 and report.purged == 5
        assert not _present(log, tid, 4) and all(_present(log, tid, s) for s in range(5, 15))
        h = dests.get(tid, dest.id).health
        assert h.status == "failing" and h.delivery.last_error.startswith("HTTP 503")
        assert h.delivery.attempts == 2 and h.next_seq == 5

        # Every further attempt on the schedule fails; each daily purge
        # still waits while the destination is within its retry window.
        for failure in range(3, len(SCHEDULE) + 2):
            clock.advance(seconds=SCHEDULE[failure - 2] * 1.21)  # past the +20% jitter
            _pass(dests)
            rec = dests.get(tid, dest.id).record
            if rec.state == "active":
                assert log.store.get_delivery(tid, dest.id).attempts == failure
                log.run_retention()
                assert all(_present(log, tid, s) for s in range(5, 15))
        assert failure == len(SCHEDULE) + 1  # the 14th failed attempt paused it
        got = dests.get(tid, dest.id)
        assert got.record.state == "paused" and got.health.status == "paused"
        assert got.record.state_reason.startswith("paused after 14 failed attempts: HTTP 503")
        assert log.search(tid, "action:audit_stream.paused").entries

        # Past its retry window the destination holds nothing back: the
        # entries it never received are purged on the normal schedule.
        report = log.run_retention()
        point = report.tenants[0].purge_point
        assert point == 15 and report.purged == 10
        assert not any(_present(log, tid, s) for s in range(5, 15))

        # The receiver returns and an administrator resumes the destination.
        rx.plan.replies = []
        clock.advance(hours=1)
        log.append(tid, [event(i) for i in range(100, 103)])
        dests.resume(tid, dest.id)
        size = log.store.tree_state(tid).size
        for _ in range(10):
            _pass(dests)
            if dests.get(tid, dest.id).health.lag_events == 0:
                break
        assert rx.errors == []
        seqs = [e["seq"] for e in webhook_events(rx) if e["type"] == "audit.event"]
        # The five it had, then every retained entry, in order, once each.
        assert seqs == [0, 1, 2, 3, 4, *range(point, size)]
        actions = [e["data"]["action"] for e in webhook_events(rx)[5:]]
        assert actions[0] == "audit_log.purged" and "audit_stream.resumed" in actions
        # No request carried the dropped batch's range again.
        firsts = [r.json["data"]["first_seq"] for r in rx.received]
        assert firsts[0] == 0 and all(f >= point for f in firsts[1:])
        h = dests.get(tid, dest.id).health
        assert h.status == "ok" and h.lag_events == 0 and h.delivery.attempts == 0
        assert h.delivery.last_error == "entries 5-14 were purged before delivery"
        assert h.to_json()["last_error"] == "entries 5-14 were purged before delivery"
        assert dests.get(tid, dest.id).record.state_reason is None
