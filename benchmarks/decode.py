"""Per-event cost of decoding and validating ingest events.

    .venv/bin/python -m benchmarks.decode              # 1,000-event batches, JSON on stdout
    .venv/bin/python -m benchmarks.decode --events 200 --rounds 5

Bodies are the helpdesk workload of benchmarks/workload.py, as an HTTP
client sends them (`json.dumps`, with spaces), one batch of --events. Each
figure is the best of --rounds runs, in microseconds per event:

- baselines: `msgspec.json.decode` of the body untyped and into the typed
  event structs (no Event built, no payload encoded), and `json.loads`;
- bytes: the reference path (json.loads + the reference validator, what
  POST /v1/events did before) against `decode_events` (msgspec first);
- dicts: the reference `_validate_batch` against `validate_batch`
  (msgspec.convert first), what `AuditLog.append` runs;
- lines: NDJSON, json.loads + validate_event per line against decode_line;
- parts: the canonical payload encoding of the reference path, and the
  duplicate-key check of the fast path on its own;
- `with_occurred_at`: the same with a client timestamp in every event.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from typing import Any

import msgspec

from benchmarks.workload import events as workload
from kimonaudit.api.body import decode_events, parse_json
from kimonaudit.core import decode
from kimonaudit.core.events import _validate_batch, validate_batch, validate_event
from kimonaudit.core.leaf import encode_payload, payload_of


def run_all(cases: dict[str, Callable[[], Any]], per: int, rounds: int) -> dict[str, float]:
    """Best wall time of `rounds` calls of each case, in µs per item. The
    cases take turns within each round, so that a busy machine slows them
    alike."""
    for fn in cases.values():
        fn()  # warm caches (IP normalisation, actions) as a running server has them
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: round(min(t) / per * 1e6, 3) for name, t in times.items()}


def measure(objs: list[dict[str, Any]], rounds: int) -> dict[str, Any]:
    n = len(objs)
    body = json.dumps({"events": objs}).encode()
    lines = [json.dumps(o).encode() for o in objs]
    typed = decode._PLAIN.batch
    reference = _validate_batch(objs)
    fast = decode.decode_body_fast(body)
    members = 1 + sum(decode._finish(e, False, True)[1] for e in typed.decode(body).events)
    assert len(fast) == n and all(a == b for a, b in zip(fast, reference, strict=True))

    t = run_all(
        {
            "msgspec_decode_untyped": lambda: msgspec.json.decode(body),
            "msgspec_decode_typed": lambda: typed.decode(body),
            "json_loads": lambda: json.loads(body),
            "bytes_reference": lambda: _validate_batch(parse_json(body)["events"]),
            "bytes_new": lambda: decode_events(body, 1000),
            "dicts_reference": lambda: _validate_batch(objs),
            "dicts_new": lambda: validate_batch(objs),
            "lines_reference": lambda: [validate_event(json.loads(x)) for x in lines],
            "lines_new": lambda: [decode.decode_line(x) for x in lines],
            "payload": lambda: [encode_payload(payload_of(e)) for e in reference],
            "duplicates": lambda: decode._RawText(body).no_duplicates(members),
        },
        n,
        rounds,
    )
    out: dict[str, Any] = {
        "events": n,
        "body_bytes": len(body),
        "baseline": {
            "msgspec_decode_untyped": t["msgspec_decode_untyped"],
            "msgspec_decode_typed": t["msgspec_decode_typed"],
            "json_loads": t["json_loads"],
        },
        "bytes": {"reference": t["bytes_reference"], "decode_events": t["bytes_new"]},
        "dicts": {"reference": t["dicts_reference"], "validate_batch": t["dicts_new"]},
        "lines": {"reference": t["lines_reference"], "decode_line": t["lines_new"]},
        "parts": {
            "reference_payload_encoding": t["payload"],
            "duplicate_key_check": t["duplicates"],
        },
    }
    for group in ("bytes", "dicts", "lines"):
        ref, new = out[group].values()
        out[group]["speedup"] = round(ref / new, 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--events", type=int, default=1000, help="events per body (at most 1000)")
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    objs = list(workload(args.events))
    stamped = [
        {**o, "occurred_at": f"2026-11-26T10:{i // 60 % 60:02d}:{i % 60:02d}.{i:06d}Z"}
        for i, o in enumerate(workload(args.events, seed=11))
    ]
    doc = {
        "suite": "decode",
        "machine": {"python": platform.python_version(), "msgspec": msgspec.__version__},
        "unit": "microseconds per event (best of rounds)",
        "workload": measure(objs, args.rounds),
        "with_occurred_at": measure(stamped, args.rounds),
    }
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
