"""The core benchmark still runs and reports what docs/scaling.md and the
README say it does, on both stores (a smoke test: no timing is asserted,
only that every figure is there and consistent with its parts)."""

from __future__ import annotations

from typing import Any

import pytest
from benchmarks import core


def _check(r: dict[str, Any], backend: str, events: int) -> None:
    assert r["backend"] == backend and r["events"] == events
    assert r["append_events_per_s"] > 0 and r["raw_events_per_s"] > 0
    assert r["ratio"] == round(r["append_events_per_s"] / r["raw_events_per_s"], 3)
    u = r["uuid4_ids"]
    assert u["append_events_per_s"] > 0 and u["raw_events_per_s"] > 0
    assert u["vs_server_ids"] == round(u["append_events_per_s"] / r["append_events_per_s"], 3)
    assert r["index_lag"]["indexed_all"] is True
    paced = r["index_lag_paced"]
    assert [p["offered_events_per_s"] for p in paced] == list(core.PACED_RATES)
    for p in paced:
        assert p["index_lag"]["indexed_all"] is True
        assert p["achieved_events_per_s"] > 0 and p["events"] > 0
        lag = p["index_lag"]
        assert lag["p50_ms"] <= lag["p95_ms"] <= lag["p99_ms"] <= lag["max_ms"]
    cpu = r["cpu_per_event"]
    assert cpu["append_process_us"] > 0 and cpu["machine_us"] > 0
    assert cpu["indexer_process_us"] >= 0
    assert r["verify_entries_per_s"] > 0
    for kind in ("inclusion", "consistency"):
        assert r["proofs_warm"][kind]["n"] == 500 and r["proofs_cold"][kind]["n"] == 200


def test_the_cpu_account_counts_a_child_process_and_the_machine() -> None:
    """A child that burns the CPU for a while is counted as the indexer
    process would be (it has not exited, so the kernel's totals for waited
    children would not show it), and the machine's total includes it."""
    import subprocess
    import sys
    import time

    account = core.CpuAccount()
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nt = time.process_time()\n"
            "while time.process_time() - t < 0.4: pass\ntime.sleep(30)",
        ]
    )
    try:
        deadline = time.monotonic() + 20
        used: dict[str, float] = {}
        while time.monotonic() < deadline:
            used = account.per_event(1)
            if used["indexer_process_us"] >= 350_000:
                break
            time.sleep(0.05)
        assert used["indexer_process_us"] >= 350_000
        assert used["machine_us"] >= 0.9 * used["indexer_process_us"]
        assert used["append_process_us"] < used["indexer_process_us"]
    finally:
        child.kill()
        child.wait()


@pytest.fixture(autouse=True)
def _keep_the_page_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # The benchmark drops the OS page cache for its cold proofs; a test
    # must not do that to the machine.
    monkeypatch.setattr(core, "_drop_os_cache", lambda: False)


def test_core_suite_on_sqlite() -> None:
    (r,) = core.main(2_000, ["sqlite"], "", 2)
    _check(r, "sqlite", 2_000)


@pytest.mark.postgres
def test_core_suite_on_postgres_leaves_no_schema(pg_admin_url: str) -> None:
    import psycopg

    def bench_schemas() -> set[str]:
        with psycopg.connect(pg_admin_url) as conn:
            rows = conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench_raw_%'"
            ).fetchall()
        return {name for (name,) in rows}

    before = bench_schemas()
    (r,) = core.main(2_000, ["postgres"], pg_admin_url, 2)
    _check(r, "postgres", 2_000)
    assert bench_schemas() == before


def test_http_suite_alternates_rounds_and_reports_the_median_ratio() -> None:
    from benchmarks import http_ingest

    args = http_ingest.parser().parse_args(
        [
            "--library-events", "2000",
            "--batched-events", "3000",
            "--rounds", "3",
            "--single-clients", "4",
            "--single-seconds", "0.5",
            "--single-max-requests", "200",
            "--paced-rate", "0",
        ]
    )  # fmt: skip
    doc = http_ingest.measure(args)
    rounds = doc["rounds"]
    assert len(rounds) == 3
    for r in rounds:
        assert r["library"]["events"] == 2000
        assert r["http_batched"]["events"] == 3000 and r["http_batched"]["errors"] == 0
        assert r["ratio"] == round(
            r["http_batched"]["events_per_s"] / r["library"]["events_per_s"], 3
        )
    ratios = sorted(r["ratio"] for r in rounds)
    assert doc["ratios"]["http_batched_vs_library"] == ratios[1]
    assert doc["ratios"]["http_batched_vs_library_rounds"] == [r["ratio"] for r in rounds]
    assert doc["http_batched"] in [r["http_batched"] for r in rounds]
    (single,) = doc["http_single"]
    assert single["clients"] == 4 and single["errors"] == 0 and single["requests"] > 0
    # Three rounds of 3,000 batched events, then the single events: all on
    # the last round's server only.
    assert doc["server_events_appended"] == 3000 + single["requests"]


def test_http_suite_floor_commits_every_scheduled_row_durably(tmp_path: Any) -> None:
    """The paced runs' floor: a lean row per scheduled time, each the body
    it was given, all committed (in group commits), latencies from the
    schedule."""
    import sqlite3

    from benchmarks import http_ingest

    bodies = [b'{"action":"ticket.viewed","n":%d}' % i for i in range(7)]
    out = http_ingest.raw_paced_commits(tmp_path / "floor.db", bodies, 400.0, 0.25)
    assert out["rows"] == 100 and 1 <= out["commits"] <= 100
    assert 0.2 <= out["seconds"] < 5
    assert 0 <= out["p50_ms"] <= out["p90_ms"] <= out["p99_ms"] <= out["max_ms"]
    assert 0 <= out["slow_rows"] <= 100
    conn = sqlite3.connect(tmp_path / "floor.db")
    rows = conn.execute("SELECT seq, payload FROM ledger ORDER BY seq").fetchall()
    assert [seq for seq, _ in rows] == list(range(100))
    assert all(payload == bodies[seq % 7] for seq, payload in rows)
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_search_suite_times_each_cold_query_every_round(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks import search

    import kimonaudit

    monkeypatch.setattr(search, "_drop_os_cache", lambda: False)
    url, key = f"sqlite:///{tmp_path / 's.db'}", str(tmp_path / "s.key")
    with kimonaudit.open(url, key_file=key, clock=search.Clock(1)) as log:
        log.create_tenant("bench", plan="enterprise", tenant_id=search.MAIN)
        log.create_tenant("noise", plan="enterprise", tenant_id=search.NOISE)
        search.fill(log, search.Clock(1), 300)
    out = search.cold_queries(url, key, settle=0.0, rounds=2)
    assert out["rounds"] == 2 and out["os_cache_dropped"] is False
    worst = {"filter": 0.0, "text": 0.0}
    for kind, q in search.QUERIES:
        r = out[q]
        assert r["kind"] == kind and len(r["ms"]) == 2
        assert r["max_ms"] == max(r["ms"]) and min(r["ms"]) <= r["median_ms"] <= r["max_ms"]
        assert r["meets_target"] == (r["max_ms"] <= search.TARGETS_MS[kind])
        worst[kind] = max(worst[kind], r["max_ms"])
    assert out["filter_max_ms"] == worst["filter"] and out["text_max_ms"] == worst["text"]
    assert out["max_ms"] == max(worst.values())
