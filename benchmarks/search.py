"""Search and export benchmarks (issue: search, export, access auditing).

    .venv/bin/python -m benchmarks.run --suite search                   # 1M events, both stores
    .venv/bin/python -m benchmarks.run --suite search --events 10000000 --data-dir /big/disk
    .venv/bin/python -m benchmarks.run --suite search --events 100000 --backends sqlite
    .venv/bin/python -m benchmarks.run --suite search --events 10000000 --data-dir D --no-export

For each store: one tenant of `--events` entries spread over 180 days (plus
a second tenant a tenth its size, so full-text matches of other tenants
are in the way), filled through AuditLog.append; then

- 10 representative queries through `AuditLog.search` (parse, compile,
  store, cursor), first page of 50, p50/p95 over repeated runs, against the
  targets: p95 <= 20 ms for field filters, <= 200 ms for free text;
- the same queries cold, each the first search of a freshly opened log
  after the OS page cache was dropped: on a running server (dropped a few
  seconds after the open) and racing the process's own start; three
  rounds of the ten, each query's worst held against its target;
- CSV export of the whole tenant (`AuditLog.export`) in rows/s, against a
  raw scan in the same run: the same rows (``SELECT *`` in seq order, raw
  driver) straight into `csv.writer` (QUOTE_ALL), both into a sink that
  discards the bytes; best of two rounds each, alternating;
- peak RSS of `kimonaudit export` (a fresh process) writing the whole
  tenant as CSV to /dev/null.

`--no-export` stops after the queries: at 10M entries the four rounds of
whole-tenant exports take longer than the queries by far.

With --data-dir the filled databases are kept there (SQLite file, a
PostgreSQL schema named after the size) and reused by the next run.
"""

from __future__ import annotations

import csv
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import kimonaudit
from benchmarks.workload import events

START = datetime(2026, 3, 1, tzinfo=UTC)
SPAN = timedelta(days=180)
END = START + SPAN
MAIN = "t_benchsearchmain00"
NOISE = "t_benchsearchnoise0"
BATCH = 1_000
RUNS = 40

# (kind, query): kind "filter" has a p95 target of 20 ms, "text" 200 ms.
_WEEK = (END - timedelta(days=60)).date()
QUERIES: list[tuple[str, str]] = [
    ("filter", "action:ticket.viewed target:ticket:10482"),
    ("filter", "actor:agent_42 -action:api.request"),
    ("filter", "action:role.* created:>-7d"),
    ("filter", "is:security severity:>=high created:-24h"),
    ("filter", "ip:198.51.100.0/24 is:failure"),
    ("filter", f"action:auth.login.failed created:{_WEEK}..{_WEEK + timedelta(days=6)}"),
    ("filter", "is:security"),
    ("text", '"status pending" target_type:ticket'),
    ("text", "mobile"),
    ("text", "req-000123456"),
]
# Not part of the ten: worst cases, reported for what they cost.
EXTRA: list[tuple[str, str]] = [
    ("filter", ""),
    ("filter", "outcome:error"),  # no match at all: every entry is looked at
    ("text", "refund"),  # a word no entry holds
    ("text", "pending actor:agent_42"),
]
TARGETS_MS = {"filter": 20.0, "text": 200.0}


class Clock:
    """Simulated time: the fill spreads entries over SPAN; afterwards "now"
    is the end of that span."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = total

    def __call__(self) -> datetime:
        return START + SPAN * (self.done / self.total)


def workload(n: int, seed: int) -> Iterator[dict[str, Any]]:
    """benchmarks.workload with outcomes: failed logins fail, and one API
    call in thirty is denied, so is:failure finds something."""
    for i, ev in enumerate(events(n, seed)):
        if ev["action"] == "auth.login.failed":
            ev["outcome"] = "failure"
        elif ev["action"] == "api.request" and i % 30 == 0:
            ev["outcome"] = "denied"
            ev["metadata"] = {**ev["metadata"], "status": 403}
        yield ev


def fill(log: kimonaudit.AuditLog, clock: Clock, n: int) -> float:
    """Append n events to MAIN and n/10 to NOISE, interleaved; seconds taken."""
    noise_n = max(1, n // 10)
    clock.total, clock.done = n + noise_n, 0
    main, noise = workload(n, 7), workload(noise_n, 8)
    left = {MAIN: n, NOISE: noise_n}
    gens = {MAIN: main, NOISE: noise}
    t0 = time.perf_counter()
    turn = 0
    while any(left.values()):
        tid = NOISE if turn % 11 == 10 and left[NOISE] else MAIN
        if not left[tid]:
            tid = NOISE
        k = min(BATCH, left[tid])
        log.append(tid, [next(gens[tid]) for _ in range(k)])
        left[tid] -= k
        clock.done += k
        turn += 1
    clock.done = clock.total
    return time.perf_counter() - t0


def _drop_os_cache() -> bool:
    import os

    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


#: Each cold query is timed this many times (rounds of all ten): one read
#: of a cold disk can take a few milliseconds or tens, so the worst of a
#: few is what is held against the target.
COLD_ROUNDS = 3


def cold_queries(
    url: str, key_file: str, settle: float, rounds: int = COLD_ROUNDS
) -> dict[str, Any]:
    """Each query once per round on a freshly opened log with the OS page
    cache dropped (when permitted): what the first search of the day costs.

    `settle` seconds pass between opening the log and dropping the cache: 0
    times a search racing the start of its own process (the indexer child
    then reads its modules from the same cold disk); a few seconds time a
    running server whose cache was evicted."""
    out: dict[str, Any] = {"settle_s": settle, "rounds": rounds}
    times: dict[str, list[float]] = {q: [] for _, q in QUERIES}
    dropped = False
    for _ in range(rounds):
        for _kind, q in QUERIES:
            if not settle:
                dropped = _drop_os_cache()
            with kimonaudit.open(url, key_file=key_file, clock=Clock(1)) as log:
                if settle:
                    time.sleep(settle)
                    dropped = _drop_os_cache()
                t0 = time.perf_counter()
                log.search(MAIN, q, limit=50)
                times[q].append((time.perf_counter() - t0) * 1e3)
    for kind, q in QUERIES:
        worst = max(times[q])
        out[q] = {
            "kind": kind,
            "ms": [round(t, 2) for t in times[q]],
            "median_ms": round(statistics.median(times[q]), 2),
            "max_ms": round(worst, 2),
            "meets_target": worst <= TARGETS_MS[kind],
        }
    out["os_cache_dropped"] = dropped
    out["max_ms"] = round(max(max(t) for t in times.values()), 2)
    for kind in TARGETS_MS:
        mine = [max(times[q]) for k, q in QUERIES if k == kind]
        out[f"{kind}_max_ms"] = round(max(mine), 2)
    return out


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def time_queries(log: kimonaudit.AuditLog, queries: list[tuple[str, str]]) -> list[dict]:
    out = []
    for kind, q in queries:
        for _ in range(2):
            page = log.search(MAIN, q, limit=50)  # warm up
        times = []
        for _ in range(RUNS):
            t0 = time.perf_counter()
            page = log.search(MAIN, q, limit=50)
            times.append(time.perf_counter() - t0)
        p95 = _pct(times, 95) * 1e3
        out.append({
            "kind": kind,
            "query": q,
            "rows": len(page),
            "p50_ms": round(statistics.median(times) * 1e3, 2),
            "p95_ms": round(p95, 2),
            "target_p95_ms": TARGETS_MS[kind],
            "meets_target": p95 <= TARGETS_MS[kind],
        })  # fmt: skip
    return out


class _Discard:
    """A sink that counts what it is given and keeps nothing."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: Any) -> int:
        self.size += len(data)
        return len(data)


def export_rate(log: kimonaudit.AuditLog) -> tuple[float, int, int]:
    sink = _Discard()
    t0 = time.perf_counter()
    exp = log.export(MAIN, "", "csv")
    for chunk in exp:
        sink.write(chunk)
    secs = time.perf_counter() - t0
    return exp.rows / secs, exp.rows, sink.size


def raw_rate(url: str) -> tuple[float, int, int]:
    """The same rows, SELECT * in seq order, into csv.writer (QUOTE_ALL)."""
    sink = _Discard()
    writer = csv.writer(sink, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    n = 0
    t0 = time.perf_counter()
    if url.startswith("sqlite:"):
        import sqlite3

        from kimonaudit.store.sqlite import sqlite_path

        conn = sqlite3.connect(sqlite_path(url))
        (tno,) = conn.execute(
            "SELECT tenant_no FROM tenants WHERE tenant_id = ?", (MAIN,)
        ).fetchone()
        cur = conn.execute(
            "SELECT * FROM ledger WHERE rid >= ? AND rid < ? ORDER BY rid",
            (tno << 40, (tno + 1) << 40),
        )
        while rows := cur.fetchmany(1000):
            writer.writerows(rows)
            n += len(rows)
        conn.close()
    else:
        import psycopg

        with psycopg.connect(url) as conn, conn.cursor(name="raw_scan") as cur:
            cur.itersize = 1000
            cur.execute("SELECT * FROM entries WHERE tenant_id = %s ORDER BY seq", (MAIN,))
            while rows := cur.fetchmany(1000):
                writer.writerows(rows)
                n += len(rows)
    return n / (time.perf_counter() - t0), n, sink.size


# Runs `kimonaudit` and reports the process's own peak RSS (VmHWM). Not
# getrusage: on Linux a child's ru_maxrss starts from its parent's size at
# fork, which here is the benchmark's.
_RSS_WRAPPER = """
import sys
from kimonaudit.cli import main
try:
    main(sys.argv[1:])
finally:
    with open("/proc/self/status") as f:
        peak = next(line for line in f if line.startswith("VmHWM:"))
    sys.stderr.write("\\n" + peak)
"""


def export_rss(url: str, key_file: str) -> dict[str, Any]:
    """Peak RSS of `kimonaudit export` writing the whole tenant as CSV to /dev/null."""
    cmd = [sys.executable, "-c", _RSS_WRAPPER, "--db", url, "--key-file", key_file,
           "export", "--tenant", MAIN, "--format", "csv"]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    secs = time.perf_counter() - t0
    err = proc.stderr.decode()
    if proc.returncode != 0 or "VmHWM:" not in err:
        raise RuntimeError(f"export failed: {err[-2000:]}")
    kb = int(err.rsplit("VmHWM:", 1)[1].split()[0])
    return {"peak_rss_mb": round(kb / 1024, 1), "seconds": round(secs, 1)}


def _data_url(backend: str, n: int, data_dir: str | None, pg_url: str, scratch: str) -> str:
    tag = f"search_{n}"
    if backend == "sqlite":
        return f"sqlite:///{Path(data_dir or scratch) / (tag + '.db')}"
    import psycopg

    base = pg_url.split("?")[0]
    schema = tag if data_dir else f"bench_{tag}_{secrets.token_hex(3)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    return f"{base}?options={quote(f'-csearch_path={schema}')}"


def run_backend(
    backend: str, n: int, url: str, data_dir: str | None, scratch: str, export: bool = True
) -> dict[str, Any]:
    key_file = str(Path(data_dir or scratch) / "bench-search.key")
    out: dict[str, Any] = {"backend": backend, "events": n, "noise_tenant_events": n // 10}
    clock = Clock(1)
    with kimonaudit.open(url, key_file=key_file, clock=clock) as log:
        have = log.store.get_tenant(MAIN) is not None
        if have and log.store.tree_state(MAIN).size >= n:
            out["fill"] = "reused"
        else:
            if have:
                raise SystemExit(f"{url} holds a partial benchmark tenant: remove it first")
            log.create_tenant("bench", plan="enterprise", tenant_id=MAIN)
            log.create_tenant("noise", plan="enterprise", tenant_id=NOISE)
            secs = fill(log, clock, n)
            out["fill"] = {"seconds": round(secs, 1), "events_per_s": round(n * 1.1 / secs)}
        wait = getattr(log.store, "wait_indexed", None)
        if wait is not None:
            t0 = time.perf_counter()
            wait(timeout=3600)
            out["index_catch_up_seconds"] = round(time.perf_counter() - t0, 1)
            if backend == "postgres":
                import psycopg

                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("VACUUM ANALYZE")  # what autovacuum does on its own, soon after
                    # And put what it dirtied on disk now, so that no write
                    # is still under way while cold reads are timed (the
                    # first cold query once took 57 ms a minute after the
                    # vacuum, 8-13 ms in every later timing).
                    conn.execute("CHECKPOINT")
        out["queries"] = time_queries(log, QUERIES)
        out["extra_queries"] = time_queries(log, EXTRA)
    out["queries_cold"] = cold_queries(url, key_file, settle=3.0)
    out["queries_cold_at_start"] = cold_queries(url, key_file, settle=0.0)
    cold = out["queries_cold"]
    out["summary"] = {
        "filter_p95_max_ms": max(q["p95_ms"] for q in out["queries"] if q["kind"] == "filter"),
        "text_p95_max_ms": max(q["p95_ms"] for q in out["queries"] if q["kind"] == "text"),
        "all_query_targets_met": all(q["meets_target"] for q in out["queries"]),
        "cold_filter_max_ms": cold["filter_max_ms"],
        "cold_text_max_ms": cold["text_max_ms"],
        "cold_targets_met": all(v["meets_target"] for v in cold.values() if isinstance(v, dict)),
    }
    if not export:
        return out
    with kimonaudit.open(url, key_file=key_file, clock=clock) as log:
        rounds = []
        for _ in range(2):
            rounds.append(("export", *export_rate(log)))
            rounds.append(("raw", *raw_rate(url)))
    best = {k: max(r[1] for r in rounds if r[0] == k) for k in ("export", "raw")}
    rows = {k: next(r[2] for r in rounds if r[0] == k) for k in ("export", "raw")}
    size = {k: next(r[3] for r in rounds if r[0] == k) for k in ("export", "raw")}
    out["export"] = {
        "rows": rows["export"],
        "csv_rows_per_s": round(best["export"]),
        "csv_mb": round(size["export"] / 2**20, 1),
        "raw_scan_rows_per_s": round(best["raw"]),
        "raw_scan_mb": round(size["raw"] / 2**20, 1),
        "raw_baseline": "SELECT * in seq order (raw driver) into csv.writer(QUOTE_ALL)",
        "ratio": round(best["export"] / best["raw"], 2),
        "rounds": [[k, round(r)] for k, r, _, _ in rounds],
    }
    out["export_process"] = export_rss(url, key_file)
    out["summary"]["export_ratio_met"] = out["export"]["ratio"] >= 1.0
    out["summary"]["rss_met"] = out["export_process"]["peak_rss_mb"] < 150
    return out


def _drop_scratch_schema(url: str) -> None:
    import psycopg

    schema = url.split("search_path%3D", 1)[1]
    if schema.startswith("bench_search_"):
        with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def main(
    n: int, backends: list[str], pg_url: str, data_dir: str | None, export: bool = True
) -> list[dict]:
    import tempfile

    out = []
    with tempfile.TemporaryDirectory() as scratch:
        for b in backends:
            url = _data_url(b, n, data_dir, pg_url, scratch)
            try:
                out.append(run_backend(b, n, url, data_dir, scratch, export))
            finally:
                if b == "postgres" and not data_dir:
                    _drop_scratch_schema(url)
    return out
