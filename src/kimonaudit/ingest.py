"""Bulk ingest of NDJSON lines through the facade."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from kimonaudit.core.events import Event, validate_event
from kimonaudit.errors import InvalidEvent, InvalidInput
from kimonaudit.service import AuditLog

MAX_REPORTED = 20


def parse_lines(lines: Sequence[str]) -> list[Event]:
    """Validate every non-blank line; raise one InvalidInput listing up to
    MAX_REPORTED bad lines with their numbers."""
    events: list[Event] = []
    problems: list[str] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {n}: not JSON ({exc.msg} at column {exc.colno})")
        else:
            try:
                events.append(validate_event(obj))
            except InvalidEvent as exc:
                problems.append(f"line {n}: {exc.message}")
        if len(problems) >= MAX_REPORTED:
            problems.append("(stopped after 20 errors)")
            break
    if problems:
        raise InvalidInput("nothing was appended:\n  " + "\n  ".join(problems))
    return events


def ingest_lines(
    log: AuditLog,
    tenant_id: str,
    lines: Sequence[str],
    batch_size: int = 1000,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    events = parse_lines(lines)
    appended = 0
    for i in range(0, len(events), batch_size):
        batch = events[i : i + batch_size]
        before = log.store.tree_state(tenant_id).size
        receipts = log.append_validated(tenant_id, batch)
        # Retried ids get their original receipt, below `before`.
        appended += len({r.seq for r in receipts if r.seq >= before})
        if progress is not None:
            progress(i + len(batch), len(events))
    return {
        "tenant_id": tenant_id,
        "appended": appended,
        "duplicates": len(events) - appended,
        "tree_size": log.store.tree_state(tenant_id).size,
    }
