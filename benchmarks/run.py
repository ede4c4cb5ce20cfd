"""Run the benchmarks and print one JSON document.

    .venv/bin/python -m benchmarks.run                      # core suite, 1M events
    .venv/bin/python -m benchmarks.run --events 100000      # quicker
    .venv/bin/python -m benchmarks.run --suite core --backends sqlite
    .venv/bin/python -m benchmarks.run --suite search       # search/export, see search.py
    .venv/bin/python -m benchmarks.run --suite http         # HTTP ingest; takes the options
                                                            # of benchmarks/http_ingest.py too
    .venv/bin/python -m benchmarks.run --suite retention    # purge rate, ingest p99 during it
    .venv/bin/python -m benchmarks.run --suite delivery --events 50000   # SIEM delivery,
                                                            # see delivery.py (--rate, --seconds)

Results also go to benchmarks/results/<suite>-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


def calibration_us() -> float:
    """µs per `sum` of a 1,000-int list, the median of five runs: how fast
    this CPU is right now. Shared and virtual machines swing by a factor of
    two within an hour, so each result records it before and after."""
    values = list(range(1000))
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(20_000):
            sum(values)
        runs.append((time.perf_counter() - t0) / 20_000 * 1e6)
    return round(sorted(runs)[2], 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    suites = ["core", "search", "http", "retention", "delivery"]
    ap.add_argument("--suite", default="core", choices=suites)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--writers", type=int, default=2, help="threads calling AuditLog.append")
    ap.add_argument(
        "--pg-url",
        default=os.environ.get(
            "KIMONAUDIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
        ),
    )
    ap.add_argument("--data-dir", help="search suite: keep and reuse the filled databases here")
    ap.add_argument(
        "--no-export",
        action="store_true",
        help="search suite: time the queries only, not the whole-tenant CSV export",
    )
    ap.add_argument("--rate", type=int, default=5000, help="delivery suite: ingest events/s")
    ap.add_argument("--seconds", type=float, default=10.0, help="delivery suite: ingest time")
    args, rest = ap.parse_known_args()
    if args.suite == "http":
        import sys

        from benchmarks import http_ingest

        sys.argv = [sys.argv[0], *rest]
        http_ingest.main()  # prints and saves its own JSON document
        return
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    started = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    doc: dict = {
        "suite": args.suite,
        "started": started,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "calibration_us_before": calibration_us(),
        },
    }
    if args.suite == "core":
        from benchmarks import core

        doc["results"] = core.main(args.events, args.backends.split(","), args.pg_url, args.writers)
    elif args.suite == "retention":
        from benchmarks import retention

        doc["results"] = retention.main(args.events, args.backends.split(","), args.pg_url)
    elif args.suite == "search":
        from benchmarks import search

        doc["results"] = search.main(
            args.events,
            args.backends.split(","),
            args.pg_url,
            args.data_dir,
            export=not args.no_export,
        )
    elif args.suite == "delivery":
        from benchmarks import delivery

        doc["results"] = delivery.main(
            args.events, args.backends.split(","), args.pg_url, args.rate, args.seconds
        )
    doc["machine"]["calibration_us_after"] = calibration_us()
    text = json.dumps(doc, indent=2)
    print(text)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"{args.suite}-{started}.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
