"""Server memory under many searches (issue 10, item 9): RSS of a real
`kimonaudit serve` process on a filled SQLite log while clients run
searches through the HTTP API, sampled as it goes, with the number of
SQLite connections the server holds open on the database file.

    .venv/bin/python -m benchmarks.search_memory                       # 1M entries, 50,000 searches
    .venv/bin/python -m benchmarks.search_memory --events 200000 --searches 20000
    .venv/bin/python -m benchmarks.search_memory --src ../old/src    # another version's server

Prints one JSON document (and saves it to benchmarks/results/): RSS after
warm-up and at the end, its growth, the peak, and how many connections
the server had open. Flat means the growth after warm-up stays small
whatever the number of searches.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

import kimonaudit
from benchmarks.search import EXTRA, MAIN, QUERIES, Clock, fill

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _db_handles(pid: int, db: str) -> int:
    """Open file descriptors of `pid` on the database file itself (one per
    SQLite connection)."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == db:
                n += 1
        except OSError:
            pass
    return n


def prepare(db_path: Path, key_file: str, n: int) -> tuple[str, float]:
    """A log of n entries (plus a tenth of noise) and a read key: (key, fill seconds)."""
    url = f"sqlite:///{db_path}"
    clock = Clock(n)
    with kimonaudit.open(url, key_file=key_file, clock=clock) as log:
        seconds = 0.0
        if MAIN not in {t.id for t in log.list_tenants()}:
            from benchmarks.search import NOISE

            log.create_tenant("bench-main", plan="business", tenant_id=MAIN)
            log.create_tenant("bench-noise", plan="business", tenant_id=NOISE)
            seconds = fill(log, clock, n)
        key = log.create_api_key(MAIN, "bench-memory", ["events:read"])[1]
    return key, seconds


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.data_dir or tempfile.mkdtemp(prefix="kimon-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    db = work / f"memory_{args.events}.db"
    key_file = str(work / "bench.key")
    key, fill_s = prepare(db, key_file, args.events)
    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(args.src).resolve()) if args.src else str(ROOT / "src"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "kimonaudit", "--db", f"sqlite:///{db}", "--key-file", key_file,
         "serve", "--port", str(port), "--no-access-log", "--rate-limit", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        # The ten representative queries; --worst-cases adds the scans of
        # benchmarks/search.py's EXTRA (slow on a busy machine, same memory story).
        queries = [q for _, q in QUERIES + (EXTRA if args.worst_cases else [])]
        done = 0
        errors = 0
        lock = threading.Lock()
        samples: list[dict[str, float]] = []
        counter = itertools.count()

        def client() -> None:
            nonlocal done, errors
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as c:
                while (i := next(counter)) < args.searches:
                    try:
                        r = c.get("/v1/events", params={"q": queries[i % len(queries)],
                                  "limit": 50}, timeout=300)  # fmt: skip
                        failed = r.status_code != 200
                    except httpx.HTTPError:
                        failed = True
                    with lock:
                        done += 1
                        errors += failed

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(args.concurrency)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            time.sleep(args.sample_seconds)
            samples.append({
                "searches": done,
                "seconds": round(time.perf_counter() - t0, 1),
                "rss_mb": round(_rss_mb(server.pid), 1),
                "db_connections": _db_handles(server.pid, str(db)),
            })  # fmt: skip
        for t in threads:
            t.join()
        seconds = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(timeout=30)
    warm = next((s for s in samples if s["searches"] >= args.searches * 0.1), samples[0])
    last = samples[-1]
    return {
        "events": args.events,
        "searches": args.searches,
        "concurrency": args.concurrency,
        "fill_seconds": round(fill_s, 1),
        "search_seconds": round(seconds, 1),
        "searches_per_second": round(args.searches / seconds, 1),
        "errors": errors,
        "rss_mb_after_warmup": warm["rss_mb"],
        "rss_mb_end": last["rss_mb"],
        "rss_mb_peak": max(s["rss_mb"] for s in samples),
        "rss_growth_after_warmup_mb": round(last["rss_mb"] - warm["rss_mb"], 1),
        "db_connections_peak": max(s["db_connections"] for s in samples),
        "samples": samples,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--searches", type=int, default=50_000)
    ap.add_argument("--concurrency", type=int, default=16, help="clients searching at once")
    ap.add_argument("--sample-seconds", type=float, default=5.0)
    ap.add_argument("--data-dir", help="keep and reuse the filled database here")
    ap.add_argument("--worst-cases", action="store_true", help="add the full-scan queries")
    ap.add_argument("--src", help="run the server from this source tree (e.g. an older version)")
    args = ap.parse_args()
    doc = {
        "suite": "search_memory",
        "started": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "server_src": args.src or "this tree",
        "results": run(args),
    }
    text = json.dumps(doc, indent=2)
    out = ROOT / "benchmarks" / "results" / f"search_memory-{doc['started']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
