"""HTTP ingest benchmark: `kimonaudit serve` over loopback, against the
library's own append rate measured in the same run.

    .venv/bin/python -m benchmarks.http_ingest                 # defaults
    .venv/bin/python -m benchmarks.http_ingest --quick         # a smoke run

Prints one JSON document:

- ``library``: AuditLog.append in batches of 1,000 in this process (a fresh
  SQLite file), events/s: the ceiling the server works under;
- ``http_batched``: POST /v1/events with 1,000 events per request from a few
  concurrent connections, events/s acknowledged, to a fresh server;
- ``rounds``: the two above alternated (``--rounds``, 3 by default), each
  on fresh databases and with the same number of events, because this
  machine's speed drifts by a quarter within minutes and a ratio of two
  runs minutes apart measures that drift as much as the server. The round
  with the median ratio is reported as ``library`` and ``http_batched``,
  and its ratio as ``ratios.http_batched_vs_library``;
- ``http_single``: one event per request, to the last round's server,
  from 50 and 200 concurrent clients, requests/s and latency p50/p90/p99/max; closed loop (each
  client sends its next request when the previous one is answered: the
  server's capacity) and paced (a fixed total offered rate, latency counted
  from the scheduled send time);
- ``raw_paced_commits``: the floor for the paced latency, measured in the
  same run just before and just after the paced runs, while the server
  idles: this process making one lean ledger row per scheduled send time
  (the same offered rate and seconds) and a writer thread committing them
  with group commit (sqlite3, WAL, synchronous=FULL: each transaction
  takes every row waiting), latency counted from the scheduled time to
  the commit, as for the server. An acknowledged event needs at least
  this: its row durable. On this machine's disk one fdatasync in a few
  thousand takes 15-90 ms, and every row scheduled meanwhile waits, so
  this floor's p99 moves with the disk from run to run; ``slow_rows``
  counts rows that waited over 15 ms;
- ``server_peak_rss_mb``: the peak resident memory (VmHWM) of the server
  process and of its indexer child, read after all of the above.

The server is a subprocess (`python -m kimonaudit serve`) on a free
127.0.0.1 port with a temporary SQLite database, rate limiting off and
the access log off. The load generator is a small asyncio HTTP/1.1
keep-alive client, so that on a small machine the generator's own CPU
cost stays well below the server's. Every phase is bounded in requests
and in seconds. Results also go to benchmarks/results/http-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import queue
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

import kimonaudit
from benchmarks.core import LEAN_SQLITE
from benchmarks.workload import events

BATCH = 1_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


# -- library baseline ----------------------------------------------------------
def library_rate(tmp: Path, n: int, writers: int) -> dict[str, Any]:
    """AuditLog.append in batches of 1,000 from `writers` threads (as the
    core benchmark does: one validates and hashes while another commits)."""
    log = kimonaudit.open(f"sqlite:///{tmp / 'lib.db'}", key_file=str(tmp / "lib.key"))
    try:
        tid = log.create_tenant("bench-lib").id
        stream = list(events(n, seed=11))
        batches = [stream[i : i + BATCH] for i in range(0, n, BATCH)]
        lock = threading.Lock()
        gc.freeze()  # the prebuilt input, as in the core benchmark (see there)

        def work() -> None:
            while True:
                with lock:
                    if not batches:
                        return
                    batch = batches.pop()
                log.append(tid, batch)

        threads = [threading.Thread(target=work) for _ in range(writers)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    finally:
        gc.unfreeze()
        log.close()
    return {
        "events": n,
        "batch": BATCH,
        "writers": writers,
        "seconds": round(elapsed, 3),
        "events_per_s": round(n / elapsed),
    }


# -- a minimal keep-alive HTTP/1.1 client ----------------------------------------
class Conn:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def post(self, path: str, body: bytes, key: str) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        await self.writer.drain()
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


async def _batched(port: int, key: str, bodies: list[bytes], clients: int, limit_s: float) -> dict:
    queue = list(reversed(bodies))
    acked = 0
    errors = 0
    deadline = time.perf_counter() + limit_s

    async def worker() -> None:
        nonlocal acked, errors
        c = Conn(port)
        await c.open()
        try:
            while queue and time.perf_counter() < deadline:
                body = queue.pop()
                status, data = await c.post("/v1/events", body, key)
                if status == 201:
                    acked += len(json.loads(data)["receipts"])
                else:
                    errors += 1
        finally:
            await c.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    return {
        "clients": clients,
        "batch": BATCH,
        "events": acked,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "events_per_s": round(acked / elapsed),
    }


async def _single(
    port: int,
    key: str,
    bodies: list[bytes],
    clients: int,
    limit_s: float,
    max_requests: int,
    rate: float | None = None,
) -> dict:
    """`clients` connections sending one event per request. Closed loop
    (rate None): each sends as soon as its previous answer is in, which
    measures the server's capacity. Paced (`rate` requests/s offered in
    total): each client keeps a schedule, and latency is counted from the
    scheduled send time, so a stalled server cannot hide its queueing
    (no coordinated omission)."""
    latencies: list[float] = []
    errors = 0
    sent = 0
    started = time.perf_counter()
    deadline = started + limit_s
    interval = clients / rate if rate else 0.0

    async def worker(offset: int) -> None:
        nonlocal errors, sent
        c = Conn(port)
        await c.open()
        i = offset
        due = started + (offset / clients) * interval
        try:
            while sent < max_requests and time.perf_counter() < deadline:
                if rate:
                    delay = due - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    t0 = due
                    due += interval
                else:
                    t0 = time.perf_counter()
                sent += 1
                status, _ = await c.post("/v1/events", bodies[i % len(bodies)], key)
                latencies.append(time.perf_counter() - t0)
                if status != 201:
                    errors += 1
                i += clients
        finally:
            await c.close()

    await asyncio.gather(*(worker(k) for k in range(clients)))
    elapsed = time.perf_counter() - started
    ms = [x * 1e3 for x in latencies]
    return {
        "clients": clients,
        "mode": f"paced {rate:g} req/s offered" if rate else "closed loop",
        "requests": len(ms),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "requests_per_s": round(len(ms) / elapsed),
        "p50_ms": round(_pct(ms, 50), 2),
        "p90_ms": round(_pct(ms, 90), 2),
        "p99_ms": round(_pct(ms, 99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def raw_paced_commits(path: Path, bodies: list[bytes], rate: float, seconds: float) -> dict:
    """The paced runs' floor (see the module docstring): lean ledger rows
    made at their scheduled times and committed durably by a writer thread
    with group commit (each transaction takes every row waiting), in this
    process, no HTTP. A row's latency runs from its scheduled time to the
    end of the commit that made it durable."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(LEAN_SQLITE)
    n = int(rate * seconds)
    waiting: queue.SimpleQueue[tuple[float, tuple] | None] = queue.SimpleQueue()
    latencies: list[float] = []
    groups = 0

    def writer() -> None:
        nonlocal groups
        done = False
        while not done:
            group = [waiting.get()]
            while True:
                try:
                    group.append(waiting.get_nowait())
                except queue.Empty:
                    break
            if group[-1] is None:
                done = True
                group.pop()
            if not group:
                continue
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO ledger VALUES (1, ?, ?, ?, ?, ?)", [row for _, row in group]
            )
            conn.execute("COMMIT")
            end = time.perf_counter()
            latencies.extend((end - due) * 1e3 for due, _ in group)
            groups += 1

    thread = threading.Thread(target=writer)
    thread.start()
    started = time.perf_counter()
    for i in range(n):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        body = bodies[i % len(bodies)]
        waiting.put((due, (i, f"{i:032x}", time.time_ns() // 1000, body, body[:32])))
    waiting.put(None)
    thread.join()
    elapsed = time.perf_counter() - started
    conn.close()
    return {
        "mode": f"paced {rate:g} rows/s offered, group commit",
        "rows": n,
        "commits": groups,
        "seconds": round(elapsed, 3),
        "p50_ms": round(_pct(latencies, 50), 2),
        "p90_ms": round(_pct(latencies, 90), 2),
        "p99_ms": round(_pct(latencies, 99), 2),
        "max_ms": round(max(latencies), 2),
        "slow_rows": sum(1 for x in latencies if x > 15.0),
    }


class _GcPauses:
    """This process's cycle-collector pauses from now on (gc.callbacks)."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._t0 = 0.0
        gc.callbacks.append(self._note)

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.pauses.append(time.perf_counter() - self._t0)

    def report(self) -> dict[str, float]:
        gc.callbacks.remove(self._note)
        return {
            "collections": len(self.pauses),
            "max_ms": round(max(self.pauses, default=0.0) * 1e3, 2),
            "total_ms": round(sum(self.pauses) * 1e3, 1),
        }


def peak_rss_mb(pid: int) -> dict[str, float]:
    """Peak resident memory (VmHWM) of the server and of each child it
    started (the SQLite indexer), in MB, read from /proc after the load."""

    def hwm(p: int) -> float:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
        return 0.0

    out = {"serve": hwm(pid)}
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(OSError):
                out[f"child {child}"] = hwm(int(child))
    return out


# -- the server ------------------------------------------------------------------
def start_server(tmp: Path, port: int) -> tuple[subprocess.Popen[bytes], str]:
    db = f"sqlite:///{tmp / 'http.db'}"
    base = [sys.executable, "-m", "kimonaudit", "--db", db, "--key-file", str(tmp / "http.key")]
    made = subprocess.run(
        [*base, "tenants", "create", "bench-http", "--json"], check=True, capture_output=True
    )
    key = json.loads(made.stdout)["api_key"]["key"]
    proc = subprocess.Popen(
        [*base, "serve", "--port", str(port), "--rate-limit", "0", "--no-access-log"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, key
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the server did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc.stderr is not None:
        proc.stderr.close()


def _round(
    tmp: Path, args: argparse.Namespace, bodies: list[bytes]
) -> tuple[dict[str, Any], subprocess.Popen[bytes], int, str]:
    """One library run and one batched HTTP run, back to back, each on a
    fresh database of its own; returns the round and the running server."""
    tmp.mkdir()
    library = library_rate(tmp, args.library_events, args.library_writers)
    # The library run's garbage must not be left for this process's
    # collector to walk while it measures the server.
    gc.collect()
    gc.freeze()
    port = _free_port()
    proc, key = start_server(tmp, port)
    try:
        batched = asyncio.run(_batched(port, key, bodies, args.batched_clients, limit_s=120))
    except BaseException:
        _stop(proc)
        raise
    ratio = round(batched["events_per_s"] / library["events_per_s"], 3)
    return {"library": library, "http_batched": batched, "ratio": ratio}, proc, port, key


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--library-events", type=int, default=200_000)
    ap.add_argument("--batched-events", type=int, default=200_000)
    ap.add_argument("--batched-clients", type=int, default=4)
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="library and batched runs, alternated; the ratio is the median of the "
        "rounds' (this machine's speed drifts by a quarter within minutes)",
    )
    ap.add_argument("--single-clients", default="50,200")
    ap.add_argument("--single-seconds", type=float, default=10.0)
    ap.add_argument("--single-max-requests", type=int, default=50_000)
    ap.add_argument(
        "--paced-rate",
        type=float,
        default=1500.0,
        help="also run each client count paced at this total offered rate (0: skip); "
        "1,500 req/s is issue 7's latency figure (p99 <= 20 ms)",
    )
    ap.add_argument("--library-writers", type=int, default=2, help="threads calling append")
    ap.add_argument("--quick", action="store_true", help="small counts, for a smoke run")
    return ap


def main() -> None:
    ap = parser()
    args = ap.parse_args()
    if args.quick:
        args.library_events, args.batched_events, args.single_seconds = 10_000, 20_000, 3.0
        args.rounds = 1
    if args.rounds < 1:
        ap.error("--rounds must be at least 1")
    doc = measure(args)
    text = json.dumps(doc, indent=2)
    print(text)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"http-{doc['started']}.json").write_text(text + "\n")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every run `args` ask for: the JSON document `main` prints."""
    doc: dict[str, Any] = {
        "suite": "http_ingest",
        "started": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            # Other work on the machine skews every figure; recorded so runs can be compared.
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "store": "sqlite",
    }
    with tempfile.TemporaryDirectory(prefix="kimonaudit-bench-") as d:
        tmp = Path(d)
        stream = list(events(args.batched_events, seed=3))
        batch_bodies = [
            json.dumps({"events": stream[i : i + BATCH]}).encode()
            for i in range(0, len(stream), BATCH)
        ]
        single_bodies = [json.dumps(e).encode() for e in events(5_000, seed=5)]
        # Latency is counted from each request's scheduled time, so a pause
        # of this process's own would count against the server: the 200,000
        # event dicts (a million objects) must not be left for its cycle
        # collector to walk in the middle of a run (one such walk was 0.25 s,
        # the p99 of a whole paced run). Each round collects and freezes
        # what is left before its server runs (`_round`).
        del stream
        rounds = []
        for r in range(args.rounds):
            result, proc, port, key = _round(tmp / f"round{r}", args, batch_bodies)
            rounds.append(result)
            if r < args.rounds - 1:
                _stop(proc)
        # This process's collector pauses while it times single requests
        # (the library rounds' own collections are not the load generator's).
        pauses = _GcPauses()
        try:
            # The single-event runs go to the last round's server.
            clients = [int(c) for c in args.single_clients.split(",")]

            def single(c: int, rate: float | None) -> dict[str, Any]:
                return asyncio.run(
                    _single(
                        port,
                        key,
                        single_bodies,
                        c,
                        args.single_seconds,
                        args.single_max_requests,
                        rate,
                    )
                )

            def floor(name: str) -> dict[str, Any]:
                return raw_paced_commits(
                    tmp / name, single_bodies, args.paced_rate, args.single_seconds
                )

            doc["http_single"] = [single(c, None) for c in clients]
            if args.paced_rate:
                doc["raw_paced_commits"] = [floor("raw-before.db")]
                doc["http_single"] += [single(c, args.paced_rate) for c in clients]
                doc["raw_paced_commits"].append(floor("raw-after.db"))
            doc["load_generator_gc"] = pauses.report()
            doc["server_peak_rss_mb"] = peak_rss_mb(proc.pid)
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
            doc["server_events_appended"] = next(
                float(line.split()[-1])
                for line in metrics.splitlines()
                if line.startswith("kimonaudit_events_appended_total")
            )
        finally:
            _stop(proc)
    doc["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    # The round with the median ratio stands for the run; every round is kept.
    middle = sorted(rounds, key=lambda x: x["ratio"])[(len(rounds) - 1) // 2]
    doc["library"] = middle["library"]
    doc["http_batched"] = middle["http_batched"]
    doc["rounds"] = rounds
    doc["ratios"] = {
        "http_batched_vs_library": middle["ratio"],
        "http_batched_vs_library_rounds": [x["ratio"] for x in rounds],
    }
    return doc


if __name__ == "__main__":
    main()
