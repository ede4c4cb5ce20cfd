"""The delivery engine against a real webhook receiver on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import kimonaudit
from kimonaudit.destinations import Destinations
from kimonaudit.service import AuditLog
from kimonaudit.sinks import ssrf
from kimonaudit.sinks.delivery import SCHEDULE, Deliverer, backoff
from tests.helpers import event
from tests.sinks.receivers import HttpReceiver, webhook_checker, webhook_events

LOOPBACK = ssrf.parse_allowlist("127.0.0.0/8")
FAST = (0.05, 0.05, 0.05)  # a short retry schedule for the fault tests


@pytest.fixture
def log(db_url: str, key_file: str) -> Iterator[AuditLog]:
    lg = kimonaudit.open(db_url, key_file=key_file)
    yield lg
    lg.close()


def _drain(d: Deliverer, until: callable, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        d.run_once()
        if until():
            return
        time.sleep(0.02)
    raise AssertionError("delivery did not finish in time")


def _seqs(events: list[dict]) -> list[int]:
    return [e["seq"] for e in events if e["type"] == "audit.event"]


def test_schedule_spans_three_days_with_jitter() -> None:
    """The documented schedule retries for more than 3 days, jittered ±20%."""
    assert sum(SCHEDULE) > 3 * 86_400
    waits = [backoff(3) for _ in range(200)]
    assert all(0.8 * SCHEDULE[2] <= w <= 1.2 * SCHEDULE[2] for w in waits)
    assert len({round(w, 3) for w in waits}) > 50
    assert backoff(len(SCHEDULE) + 1) is None


def test_events_and_checkpoints_arrive_signed_and_in_order(log: AuditLog) -> None:
    """Every entry arrives once, in seq order, then the checkpoint covering
    them; every request verifies with the standardwebhooks library."""
    tenant = log.create_tenant("acme")
    dests = Destinations(log, LOOPBACK)
    with HttpReceiver() as rx:
        dest, generated = dests.create(
            tenant.id, name="siem", kind="webhook", url=rx.url,
            batch={"max_events": 7, "max_wait_ms": 0},
        )  # fmt: skip
        rx.check = webhook_checker(generated["signing_secret"])
        log.append(tenant.id, [event(i) for i in range(30)])
        cp = log.checkpoint(tenant.id)
        d = Deliverer(dests, schedule=FAST, lease_s=5, timeout_s=2)
        try:
            _drain(d, lambda: any(e["type"] == "audit.checkpoint" for e in webhook_events(rx)))
        finally:
            d.close()
        assert rx.errors == []
        events = webhook_events(rx)
        assert _seqs(events) == list(range(cp.size))
        assert events[0]["data"]["action"] == "audit_stream.created"
        cps = [e for e in events if e["type"] == "audit.checkpoint"]
        assert cps[-1]["data"]["tree_size"] == cp.size and cps[-1]["data"]["note"] == cp.note
        assert all(len(r.json["data"]["events"]) <= 8 for r in rx.received)
        first = rx.received[0].json
        assert first["type"] == "audit.batch" and first["data"]["first_seq"] == 0
        health = dests.get(tenant.id, dest.id).health
        assert health.lag_events == 0 and health.delivery.delivered_events == cp.size
        assert health.status == "ok"


def test_filter_delivers_only_matches_and_moves_past_the_rest(log: AuditLog) -> None:
    """A destination with `is:security` gets only security-relevant entries,
    in order, and its cursor still reaches the end of the log."""
    tenant = log.create_tenant("acme")
    dests = Destinations(log, LOOPBACK)
    with HttpReceiver() as rx:
        dest, gen = dests.create(tenant.id, name="sec", kind="webhook", url=rx.url,
                                 filter="is:security",
                                 batch={"max_wait_ms": 0, "max_events": 3})  # fmt: skip
        rx.check = webhook_checker(gen["signing_secret"])
        log.append(tenant.id, [event(i) for i in range(40)])  # every 5th is role.assigned
        d = Deliverer(dests, schedule=FAST, lease_s=5, timeout_s=2)
        try:
            _drain(d, lambda: dests.get(tenant.id, dest.id).health.lag_events == 0)
        finally:
            d.close()
        got = [e for e in webhook_events(rx) if e["type"] == "audit.event"]
        assert got[0]["data"]["action"] == "audit_stream.created"
        assert all(e["data"]["security"] for e in got)
        assert len(got) == 1 + 8
        assert _seqs(got) == sorted(_seqs(got))


def test_rotation_signs_with_both_secrets_during_the_overlap(log: AuditLog) -> None:
    """After a rotation each delivery verifies with the old and the new secret."""
    from standardwebhooks.webhooks import Webhook

    tenant = log.create_tenant("acme")
    dests = Destinations(log, LOOPBACK)
    with HttpReceiver() as rx:
        dest, gen = dests.create(tenant.id, name="r", kind="webhook", url=rx.url,
                                 batch={"max_wait_ms": 0})  # fmt: skip
        new = dests.rotate_secret(tenant.id, dest.id, overlap_s=3600)
        log.append(tenant.id, [event(1)])
        d = Deliverer(dests, schedule=FAST, lease_s=5, timeout_s=2)
        try:
            _drain(d, lambda: len(rx.received) >= 1)
        finally:
            d.close()
        req = rx.received[0]
        Webhook(gen["signing_secret"]).verify(req.body, req.headers)
        Webhook(new).verify(req.body, req.headers)
        assert req.headers["webhook-signature"].count("v1,") == 2
        # With no overlap the old secret stops signing at once.
        newer = dests.rotate_secret(tenant.id, dest.id, overlap_s=0)
        log.append(tenant.id, [event(2)])
        d = Deliverer(dests, schedule=FAST, lease_s=5, timeout_s=2)
        try:
            _drain(d, lambda: len(rx.received) >= 2)
        finally:
            d.close()
        last = rx.received[-1]
        Webhook(newer).verify(last.body, last.headers)
        assert last.headers["webhook-signature"].count("v1,") == 1
