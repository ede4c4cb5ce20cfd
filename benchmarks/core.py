"""Core benchmarks (issue: tamper-evident log core).

- ingest through AuditLog.append in batches of 1,000, against the raw driver
  writing the very same rows with the same indexes in the same run
  (sqlite3 executemany; PostgreSQL COPY);
- verify, entries/s;
- inclusion and consistency proofs, p50/p95, cold (a freshly opened store,
  OS page cache dropped when permitted) and warm.
"""

from __future__ import annotations

import os
import random
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import kimonaudit
from benchmarks.workload import events
from kimonaudit.core.records import ENTRY_COLUMNS, EntryRow

BATCH = 1_000


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(_pct(values, 50) * 1e3, 3),
        "p95_ms": round(_pct(values, 95) * 1e3, 3),
        "max_ms": round(max(values) * 1e3, 3),
        "n": len(values),
    }


def _drop_os_cache() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def ingest(
    log: kimonaudit.AuditLog, tenant_id: str, batches: list[list[dict]], writers: int
) -> float:
    """Wall-clock seconds to append all batches with `writers` threads. Two
    threads let one validate and hash while the other's batch is written."""
    it = iter(batches)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        while True:
            with lock:
                batch = next(it, None)
            if batch is None:
                return
            try:
                log.append(tenant_id, batch)
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=work) for _ in range(writers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return elapsed


def raw_sqlite(path: str, rows: list[EntryRow], nodes: list[tuple]) -> float:
    """The floor: the same rows, same schema and indexes, same durability
    (WAL, synchronous=FULL), executemany in batches of 1,000."""
    from kimonaudit.store.sqlite import SQLiteStore

    SQLiteStore(path).close()  # creates the identical schema
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA cache_size=-65536")
    cols = ", ".join(ENTRY_COLUMNS)
    ins = f"INSERT INTO entries ({cols}) VALUES ({', '.join('?' * len(ENTRY_COLUMNS))})"
    per_batch_nodes: dict[int, list[tuple]] = {}
    for n in nodes:
        # a stored node (level, idx) is complete once leaf (idx+1)*2**level-1 exists
        last_leaf = (n[2] + 1) * (1 << n[1]) - 1
        per_batch_nodes.setdefault(last_leaf // BATCH, []).append(n)
    t0 = time.perf_counter()
    rid = 1
    for b in range(0, len(rows), BATCH):
        chunk = rows[b : b + BATCH]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(ins, chunk)
        conn.executemany(
            "INSERT INTO entries_fts (rowid, text) VALUES (?, ?)",
            ((rid + i, r.search_text) for i, r in enumerate(chunk)),
        )
        rid += len(chunk)
        conn.executemany(
            "INSERT INTO tree_nodes (tenant_id, level, idx, hash) VALUES (?, ?, ?, ?)",
            per_batch_nodes.get(b // BATCH, []),
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def raw_postgres(url: str, rows: list[EntryRow], nodes: list[tuple]) -> float:
    """The floor on PostgreSQL: COPY of the same rows (entries and the id
    table), into the same schema and indexes, one transaction per 1,000."""
    import psycopg

    from kimonaudit.store.postgres import PostgresStore

    PostgresStore(url).close()
    per_batch_nodes: dict[int, list[tuple]] = {}
    for n in nodes:
        last_leaf = (n[2] + 1) * (1 << n[1]) - 1
        per_batch_nodes.setdefault(last_leaf // BATCH, []).append(n)
    with psycopg.connect(url) as conn:
        # Partitions exist already after the measured run created them in
        # the other schema; create them here before timing, as the store does.
        months = sorted({_month(r.recorded_at) for r in rows})
        for y, m in months:
            lo, hi = _month_bounds(y, m)
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS entries_p{y:04d}{m:02d} PARTITION OF entries "
                f"FOR VALUES FROM ({lo}) TO ({hi})"
            )
        conn.commit()
        t0 = time.perf_counter()
        for b in range(0, len(rows), BATCH):
            chunk = rows[b : b + BATCH]
            with conn.cursor() as cur:
                with cur.copy(f"COPY entries ({', '.join(ENTRY_COLUMNS)}) FROM STDIN") as cp:
                    for r in chunk:
                        cp.write_row(r)
                with cur.copy(
                    "COPY event_ids (tenant_id, event_id, seq, recorded_at, leaf_hash) FROM STDIN"
                ) as cp:
                    for r in chunk:
                        cp.write_row((r.tenant_id, r.event_id, r.seq, r.recorded_at, r.leaf_hash))
                with cur.copy("COPY tree_nodes (tenant_id, level, idx, hash) FROM STDIN") as cp:
                    for n in per_batch_nodes.get(b // BATCH, []):
                        cp.write_row(n)
            conn.commit()
        return time.perf_counter() - t0


def _month(us: int) -> tuple[int, int]:
    t = time.gmtime(us // 1_000_000)
    return t.tm_year, t.tm_mon


def _month_bounds(y: int, m: int) -> tuple[int, int]:
    import calendar

    lo = calendar.timegm((y, m, 1, 0, 0, 0)) * 1_000_000
    ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
    hi = calendar.timegm((ny, nm, 1, 0, 0, 0)) * 1_000_000
    return lo, hi


def proofs(log: kimonaudit.AuditLog, tenant_id: str, size: int, n: int, seed: int) -> dict:
    rnd = random.Random(seed)
    seqs = [rnd.randrange(size) for _ in range(n)]
    pairs = [tuple(sorted((rnd.randrange(1, size), rnd.randrange(1, size + 1)))) for _ in range(n)]
    incl: list[float] = []
    for s in seqs:
        t0 = time.perf_counter()
        log.prove_inclusion(tenant_id, s)
        incl.append(time.perf_counter() - t0)
    cons: list[float] = []
    for a, b in pairs:
        t0 = time.perf_counter()
        log.prove_consistency(tenant_id, a, b)
        cons.append(time.perf_counter() - t0)
    return {"inclusion": _ms(incl), "consistency": _ms(cons)}


def run_backend(
    backend: str, url: str, key_file: str, n_events: int, writers: int, scratch: str
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "backend": backend,
        "events": n_events,
        "batch": BATCH,
        "writers": writers,
    }
    gen = events(n_events)
    batches = [
        [next(gen) for _ in range(min(BATCH, n_events - i))] for i in range(0, n_events, BATCH)
    ]
    with kimonaudit.open(url, key_file=key_file) as log:
        tid = log.create_tenant("bench", plan="enterprise").id
        secs = ingest(log, tid, batches, writers)
        out["append_events_per_s"] = round(n_events / secs)
        out["append_seconds"] = round(secs, 2)
        log.checkpoint(tid)
        rows = list(log.store.iter_entries(tid))
        nodes = _all_nodes(log, tid)
        # verify
        t0 = time.perf_counter()
        report = log.verify(tid)
        vsecs = time.perf_counter() - t0
        assert report.ok, report.problems[:3]
        out["verify_entries_per_s"] = round(report.checked / vsecs)
        out["proofs_warm"] = proofs(log, tid, n_events, 500, seed=1)
    cold_cache = _drop_os_cache()
    with kimonaudit.open(url, key_file=key_file) as log:
        out["proofs_cold"] = proofs(log, tid, n_events, 200, seed=2)
        out["proofs_cold"]["os_cache_dropped"] = cold_cache
    # raw baseline, same rows
    if backend == "sqlite":
        rsecs = raw_sqlite(os.path.join(scratch, "raw.db"), rows, nodes)
        out["raw_baseline"] = "sqlite3 executemany, same schema/indexes/FTS, WAL, synchronous=FULL"
    else:
        raw_url = _fresh_pg_schema(url)
        rsecs = raw_postgres(raw_url, rows, nodes)
        out["raw_baseline"] = "psycopg COPY, same schema/indexes/partitions"
    out["raw_events_per_s"] = round(n_events / rsecs)
    out["ratio"] = round(out["append_events_per_s"] / out["raw_events_per_s"], 3)
    return out


def _all_nodes(log: kimonaudit.AuditLog, tid: str) -> list[tuple]:
    if log.store.dialect == "sqlite":
        conn = sqlite3.connect(log.store.path)  # type: ignore[attr-defined]
        rows = conn.execute("SELECT tenant_id, level, idx, hash FROM tree_nodes").fetchall()
        conn.close()
        return rows
    import psycopg

    with psycopg.connect(log.store.url) as conn:
        return conn.execute("SELECT tenant_id, level, idx, hash FROM tree_nodes").fetchall()


def _fresh_pg_schema(url: str) -> str:
    import secrets
    from urllib.parse import quote

    import psycopg

    base = url.split("?")[0]
    schema = "bench_raw_" + secrets.token_hex(4)
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{base}?options={quote(f'-csearch_path={schema}')}"


def fresh_pg_url(base: str) -> str:
    return _fresh_pg_schema(base)


def main(n_events: int, backends: list[str], pg_url: str, writers: int) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        key_file = os.path.join(scratch, "bench.key")
        for backend in backends:
            url = f"sqlite:///{scratch}/bench.db" if backend == "sqlite" else fresh_pg_url(pg_url)
            results.append(run_backend(backend, url, key_file, n_events, writers, scratch))
    return results
