"""Faults with a real receiver on loopback: down then back, 5xx, 429 with
Retry-After, timeouts, 410, an exhausted schedule, pause and resume."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

import kimonaudit
from kimonaudit.destinations import Destinations
from kimonaudit.service import AuditLog
from kimonaudit.sinks.delivery import Deliverer
from tests.helpers import event
from tests.sinks.receivers import HttpReceiver, webhook_checker, webhook_events
from tests.sinks.test_delivery import LOOPBACK, _drain, _seqs


@pytest.fixture
def log(tmp_path, key_file: str) -> Iterator[AuditLog]:
    lg = kimonaudit.open(f"sqlite:///{tmp_path / 'a.db'}", key_file=key_file)
    yield lg
    lg.close()


def _setup(log: AuditLog, url: str, **kw):
    tenant = log.create_tenant("acme")
    dests = Destinations(log, LOOPBACK)
    dest, gen = dests.create(
        tenant.id, name="siem", kind="webhook", url=url, batch={"max_events": 5, "max_wait_ms": 0}
    )
    log.append(tenant.id, [event(i) for i in range(12)])
    return tenant.id, dests, dest, gen["signing_secret"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_receiver_down_then_back_gets_everything_in_order(log: AuditLog) -> None:
    """Connection refused for a while, then the receiver starts on that
    port: every entry arrives, in order, nothing twice."""
    port = _free_port()
    tid, dests, dest, secret = _setup(log, f"http://127.0.0.1:{port}/hook")
    d = Deliverer(dests, schedule=(0.05,) * 100, lease_s=5, timeout_s=1)
    try:
        for _ in range(5):
            d.run_once()
            time.sleep(0.06)
        h = dests.get(tid, dest.id).health
        assert h.status == "failing" and h.delivery.failed_attempts >= 3
        assert "Connect" in (h.delivery.last_error or "")
        with HttpReceiver(webhook_checker(secret), port=port) as rx:
            log.append(tid, [event(i) for i in range(12, 20)])
            _drain(d, lambda: len(_seqs(webhook_events(rx))) == 21)
        assert _seqs(webhook_events(rx)) == list(range(21))
        assert rx.errors == []
        assert dests.get(tid, dest.id).health.status == "ok"
    finally:
        d.close()


def test_5xx_is_retried_with_the_same_id_and_body(log: AuditLog) -> None:
    """Two 5xx answers, then success: three attempts of one batch with one
    webhook-id and identical bytes, fresh timestamps allowed."""
    with HttpReceiver() as rx:
        tid, dests, dest, secret = _setup(log, rx.url)
        rx.check = webhook_checker(secret)
        rx.plan.replies = [(500, {}, 0.0), (503, {}, 0.0)]
        d = Deliverer(dests, schedule=(0.05,) * 5, lease_s=5, timeout_s=1)
        try:
            _drain(d, lambda: len(_seqs(webhook_events(rx))) == 13)
        finally:
            d.close()
        first_three = rx.attempts[:3]
        assert len({a.headers["webhook-id"] for a in first_three}) == 1
        assert len({a.body for a in first_three}) == 1
        assert _seqs(webhook_events(rx)) == list(range(13))
        h = dests.get(tid, dest.id).health.delivery
        assert h.failed_attempts == 2 and h.last_error.startswith("HTTP 503")


def test_429_retry_after_is_honoured(log: AuditLog) -> None:
    """429 with Retry-After: 1 delays the next attempt by at least a second,
    although the schedule would retry at once."""
    with HttpReceiver() as rx:
        _tid, dests, _dest, _secret = _setup(log, rx.url)
        rx.plan.replies = [(429, {"Retry-After": "1"}, 0.0)]
        d = Deliverer(dests, schedule=(0.01,) * 5, lease_s=5, timeout_s=1)
        times: list[float] = []
        try:
            t0 = time.monotonic()
            d.run_once()
            times.append(time.monotonic() - t0)
            d.run_once()
            assert len(rx.attempts) == 1  # too early
            _drain(d, lambda: len(rx.received) >= 1)
            elapsed = time.monotonic() - t0
        finally:
            d.close()
        assert elapsed >= 0.95
        assert rx.attempts[0].headers["webhook-id"] == rx.attempts[1].headers["webhook-id"]


def test_timeout_is_a_failure_and_the_retry_has_the_same_id(log: AuditLog) -> None:
    """A receiver slower than the timeout counts as a failed attempt."""
    with HttpReceiver() as rx:
        tid, dests, dest, _secret = _setup(log, rx.url)
        rx.plan.replies = [(200, {}, 1.2)]
        d = Deliverer(dests, schedule=(0.05,) * 5, lease_s=5, timeout_s=0.4)
        try:
            d.run_once()
            h = dests.get(tid, dest.id).health.delivery
            assert h.attempts == 1 and "Timeout" in h.last_error
            _drain(d, lambda: len(_seqs(webhook_events(rx))) == 13)
        finally:
            d.close()
        ids = [a.headers["webhook-id"] for a in rx.attempts]
        assert ids[0] == ids[1]


def test_410_disables_with_the_reason(log: AuditLog) -> None:
    """410 Gone disables the destination, keeps why, and logs it."""
    with HttpReceiver() as rx:
        tid, dests, dest, _ = _setup(log, rx.url)
        rx.plan.replies = [(410, {}, 0.0)]
        d = Deliverer(dests, schedule=(0.05,) * 5, lease_s=5, timeout_s=1)
        try:
            d.run_once()
            d.run_once()
        finally:
            d.close()
        got = dests.get(tid, dest.id)
        assert got.record.state == "disabled" and "410" in got.record.state_reason
        assert got.health.status == "disabled" and len(rx.attempts) == 1
        page = log.search(tid, "action:audit_stream.paused")
        assert json.loads(page.entries[0].payload)["metadata"]["state"] == "disabled"


def test_exhausted_schedule_pauses_then_resume_catches_up(log: AuditLog) -> None:
    """After the last scheduled retry fails the destination is paused with
    the error; resuming delivers everything in order."""
    with HttpReceiver() as rx:
        tid, dests, dest, _secret = _setup(log, rx.url)
        rx.plan.replies = [(500, {}, 0.0)] * 3
        d = Deliverer(dests, schedule=(0.02, 0.02), lease_s=5, timeout_s=1)
        try:
            for _ in range(6):
                d.run_once()
                time.sleep(0.03)
            got = dests.get(tid, dest.id)
            assert got.record.state == "paused"
            assert "after 3 failed attempts" in got.record.state_reason
            assert len(rx.attempts) == 3
            log.append(tid, [event(i) for i in range(5)])
            dests.resume(tid, dest.id)
            _drain(d, lambda: len(_seqs(webhook_events(rx))) == 20)
        finally:
            d.close()
        assert _seqs(webhook_events(rx)) == list(range(20))


def test_paused_destination_catches_up_on_resume(log: AuditLog) -> None:
    """Paused by an admin: nothing is sent; on resume the backlog arrives in order."""
    with HttpReceiver() as rx:
        tid, dests, dest, secret = _setup(log, rx.url)
        rx.check = webhook_checker(secret)
        dests.pause(tid, dest.id, "maintenance")
        d = Deliverer(dests, schedule=(0.05,) * 5, lease_s=5, timeout_s=1)
        try:
            d.run_once()
            assert rx.attempts == []
            assert dests.get(tid, dest.id).health.status == "paused"
            log.append(tid, [event(i) for i in range(7)])
            dests.resume(tid, dest.id)
            _drain(d, lambda: len(_seqs(webhook_events(rx))) == 22)
        finally:
            d.close()
        events = webhook_events(rx)
        assert _seqs(events) == list(range(22))
        actions = [e["data"]["action"] for e in events]
        assert "audit_stream.paused" in actions and "audit_stream.resumed" in actions
