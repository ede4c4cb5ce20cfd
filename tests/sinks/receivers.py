"""Real receivers on loopback for the delivery tests: a webhook endpoint
that verifies Standard Webhooks signatures with the reference library."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    path: str

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Plan:
    """What the receiver answers: each request pops the next planned
    (status, headers, delay); when the plan is empty, 200."""

    replies: list[tuple[int, dict[str, str], float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next(self) -> tuple[int, dict[str, str], float]:
        with self.lock:
            return self.replies.pop(0) if self.replies else (200, {}, 0.0)


class HttpReceiver:
    """A threaded HTTP server on 127.0.0.1 that records every POST."""

    def __init__(self, check: Callable[[Received], None] | None = None, port: int = 0) -> None:
        self.received: list[Received] = []  # accepted (2xx) requests
        self.attempts: list[Received] = []  # every request
        self.plan = Plan()
        self.check = check
        self.errors: list[str] = []
        self.inflight = 0
        self.max_inflight = 0
        self.delay = 0.0  # every request is held this long (widens race windows)
        self._count = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                rec = Received(dict(self.headers.items()), self.rfile.read(n), self.path)
                status, headers, delay = outer.plan.next()
                with outer._count:
                    outer.attempts.append(rec)
                    outer.inflight += 1
                    outer.max_inflight = max(outer.max_inflight, outer.inflight)
                try:
                    time.sleep(delay or outer.delay)
                finally:
                    with outer._count:
                        outer.inflight -= 1
                if status < 300 and outer.check is not None:
                    try:
                        outer.check(rec)
                    except Exception as exc:
                        outer.errors.append(repr(exc))
                        status = 400
                if status < 300:
                    outer.received.append(rec)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> HttpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def webhook_checker(secret: str) -> Callable[[Received], None]:
    hook = Webhook(secret)

    def check(rec: Received) -> None:
        hook.verify(rec.body, rec.headers)

    return check


def webhook_events(receiver: HttpReceiver) -> list[dict[str, Any]]:
    """Every event delivered, in arrival order, duplicates removed by
    webhook-id (as a receiver should)."""
    seen: set[str] = set()
    out = []
    for rec in receiver.received:
        if rec.headers["webhook-id"] in seen:
            continue
        seen.add(rec.headers["webhook-id"])
        out.extend(rec.json["data"]["events"])
    return out


def deliver_until(
    dests: Any,
    until: Callable[[], bool],
    timeout: float = 20.0,
    *,
    retries: int = 20,
    lease_s: float = 10,
    timeout_s: float = 3,
    pause: float = 0.05,
) -> None:
    """Run a Deliverer over `dests` (quick retries) until `until()` holds;
    fail the test if it does not within `timeout` seconds."""
    from kimonaudit.sinks.delivery import Deliverer

    d = Deliverer(dests, schedule=(0.05,) * retries, lease_s=lease_s, timeout_s=timeout_s)
    try:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            d.run_once()
            if until():
                return
            time.sleep(pause)
        raise AssertionError("not delivered in time")
    finally:
        d.close()
