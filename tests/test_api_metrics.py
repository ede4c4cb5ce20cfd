"""Metrics through prometheus_client (issue 10, items 3 and 11), on real
`kimonaudit serve` processes: a client that goes away mid-body is counted
apart (no 500, no traceback, nothing appended), and two processes sharing
a --metrics-dir report the totals of both."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import httpx
import pytest

from tests.helpers import event
from tests.servers import KEY_EVENT, ServeProcess, bearer, make_tenant


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if m and m.group(1) == name:
            got = ",".join(sorted((m.group(2) or "").split(","))) if m.group(2) else ""
            if got == want:
                return float(m.group(3))
    return 0.0


def _half_sent_post(port: int, key: str) -> None:
    """POST /v1/events announcing 10,000 bytes, sending 100, then closing."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer " + key.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n"
            + b'{"events": ['
            + b" " * 88
        )


def test_a_client_gone_mid_body_is_counted_apart(tmp_path: Path) -> None:
    """Three clients close the socket half-way through their body: no 500
    in /metrics, no traceback in the server's output, nothing appended,
    and kimonaudit_http_client_disconnects_total says 3."""
    db, key_file = f"sqlite:///{tmp_path / 'audit.db'}", str(tmp_path / "k.key")
    tenant, key = make_tenant(db, key_file, "acme")
    with ServeProcess(db, key_file, tmp_path, "--rate-limit", "0") as srv:
        for _ in range(3):
            _half_sent_post(srv.port, key)
        ok = httpx.post(f"{srv.url}/v1/events", json=event(1), headers=bearer(key))
        assert ok.status_code == 201
        text = ""
        for _ in range(50):  # the server notices each disconnect on its own time
            text = httpx.get(f"{srv.url}/metrics").text
            got = _sample(
                text, "kimonaudit_http_client_disconnects_total", method="POST", route="/v1/events"
            )
            if got >= 3:
                break
            ok = httpx.get(f"{srv.url}/healthz")
        assert got == 3
        assert 'status="500"' not in text
        with srv.open_log() as log:
            actions = [r.action for r in log.store.iter_entries(tenant) if r.action != KEY_EVENT]
        assert actions == [event(1)["action"]]
    out = srv.output.read_text()
    assert "Traceback" not in out and "ClientDisconnect" not in out


@pytest.mark.postgres
def test_two_processes_report_the_totals_of_both(pg_url: str, tmp_path: Path) -> None:
    """Two serve processes on one PostgreSQL with one --metrics-dir: /metrics
    on either reports the events and requests of both."""
    key_file = str(tmp_path / "k.key")
    _, key = make_tenant(pg_url, key_file, "acme")
    shared = str(tmp_path / "metrics")
    opts = ("--rate-limit", "0", "--metrics-dir", shared)
    a = ServeProcess(pg_url, key_file, tmp_path, *opts)
    b = ServeProcess(pg_url, key_file, tmp_path, *opts)
    with a, b:
        for n, srv in ((3, a), (4, b)):
            body = {"events": [event(i) for i in range(n)]}
            assert (
                httpx.post(f"{srv.url}/v1/events", json=body, headers=bearer(key)).status_code
                == 201
            )
        for srv in (a, b):
            text = httpx.get(f"{srv.url}/metrics").text
            assert _sample(text, "kimonaudit_events_appended_total") == 7
            posts = _sample(
                text,
                "kimonaudit_http_requests_total",
                method="POST",
                route="/v1/events",
                status="201",
            )
            assert posts == 2
            assert "# TYPE kimonaudit_checkpoint_age_seconds gauge" in text
