"""Native JSON: the entry exactly as the API shows it (with `seq` and
`leaf_hash`, so a receiver can ask for an inclusion proof), wrapped with
its type and tenant."""

from __future__ import annotations

import json
from typing import Any

from kimonaudit.core.timefmt import format_ts
from kimonaudit.sinks.events import StreamEvent

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def to_json(ev: StreamEvent) -> dict[str, Any]:
    """``{"type", "timestamp", "tenant_id", "seq", "data"}``."""
    return {
        "type": ev.type,
        "timestamp": format_ts(ev.time_us),
        "tenant_id": ev.tenant_id,
        "seq": ev.seq,
        "data": dict(ev.data),
    }


def dumps(obj: object) -> str:
    """Compact JSON text, UTF-8 kept as is."""
    return _dumps(obj)
