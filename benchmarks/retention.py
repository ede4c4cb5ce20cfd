"""Retention benchmark (issue 8): purge rate on one tenant of N entries
spread over 24 months (a free plan keeps 12, so about half goes), and
ingest latency (p50/p99 of 100-event appends into the same tenant) before
and during the purge.

    .venv/bin/python -m benchmarks.run --suite retention --events 1000000
"""

from __future__ import annotations

import os
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import kimonaudit
from benchmarks.workload import events

MONTHS = 24
BATCH = 1_000
PROBE = 100  # events per append while measuring ingest latency


class _Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def _fresh_pg(url: str) -> str:
    import secrets
    from urllib.parse import quote

    import psycopg

    schema = "kbench_" + secrets.token_hex(4)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


def _latencies(log: Any, tid: str, stop: threading.Event, out: list[float]) -> None:
    batch = list(events(PROBE, seed=99))
    while not stop.is_set():
        t0 = time.perf_counter()
        log.append(tid, batch)
        out.append(time.perf_counter() - t0)


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p * len(xs)))] * 1000, 2)


def one(backend: str, n: int, pg_url: str) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix="kbench-ret-")
    url = f"sqlite:///{tmp}/ret.db" if backend == "sqlite" else _fresh_pg(pg_url)
    end = datetime.now(UTC).replace(microsecond=0)
    clock = _Clock(end - timedelta(days=30.44 * MONTHS))
    step = timedelta(days=30.44 * MONTHS) * BATCH / n
    with kimonaudit.open(url, key_file=f"{tmp}/k.key", clock=clock) as log:
        tid = log.create_tenant("bench", plan="free").id
        t0 = time.perf_counter()
        pending: list[dict[str, Any]] = []
        for ev in events(n):
            pending.append(ev)
            if len(pending) == BATCH:
                log.append(tid, pending)
                pending = []
                clock.now += step
        if pending:
            log.append(tid, pending)
        fill = time.perf_counter() - t0
        for _ in range(12):  # monthly checkpoints exist before a real purge
            log.checkpoint(tid)
        clock.now = end
        before: list[float] = []
        # The machine may be shared: the load average goes with each figure.
        load_before = os.getloadavg()
        stop = threading.Event()
        th = threading.Thread(target=_latencies, args=(log, tid, stop, before))
        th.start()
        time.sleep(5)
        stop.set()
        th.join()
        during: list[float] = []
        stop = threading.Event()
        th = threading.Thread(target=_latencies, args=(log, tid, stop, during))
        th.start()
        t1 = time.perf_counter()
        report = log.run_retention(tenant_id=tid)
        purge_s = time.perf_counter() - t1
        load_during = os.getloadavg()
        stop.set()
        th.join()
        (t,) = report.tenants
        t2 = time.perf_counter()
        ok = log.verify(tid).ok
        verify_s = time.perf_counter() - t2
    _cleanup(tmp, url, pg_url)
    return {
        "backend": backend,
        "events": n,
        "fill_seconds": round(fill, 1),
        "purged": t.purged,
        "rows_deleted": t.rows_deleted,
        "partitions_dropped": len(t.partitions_dropped),
        "purge_seconds": round(purge_s, 2),
        "purge_entries_per_second": round(t.purged / purge_s) if purge_s else None,
        "ingest_appends_before": len(before),
        "ingest_p50_ms_before": _pct(before, 0.5),
        "ingest_p99_ms_before": _pct(before, 0.99),
        "load_average_before": [round(x, 2) for x in load_before],
        "ingest_appends_during": len(during),
        "ingest_p50_ms_during": _pct(during, 0.5),
        "ingest_p99_ms_during": _pct(during, 0.99),
        "ingest_mean_ms_during": round(statistics.fmean(during) * 1000, 2) if during else None,
        "ingest_max_ms_during": round(max(during) * 1000, 2) if during else None,
        "load_average_during": [round(x, 2) for x in load_during],
        "verify_after_ok": ok,
        "verify_seconds": round(verify_s, 1),
    }


def main(n: int, backends: list[str], pg_url: str) -> list[dict[str, Any]]:
    return [one(b, n, pg_url) for b in backends]


def _cleanup(tmp: str, url: str, pg_url: str) -> None:
    import shutil
    from urllib.parse import unquote

    shutil.rmtree(tmp, ignore_errors=True)
    if url.startswith("postgresql"):
        import psycopg

        schema = unquote(url).rsplit("search_path=", 1)[-1]
        try:
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        except psycopg.Error as exc:  # the figures matter more than the tidy-up
            print(f"could not drop schema {schema}: {exc}", file=__import__("sys").stderr)
