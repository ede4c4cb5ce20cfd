"""Delivery benchmark: events/s to a local webhook receiver and to a syslog
receiver, and the delivery lag (p50/p99) under steady ingest.

    .venv/bin/python -m benchmarks.run --suite delivery --events 50000

For each backend:
- `webhook`: a filled tenant delivered by `Deliverer` (batches of 500,
  JSON, Standard Webhooks signatures) to a threaded HTTP receiver on
  loopback; the raw baseline POSTs the same number of pre-built 500-event
  bodies with httpx (no database, no rendering, no signing).
- `syslog`: the same to Debian's rsyslog over TCP (CEF in RFC 5424,
  octet-counted) when rsyslogd is installed, else to a plain TCP sink; the
  baseline writes pre-rendered frames to the same receiver.
- `lag`: a writer process appends `--rate` events/s (default 5,000, in
  100 ms slices) for `--seconds` while this process runs the delivery loop;
  the receiver (its own process, as in the throughput runs) records when
  each entry arrived; lag = arrival - recorded_at.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

import kimonaudit
from benchmarks.workload import events as _workload
from kimonaudit.destinations import Destinations
from kimonaudit.sinks import ssrf
from kimonaudit.sinks.delivery import Deliverer

LOOPBACK = ssrf.parse_allowlist("127.0.0.0/8")


RECEIVER_CODE = r"""
import json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
arrivals = {}
count = [0]
lock = threading.Lock()
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        now = time.time()
        try:
            events = json.loads(body)["data"]["events"]
        except Exception:
            events = []
        with lock:
            for e in events:
                if e.get("type") == "audit.event":
                    count[0] += 1
                    arrivals.setdefault(e["seq"], now)
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def do_GET(self):
        with lock:
            data = json.dumps({"count": count[0],
                               "arrivals": arrivals if self.path == "/arrivals" else {}}).encode()
        self.send_response(200); self.send_header("content-length", str(len(data)))
        self.end_headers(); self.wfile.write(data)
    def log_message(self, *a):
        pass
srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""


class Receiver:
    """A webhook receiver in its own process (it must not share our GIL):
    counts delivered entries and when each seq arrived."""

    def __init__(self) -> None:
        import sys

        self.proc = subprocess.Popen(
            [sys.executable, "-c", RECEIVER_CODE], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline())
        self.base = f"http://127.0.0.1:{port}"
        self.url = f"{self.base}/hook"

    @property
    def count(self) -> int:
        return int(httpx.get(f"{self.base}/count").json()["count"])

    @property
    def arrivals(self) -> dict[int, float]:
        raw = httpx.get(f"{self.base}/arrivals", timeout=60).json()["arrivals"]
        return {int(k): float(v) for k, v in raw.items()}

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class TcpSink:
    """rsyslogd on loopback if installed, else a socket that reads and drops."""

    def __init__(self, workdir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc: subprocess.Popen[bytes] | None = None
        self.kind = "rsyslog"
        rsyslogd = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
        self.out = workdir / "syslog.out"
        if os.path.exists(rsyslogd):
            conf = workdir / "rsyslog.conf"
            conf.write_text(
                f'global(workDirectory="{workdir}")\nmodule(load="imtcp")\n'
                f'input(type="imtcp" address="127.0.0.1" port="{self.port}")\n'
                f'action(type="omfile" file="{self.out}")\n'
            )
            self.proc = subprocess.Popen(
                [rsyslogd, "-n", "-f", str(conf), "-i", str(workdir / "pid")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
        else:
            self.kind = "tcp-sink"
            self.listener = socket.create_server(("127.0.0.1", self.port))
            threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    @staticmethod
    def _read(conn: socket.socket) -> None:
        with conn:
            while conn.recv(1 << 16):
                pass

    def lines(self) -> int:
        if not self.out.exists():
            return 0
        with self.out.open("rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))

    def close(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        else:
            self.listener.close()


def _drain(d: Deliverer, done: Any, timeout: float = 600.0) -> float:
    t0 = time.perf_counter()
    end = time.monotonic() + timeout
    while not done() and time.monotonic() < end:
        d.run_once()
    return time.perf_counter() - t0


def _filled(url: str, n: int, key_file: str) -> tuple[Any, str]:
    log = kimonaudit.open(url, key_file=key_file)
    tid = log.create_tenant("bench").id
    events = make_events(n)
    for i in range(0, n, 1000):
        log.append(tid, events[i : i + 1000])
    return log, tid


def webhook_throughput(url: str, n: int, key_file: str) -> dict[str, Any]:
    log, tid = _filled(url, n, key_file)
    rx = Receiver()
    try:
        dests = Destinations(log, LOOPBACK)
        dest, _ = dests.create(tid, name="b", kind="webhook", url=rx.url, start="beginning",
                               batch={"max_events": 500, "max_wait_ms": 0,
                                      "max_bytes": 10_000_000})  # fmt: skip
        d = Deliverer(dests, time_budget_s=60)
        secs = _drain(d, lambda: dests.get(tid, dest.id).health.lag_events == 0)
        d.close()
        delivered = rx.count
        # Baseline: the same number of 500-event bodies, pre-built, POSTed raw.
        body = json.dumps({"type": "audit.batch", "data": {"events": [
            {"type": "x", "seq": i, "data": {"action": "ticket.viewed", "n": i}} for i in range(500)
        ]}}).encode()  # fmt: skip
        with httpx.Client() as c:
            t0 = time.perf_counter()
            for _ in range(max(1, n // 500)):
                c.post(rx.url, content=body)
            base = time.perf_counter() - t0
        return {
            "events": delivered,
            "seconds": round(secs, 3),
            "events_per_s": round(delivered / secs),
            "baseline_raw_post_events_per_s": round(max(1, n // 500) * 500 / base),
            "ratio_to_baseline": round((delivered / secs) / (max(1, n // 500) * 500 / base), 3),
        }
    finally:
        rx.close()
        log.close()


def syslog_throughput(url: str, n: int, key_file: str, workdir: Path) -> dict[str, Any]:
    log, tid = _filled(url, n, key_file)
    sink = TcpSink(workdir)
    try:
        dests = Destinations(log, LOOPBACK)
        dest, _ = dests.create(tid, name="s", kind="syslog", format="cef", start="beginning",
                               url=f"tcp://127.0.0.1:{sink.port}",
                               batch={"max_events": 1000, "max_wait_ms": 0})  # fmt: skip
        d = Deliverer(dests, time_budget_s=60)
        secs = _drain(d, lambda: dests.get(tid, dest.id).health.lag_events == 0)
        d.close()
        if sink.kind == "rsyslog":  # wait until rsyslog has written them all
            end = time.monotonic() + 60
            while sink.lines() < n and time.monotonic() < end:
                time.sleep(0.05)
            secs = max(secs, 0.001)
        frame = b"300 " + b"x" * 300
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", sink.port)) as s:
            for i in range(0, n, 1000):
                s.sendall(frame * min(1000, n - i))
        base = time.perf_counter() - t0
        return {
            "receiver": sink.kind,
            "events": n,
            "seconds": round(secs, 3),
            "events_per_s": round(n / secs),
            "baseline_raw_tcp_events_per_s": round(n / base),
            "ratio_to_baseline": round((n / secs) / (n / base), 3),
        }
    finally:
        sink.close()
        log.close()


WRITER_CODE = r"""
import sys, time
import kimonaudit
from benchmarks.delivery import make_events
url, key_file, tid = sys.argv[1:4]
rate, seconds = int(sys.argv[4]), float(sys.argv[5])
log = kimonaudit.open(url, key_file=key_file)
slice_s = 0.1
per = max(1, int(rate * slice_s))
pool = make_events(per * 20)
t0 = time.monotonic(); k = 0; sent = 0
while time.monotonic() - t0 < seconds:
    delay = t0 + k * slice_s - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    sent += len(log.append(tid, pool[(k % 20) * per:(k % 20 + 1) * per]))
    k += 1
print(sent, time.monotonic() - t0, flush=True)
log.close()
"""


def lag_under_ingest(url: str, rate: int, seconds: float, key_file: str) -> dict[str, Any]:
    """Ingest at `rate` in a writer process (its own GIL) while this process
    delivers to the receiver process; lag = arrival - recorded_at."""
    import sys

    log = kimonaudit.open(url, key_file=key_file)
    tid = log.create_tenant("lag").id
    rx = Receiver()
    dests = Destinations(log, LOOPBACK)
    dests.create(tid, name="lag", kind="webhook", url=rx.url,
                 batch={"max_events": 1000, "max_wait_ms": 0, "max_bytes": 10_000_000})  # fmt: skip
    first = log.store.tree_state(tid).size
    d = Deliverer(dests, time_budget_s=1)
    stop = threading.Event()
    loop = threading.Thread(target=d.run, args=(stop, 0.01), daemon=True)
    loop.start()
    root = str(Path(__file__).resolve().parent.parent)
    done = subprocess.run(
        [sys.executable, "-c", WRITER_CODE, url, key_file, tid, str(rate), str(seconds)],
        capture_output=True, text=True, check=True, cwd=root,
        env={**os.environ, "PYTHONPATH": root},
    )  # fmt: skip
    sent, ingest_s = done.stdout.split()
    size = log.store.tree_state(tid).size
    end = time.monotonic() + 120
    while time.monotonic() < end and dests.list(tid)[0].health.lag_events:
        time.sleep(0.05)
    stop.set()
    loop.join(timeout=30)
    d.close()
    arrivals = rx.arrivals
    recorded = {r.seq: r.recorded_at / 1e6 for r in log.store.iter_entries(tid, first, size)}
    lags = sorted(arrivals[s] - t for s, t in recorded.items() if s in arrivals)
    rx.close()
    log.close()
    q = statistics.quantiles(lags, n=100) if len(lags) >= 100 else [max(lags or [0])] * 99
    return {
        "target_rate": rate,
        "achieved_ingest_per_s": round(int(sent) / float(ingest_s)),
        "events": int(sent),
        "delivered": len(lags),
        "lag_p50_ms": round(statistics.median(lags) * 1000, 1) if lags else None,
        "lag_p99_ms": round(q[98] * 1000, 1),
        "lag_max_ms": round(max(lags) * 1000, 1) if lags else None,
    }


def main(n: int, backends: list[str], pg_url: str, rate: int = 5000,
         seconds: float = 10.0) -> list[dict[str, Any]]:  # fmt: skip
    out = []
    for backend in backends:
        with tempfile.TemporaryDirectory() as d:
            work = Path(d)
            key_file = str(work / "k.key")

            def url(name: str, backend: str = backend, work: Path = work) -> str:
                if backend == "sqlite":
                    return f"sqlite:///{work / (name + '.db')}"
                import psycopg

                schema = f"bench_{name}_{os.getpid()}"
                with psycopg.connect(pg_url, autocommit=True) as c:
                    c.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                    c.execute(f"CREATE SCHEMA {schema}")
                return f"{pg_url}?options=-csearch_path%3D{schema}"

            out.append({
                "backend": backend,
                "webhook": webhook_throughput(url("webhook"), n, key_file),
                "syslog": syslog_throughput(url("syslog"), n, key_file, work),
                "lag": lag_under_ingest(url("lag"), rate, seconds, key_file),
            })  # fmt: skip
    return out


def make_events(n: int) -> list[dict[str, Any]]:
    return list(_workload(n))
