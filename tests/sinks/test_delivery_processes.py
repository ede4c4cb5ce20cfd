"""Delivery in real processes: the API and the job inside `kimonaudit
serve`, `kimonaudit deliver` killed with SIGKILL mid-batch, and two
`serve` processes on one PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import kimonaudit
from tests.helpers import event
from tests.servers import ServeProcess, bearer, child_env, make_tenant
from tests.sinks.receivers import HttpReceiver, webhook_checker, webhook_events
from tests.sinks.test_delivery import _seqs


@pytest.fixture(autouse=True)
def _loopback_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIMONAUDIT_DESTINATION_ALLOWLIST", "127.0.0.0/8")
    monkeypatch.setenv("KIMONAUDIT_DELIVERY_INTERVAL", "0.05")


def _wait(cond, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_api_manages_destinations_and_serve_delivers(tmp_path: Path) -> None:
    """Create over the API (secret shown once), events posted to the API
    arrive signed, health and /metrics show it, every change is logged."""
    db, kf = f"sqlite:///{tmp_path / 'a.db'}", str(tmp_path / "k.key")
    tid, admin = make_tenant(db, kf, "acme")
    with kimonaudit.open(db, key_file=kf) as log:
        writer = log.create_api_key(tid, "w", ["events:write"])[1]
    with HttpReceiver() as rx, ServeProcess(db, kf, tmp_path, "--rate-limit", "0") as srv:
        h = bearer(admin)
        r = httpx.post(f"{srv.url}/v1/destinations", headers=h,
                       json={"name": "siem", "kind": "webhook", "url": rx.url,
                             "batch": {"max_wait_ms": 0}})  # fmt: skip
        assert r.status_code == 201, r.text
        dest = r.json()
        secret = dest["secrets"]["signing_secret"]
        rx.check = webhook_checker(secret)
        got = httpx.get(f"{srv.url}/v1/destinations/{dest['id']}", headers=h)
        assert secret not in got.text and "signing_secret" not in got.text
        assert httpx.get(f"{srv.url}/v1/destinations", headers=bearer(writer)).status_code == 403
        private = {"name": "x", "kind": "webhook", "url": "https://10.0.0.1/x"}
        bad = httpx.post(f"{srv.url}/v1/destinations", headers=h, json=private)
        assert bad.status_code in (400, 422) and "refused" in bad.text
        r = httpx.post(f"{srv.url}/v1/events", headers=bearer(writer),
                       json={"events": [event(i) for i in range(20)]})  # fmt: skip
        assert r.status_code in (200, 201, 202), r.text
        # Seqs 0 and 1 are the two keys' entries; delivery starts at "now".
        _wait(lambda: len(_seqs(webhook_events(rx))) >= 21)
        assert _seqs(webhook_events(rx))[:21] == list(range(2, 23))
        _wait(lambda: any(e["type"] == "audit.checkpoint" for e in webhook_events(rx)))
        health = httpx.get(f"{srv.url}/v1/destinations/{dest['id']}", headers=h).json()["health"]
        assert health["delivered_events"] >= 21 and health["last_success_at"]
        metrics = httpx.get(f"{srv.url}/metrics").text
        line = next(
            x for x in metrics.splitlines()
            if x.startswith("kimonaudit_destination_delivered_events_total{") and dest["id"] in x
        )  # fmt: skip
        assert f'tenant="{tid}"' in line and float(line.rsplit(" ", 1)[1]) >= 21
        assert (
            httpx.post(f"{srv.url}/v1/destinations/{dest['id']}/pause", headers=h).json()["state"]
            == "paused"
        )
        assert (
            httpx.post(f"{srv.url}/v1/destinations/{dest['id']}/resume", headers=h).json()["state"]
            == "active"
        )
        test = httpx.post(f"{srv.url}/v1/destinations/{dest['id']}/test", headers=h).json()
        assert test == {"ok": True, "error": ""}
        rot = httpx.post(f"{srv.url}/v1/destinations/{dest['id']}/rotate-secret", headers=h).json()
        assert rot["signing_secret"].startswith("whsec_")
        assert httpx.delete(f"{srv.url}/v1/destinations/{dest['id']}", headers=h).status_code == 200
        assert httpx.get(f"{srv.url}/v1/destinations/{dest['id']}", headers=h).status_code == 404
    with kimonaudit.open(db, key_file=kf) as log:
        actions = [
            r.action for r in log.store.iter_entries(tid) if r.action.startswith("audit_stream.")
        ]
    assert actions == ["audit_stream.created", "audit_stream.paused", "audit_stream.resumed",
                       "audit_stream.updated", "audit_stream.deleted"]  # fmt: skip
    # The secret appears nowhere in the log's entries.
    with kimonaudit.open(db, key_file=kf) as log:
        assert all(secret.encode() not in (r.payload or b"") for r in log.store.iter_entries(tid))


def _deliver_proc(db: str, kf: str, out: Path) -> subprocess.Popen[bytes]:
    with out.open("ab") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "kimonaudit", "--db", db, "--key-file", kf, "deliver",
             "--interval", "0.05", "--lease-seconds", "4", "--timeout", "1.5", "--no-checkpoint"],
            stdout=f, stderr=subprocess.STDOUT, env=child_env(),
        )  # fmt: skip


def test_sigkill_mid_batch_resumes_with_the_same_webhook_id(tmp_path: Path) -> None:
    """`kimonaudit deliver` killed while a batch is on the wire: the next
    process (after the lease expires) sends that batch again under the same
    webhook-id, then the rest, and nothing is lost."""
    db, kf = f"sqlite:///{tmp_path / 'a.db'}", str(tmp_path / "k.key")
    with HttpReceiver() as rx, kimonaudit.open(db, key_file=kf) as log:
        from kimonaudit.destinations import Destinations
        from kimonaudit.sinks import ssrf

        tid = log.create_tenant("acme").id
        dests = Destinations(log, ssrf.parse_allowlist("127.0.0.0/8"))
        _, gen = dests.create(tid, name="s", kind="webhook", url=rx.url,
                              batch={"max_events": 10, "max_wait_ms": 0})  # fmt: skip
        rx.check = webhook_checker(gen["signing_secret"])
        log.append(tid, [event(i) for i in range(35)])
        rx.plan.replies = [(200, {}, 1.0)]  # the first request hangs for a second
        proc = _deliver_proc(db, kf, tmp_path / "deliver.log")
        try:
            _wait(lambda: len(rx.attempts) >= 1)
            proc.kill()
            proc.wait()
            first_id = rx.attempts[0].headers["webhook-id"]
            proc = _deliver_proc(db, kf, tmp_path / "deliver.log")
            _wait(lambda: len(_seqs(webhook_events(rx))) == 36)
        finally:
            proc.kill()
            proc.wait()
        ids = [a.headers["webhook-id"] for a in rx.attempts]
        assert ids.count(first_id) == 2, (ids, (tmp_path / "deliver.log").read_text())
        assert rx.attempts[0].body == rx.attempts[1].body
        assert _seqs(webhook_events(rx)) == list(range(36))
        assert rx.errors == []


@pytest.mark.postgres
def test_two_serve_processes_never_deliver_one_destination_at_once(
    tmp_path: Path, pg_url: str
) -> None:
    """Two `serve` processes on one PostgreSQL: every entry arrives once, in
    order, and the receiver never sees two concurrent requests."""
    kf = str(tmp_path / "k.key")
    tid, _ = make_tenant(pg_url, kf, "acme")
    with HttpReceiver() as rx:
        rx.delay = 0.03
        with kimonaudit.open(pg_url, key_file=kf) as log:
            from kimonaudit.destinations import Destinations
            from kimonaudit.sinks import ssrf

            dests = Destinations(log, ssrf.parse_allowlist("127.0.0.0/8"))
            _, gen = dests.create(tid, name="s", kind="webhook", url=rx.url,
                                  batch={"max_events": 20, "max_wait_ms": 0})  # fmt: skip
            rx.check = webhook_checker(gen["signing_secret"])
            with ServeProcess(pg_url, kf, tmp_path), ServeProcess(pg_url, kf, tmp_path):
                for chunk in range(10):
                    log.append(tid, [event(chunk * 30 + i) for i in range(30)])
                    time.sleep(0.1)
                total = log.store.tree_state(tid).size
                _wait(lambda: len(_seqs(webhook_events(rx))) >= total - 1, timeout=60)
        assert rx.max_inflight == 1
        assert _seqs(webhook_events(rx))[: total - 1] == list(range(1, total))
        ids = [a.headers["webhook-id"] for a in rx.attempts]
        assert len(ids) == len(set(ids))
        assert rx.errors == []
