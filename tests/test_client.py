"""The Python client against real servers on loopback: `kimonaudit serve`
processes (stopped and restarted mid-stream) and, for exact control over
answers (Retry-After, 5xx, request sizes), a small scripted HTTP server.

This module is also the client worker process of the crash tests:
``python -m tests.test_client record|flush|exit ...``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kimonaudit.client import (
    AsyncAuditClient,
    AuditClient,
    ClientClosed,
    QueueFull,
    RetryPolicy,
)
from kimonaudit.client.policy import Bisector, classify_response, parse_retry_after, take_batch
from kimonaudit.client.queue import Item
from kimonaudit.errors import InvalidEvent
from tests.servers import IngestServer, free_port

ROOT = Path(__file__).resolve().parent.parent
FAST_RETRY = RetryPolicy(initial=0.05, maximum=0.3)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestServer]:
    with IngestServer(tmp_path_factory.mktemp("server")) as srv:
        yield srv


class ScriptedServer:
    """A loopback HTTP server answering POST /v1/events from a script of
    (status, headers); once the script runs out, 201. Records when each
    request came and how many events it carried."""

    def __init__(
        self, script: list[tuple[int, dict[str, str]]] | None = None, port: int = 0
    ) -> None:
        self.script = list(script or [])
        self.requests: list[tuple[float, list[dict[str, Any]]]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.requests.append((time.monotonic(), body["events"]))
                    status, headers = outer.script.pop(0) if outer.script else (201, {})
                payload = json.dumps(
                    {"receipts": []}
                    if status < 300
                    else {"error": {"status": status, "code": "x", "message": f"scripted {status}"}}
                ).encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def sizes(self) -> list[int]:
        with self.lock:
            return [len(events) for _, events in self.requests]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    srv = ScriptedServer()
    yield srv
    srv.close()


def ticket_event(i: int, **over: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "action": "ticket.viewed",
        "actor": {"id": f"agent_{i % 7}", "type": "agent"},
        "target": {"type": "ticket", "id": str(10_000 + i)},
        "context": {"ip": f"203.0.113.{i % 250}"},
        "metadata": {"n": i},
    }
    ev.update(over)
    return ev


def run_worker(*args: str) -> subprocess.CompletedProcess[str]:
    """This module as a client worker process (see _worker), run to its end."""
    return subprocess.run(
        [sys.executable, "-m", "tests.test_client", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


# --- against the real server ------------------------------------------------------


def test_events_arrive_once_in_order_across_server_kill_and_client_sigkill(
    tmp_path: Path,
) -> None:
    """2,000 events recorded through a spool arrive exactly once and in
    recording order although the server is SIGKILLed and restarted mid-stream
    and the client is SIGKILLed with undelivered events and restarted."""
    n = 2000
    srv = IngestServer(tmp_path).start()
    spool = tmp_path / "spool.db"
    ids: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-m", "tests.test_client", "record", srv.url, srv.api_key, str(spool),
         str(n)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as worker:  # fmt: skip
        try:
            assert worker.stdout is not None
            for line in worker.stdout:
                if line.startswith("id "):
                    ids.append(line.split()[1])
                    if len(ids) == 500:
                        srv.kill()  # mid-stream; the client keeps recording into its spool
                        time.sleep(1.0)
                        srv.start()
                elif line.startswith("recorded"):
                    break
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait()
    assert len(ids) == n
    with sqlite3.connect(spool) as conn:
        (left,) = conn.execute("SELECT count(*) FROM pending").fetchone()
    conn.close()
    assert left > 0, "the client should die with undelivered events in its spool"

    out = run_worker("flush", srv.url, srv.api_key, str(spool))
    assert out.returncode == 0, out.stderr
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    assert stats["pending"] == 0 and stats["dead_lettered"] == 0
    srv.kill()

    rows = srv.entries()
    assert [r.event_id for r in rows] == ids  # each once, in recording order
    assert [json.loads(r.payload)["metadata"]["n"] for r in rows] == list(range(n))
    with srv.open_log() as log:
        assert log.verify(srv.tenant_id).ok


def test_record_assigns_uuid7_ids_and_keeps_given_ones(
    server: IngestServer, tmp_path: Path
) -> None:
    """record() returns the event's id: a fresh UUIDv7 when none is given,
    the caller's own otherwise; both are the ids the server stores."""
    with AuditClient(server.url, server.api_key, tmp_path / "s.db", flush_interval=0.01) as c:
        fresh = c.record(ticket_event(1))
        own = c.record(ticket_event(2, id="my-own-id-2"))
        assert c.flush(10)
    assert fresh[14] == "7" and len(fresh) == 36
    assert own == "my-own-id-2"
    assert [r.event_id for r in server.entries({fresh, own})] == [fresh, own]


def test_resending_a_delivered_id_does_not_duplicate_it(server: IngestServer) -> None:
    """An id recorded twice (a retry after a crash, or the caller's own
    retry) is stored once: the server answers the repeat with its receipt."""
    with AuditClient(server.url, server.api_key, flush_interval=0.01) as c:
        c.record(ticket_event(3, id="dup-1"))
        c.record(ticket_event(3, id="dup-1"))
        c.record(ticket_event(4, id="dup-2"))
        assert c.flush(10)
        assert c.stats().delivered == 3
    assert [r.event_id for r in server.entries({"dup-1", "dup-2"})] == ["dup-1", "dup-2"]


def test_refused_events_are_dead_lettered_and_the_rest_delivered(
    server: IngestServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch the server refuses (422) is bisected: the bad events go to
    the dead-letter table with the server's message, every other event is
    delivered in order, and the API key appears in no log line."""
    caplog.set_level(logging.DEBUG)
    events = [ticket_event(i) for i in range(20)]
    events[7]["context"] = {"ip": "not-an-ip"}
    events[13]["action"] = "Not An Action"
    spool = tmp_path / "s.db"
    with AuditClient(
        server.url, server.api_key, spool, batch_size=20, flush_interval=5, validate=False
    ) as c:
        ids = c.record_many(events)
        assert c.flush(20)
        dead = c.dead_letters()
        assert c.stats().dead_lettered == 2
    assert [d.id for d in dead] == [ids[7], ids[13]]
    assert all(d.status == 422 for d in dead)
    assert "ip" in dead[0].error and "action" in dead[1].error
    good = [x for i, x in enumerate(ids) if i not in (7, 13)]
    assert [r.event_id for r in server.entries(set(ids))] == good
    assert server.api_key not in caplog.text
    assert "dead-letter" in caplog.text
    # The dead letters survive in the spool file and can be requeued.
    with sqlite3.connect(spool) as conn:
        assert conn.execute("SELECT count(*) FROM dead_letter").fetchone() == (2,)
    conn.close()


def test_wrong_api_key_is_retried_not_dead_lettered(
    server: IngestServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A 401 means the client is misconfigured, not that the events are bad:
    they stay queued for a retry, an error is logged, the key is not."""
    caplog.set_level(logging.DEBUG)
    bad_key = "kak_aaaaaaaaaaaa_" + "A" * 43
    c = AuditClient(server.url, bad_key, flush_interval=0.01, retry=FAST_RETRY)
    try:
        c.record(ticket_event(5))
        assert wait_until(lambda: c.stats().retries >= 2)
        stats = c.stats()
        assert stats.pending == 1 and stats.dead_lettered == 0 and stats.failing
        assert "401" in (stats.last_error or "")
        assert c.dead_letters() == []
    finally:
        c.close(timeout=0)
    assert "check the URL and API key" in caplog.text
    assert bad_key not in caplog.text and bad_key not in repr(c)


def test_async_client_delivers_through_a_spool(server: IngestServer, tmp_path: Path) -> None:
    """AsyncAuditClient: record() returns at once, flush() waits for the
    deliveries, and the events arrive in order."""

    async def main() -> list[str]:
        async with AsyncAuditClient(
            server.url, server.api_key, tmp_path / "a.db", batch_size=50, flush_interval=0.02
        ) as c:
            ids = [await c.record(ticket_event(i)) for i in range(120)]
            assert await c.flush(10)
            assert c.stats().delivered == 120
            return ids

    ids = asyncio.run(main())
    assert [r.event_id for r in server.entries(set(ids))] == ids


def test_async_client_dead_letters_refused_events(scripted: ScriptedServer) -> None:
    """The asyncio sender bisects a refused batch like the thread sender."""
    scripted.script = [(422, {}), (201, {}), (422, {}), (422, {}), (201, {})]

    async def main() -> tuple[list[str], list[Any]]:
        async with AsyncAuditClient(scripted.url, "k", batch_size=4, flush_interval=5) as c:
            ids = await c.record_many([ticket_event(i) for i in range(4)])
            assert await c.flush(10)
            return ids, await c.dead_letters()

    ids, dead = asyncio.run(main())
    # [0..3] refused -> [0,1] ok, [2,3] refused -> [2] refused (dead), [3] ok.
    assert scripted.sizes() == [4, 2, 2, 1, 1]
    assert [d.id for d in dead] == [ids[2]]


@pytest.mark.parametrize("use_async", [False, True], ids=["thread", "asyncio"])
def test_exit_without_close_delivers_queued_events(server: IngestServer, use_async: bool) -> None:
    """A process that records and exits without close() still delivers its
    in-memory queue: the client closes itself at exit."""
    args = ["exit", server.url, server.api_key, "30", "async" if use_async else "sync"]
    out = run_worker(*args)
    assert out.returncode == 0, out.stderr
    ids = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("id ")]
    assert len(ids) == 30
    assert [r.event_id for r in server.entries(set(ids))] == ids


# --- against the scripted server ----------------------------------------------------


def test_batches_are_cut_by_size_then_by_time(scripted: ScriptedServer) -> None:
    """Full batches go at once; a partial batch waits flush_interval (or a
    flush()) before it is sent."""
    with AuditClient(scripted.url, "k", batch_size=100, flush_interval=30) as c:
        c.record_many([ticket_event(i) for i in range(250)])
        assert wait_until(lambda: c.stats().delivered == 200)
        time.sleep(0.3)
        assert scripted.sizes() == [100, 100]
        assert c.stats().pending == 50
        assert c.flush(5)
    assert scripted.sizes() == [100, 100, 50]

    scripted.requests.clear()
    with AuditClient(scripted.url, "k", batch_size=100, flush_interval=0.3) as c:
        start = time.monotonic()
        c.record_many([ticket_event(i) for i in range(5)])
        assert wait_until(lambda: c.stats().delivered == 5)
    assert scripted.sizes() == [5]
    assert scripted.requests[0][0] - start >= 0.25  # it waited for more


def test_batches_respect_the_byte_limit(scripted: ScriptedServer) -> None:
    """A batch never exceeds max_batch_bytes (the server refuses bodies over
    1 MiB), however many events batch_size allows."""
    big = {"blob": "x" * 3000}
    with AuditClient(
        scripted.url, "k", batch_size=100, flush_interval=0.01, max_batch_bytes=10_000
    ) as c:
        c.record_many([ticket_event(i, metadata=big) for i in range(9)])
        assert c.flush(5)
    assert scripted.sizes() == [3, 3, 3]


def test_5xx_and_429_are_retried_honouring_retry_after(scripted: ScriptedServer) -> None:
    """503 and 429 keep the batch and retry it; a Retry-After of 1 s is
    waited out even though the backoff alone would retry sooner."""
    scripted.script = [(503, {}), (429, {"Retry-After": "1"}), (500, {})]
    with AuditClient(scripted.url, "k", flush_interval=0.01, retry=FAST_RETRY) as c:
        c.record(ticket_event(1))
        assert c.flush(10)
        stats = c.stats()
    assert stats.retries == 3 and stats.delivered == 1 and not stats.failing
    times = [t for t, _ in scripted.requests]
    assert len(times) == 4
    assert times[2] - times[1] >= 0.95  # Retry-After: 1
    assert times[1] - times[0] < 0.95  # plain backoff is shorter


def test_connection_errors_keep_events_until_the_server_appears(tmp_path: Path) -> None:
    """With nothing listening, events wait in the spool (flush times out);
    once a server listens on that port, they are delivered."""
    port = free_port()
    c = AuditClient(
        f"http://127.0.0.1:{port}", "k", tmp_path / "s.db", flush_interval=0.01, retry=FAST_RETRY
    )
    try:
        c.record_many([ticket_event(i) for i in range(10)])
        assert not c.flush(0.5)
        assert c.stats().failing and c.stats().pending == 10
        srv = ScriptedServer(port=port)
        try:
            assert c.flush(10)
        finally:
            srv.close()
        assert srv.sizes() == [10]
    finally:
        c.close(timeout=0)


def test_close_keeps_undelivered_events_in_the_spool(
    tmp_path: Path, scripted: ScriptedServer
) -> None:
    """close() gives up after its timeout without losing anything: the next
    client on the same spool delivers the events."""
    dead_url = f"http://127.0.0.1:{free_port()}"
    spool = tmp_path / "s.db"
    first = AuditClient(dead_url, "k", spool, flush_interval=0.01, retry=FAST_RETRY)
    ids = first.record_many([ticket_event(i) for i in range(7)])
    first.close(timeout=0.3)
    with pytest.raises(ClientClosed):
        first.record(ticket_event(8))
    with AuditClient(scripted.url, "k", spool, flush_interval=0.01) as second:
        assert second.stats().pending == 7
        assert second.flush(5)
    assert [e["id"] for _, events in scripted.requests for e in events] == ids


def test_record_validates_locally(scripted: ScriptedServer) -> None:
    """A malformed event raises InvalidEvent in the caller and is not queued."""
    with AuditClient(scripted.url, "k") as c:
        with pytest.raises(InvalidEvent) as exc:
            c.record({"action": "Ticket.Viewed"})
        assert exc.value.field == "action"
        with pytest.raises(InvalidEvent):
            c.record({"action": "ticket.viewed", "tenant": "t_other"})
        assert c.stats().pending == 0 and c.stats().recorded == 0


def test_memory_queue_refuses_past_max_queue() -> None:
    """Without a spool, a full queue raises QueueFull instead of blocking or
    silently dropping."""
    c = AuditClient(f"http://127.0.0.1:{free_port()}", "k", max_queue=3, retry=FAST_RETRY)
    try:
        c.record_many([ticket_event(i) for i in range(3)])
        with pytest.raises(QueueFull):
            c.record(ticket_event(4))
        assert c.stats().recorded == 3
    finally:
        c.close(timeout=0)


def test_bad_settings_are_refused_without_echoing_the_key() -> None:
    """Constructor checks: the URL scheme, batch_size in 1..1000, a key with
    no whitespace (and the error does not repeat it)."""
    with pytest.raises(ValueError, match="url"):
        AuditClient("ftp://127.0.0.1", "k")
    with pytest.raises(ValueError, match="batch_size"):
        AuditClient("http://127.0.0.1:1", "k", batch_size=1001)
    with pytest.raises(ValueError) as exc:
        AuditClient("http://127.0.0.1:1", "secret value")
    assert "secret value" not in str(exc.value)


# --- the pure parts ---------------------------------------------------------------------


def test_classify_response() -> None:
    """2xx delivered; 5xx/408/429 retried (Retry-After read); 401/403/404
    retried as configuration errors; other 4xx refuse the batch."""
    assert classify_response(201, {}, "").kind == "ok"
    r = classify_response(429, {"retry-after": "7"}, "")
    assert (r.kind, r.retry_after) == ("retry", 7.0)
    assert classify_response(503, {}, "oops").kind == "retry"
    assert classify_response(408, {}, "").kind == "retry"
    assert classify_response(401, {}, "").config_error
    body = json.dumps({"error": {"status": 422, "message": "events[0].action: bad"}})
    r = classify_response(422, {}, body)
    assert (r.kind, r.message) == ("poison", "events[0].action: bad")
    assert classify_response(413, {}, "").kind == "poison"


def test_parse_retry_after_accepts_seconds_and_http_dates() -> None:
    """Retry-After is delta-seconds or an HTTP-date (RFC 9110 10.2.3)."""
    from datetime import UTC, datetime

    now = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after("Mon, 05 Jan 2026 09:00:30 GMT", now) == 30.0
    assert parse_retry_after("garbage", now) is None
    assert parse_retry_after(None) is None


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    """Each wait lies in [base/2, base], base doubling up to the maximum;
    Retry-After lengthens a wait, up to max_retry_after."""
    p = RetryPolicy(initial=0.1, maximum=2.0)
    for attempt, base in [(0, 0.1), (1, 0.2), (3, 0.8), (10, 2.0)]:
        waits = [p.delay(attempt) for _ in range(50)]
        assert all(base / 2 <= w <= base for w in waits)
        assert len(set(waits)) > 1
    assert p.delay(0, retry_after=5) == 5
    assert p.delay(0, retry_after=10_000) == p.max_retry_after


def test_take_batch_never_repeats_an_id() -> None:
    """A batch stops before a repeated id (the server refuses duplicates
    within one batch) and before the byte limit, but holds at least one."""
    items = [Item(i, f"id{i % 3}", "{}") for i in range(1, 6)]
    assert [it.seq for it in take_batch(items, 10, 10_000)] == [1, 2, 3]
    big = [Item(1, "a", "x" * 50), Item(2, "b", "x" * 50)]
    assert len(take_batch(big, 10, 10)) == 1


def test_bisector_finds_every_culprit_in_order() -> None:
    """Walking a refused batch: good events are accepted left to right and
    exactly the refused single events come out as culprits."""
    items = [Item(i, str(i), "{}") for i in range(10)]
    bad = {2, 3, 9}
    parts = Bisector(items)
    accepted: list[int] = []
    culprits: list[int] = []
    while (part := parts.current()) is not None:
        if any(it.seq in bad for it in part):
            culprit = parts.refused()
            if culprit is not None:
                culprits.append(culprit.seq)
        else:
            accepted.extend(it.seq for it in part)
            parts.accepted()
    assert culprits == [2, 3, 9]
    assert accepted == [0, 1, 4, 5, 6, 7, 8]


# --- worker process -------------------------------------------------------------------


def _worker(argv: list[str]) -> None:
    mode, url, key = argv[:3]
    if mode == "record":
        spool, n = argv[3], int(argv[4])
        c = AuditClient(
            url, key, spool, batch_size=100, flush_interval=0.05, retry=FAST_RETRY,
            close_at_exit=False,
        )  # fmt: skip
        steady = n - 300
        for i in range(steady):
            print("id", c.record(ticket_event(i)), flush=True)
            time.sleep(0.0015)
        # A final burst, so the sender is still busy when the test kills us.
        for event_id in c.record_many([ticket_event(i) for i in range(steady, n)]):
            print("id", event_id)
        print("recorded", flush=True)
        time.sleep(120)
    elif mode == "flush":
        with AuditClient(url, key, argv[3], retry=FAST_RETRY) as c:
            if not c.flush(45):
                sys.exit("flush timed out")
            stats = c.stats()
        print(json.dumps(stats.__dict__))
    elif mode == "exit":
        n = int(argv[3])
        if argv[4] == "async":

            async def main() -> None:
                c = AsyncAuditClient(url, key, flush_interval=30)
                for i in range(n):
                    print("id", await c.record(ticket_event(i)))

            asyncio.run(main())
        else:
            c = AuditClient(url, key, flush_interval=30)
            for i in range(n):
                print("id", c.record(ticket_event(i)))
        # No close(): the exit hook must deliver.
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    _worker(sys.argv[1:])
