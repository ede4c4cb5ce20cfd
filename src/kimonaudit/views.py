"""JSON renderings of stored entries, shared by the CLI, the API, exports
and the console, so every surface shows an entry the same way."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from kimonaudit.core.catalogue import Severity
from kimonaudit.core.ipaddr import bytes_to_ip
from kimonaudit.core.records import ActorRecord, EntryRow
from kimonaudit.core.timefmt import format_ts
from kimonaudit.results import b64

_SEVERITIES = tuple(Severity)
_encode = msgspec.json.Encoder().encode
_receipts_body_in_c: Callable[[list[Any]], bytes] | None
try:
    from kimonaudit._native import receipts_body as _receipts_body_in_c
except ImportError:
    _receipts_body_in_c = None


def entry_json(
    row: EntryRow,
    actor: ActorRecord | None = None,
    redaction: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """The public shape of one entry. `actor` (from the directory) adds the
    display fields; without it only the keyed hash and type are shown.
    `redaction` is the (reason, redacted_at) kept for a redacted entry
    (`AuditLog.redaction`): every surface that shows an entry says it was
    redacted and why, as the console's entry page does."""
    payload: dict[str, Any] = json.loads(row.payload) if row.payload is not None else {}
    actor_json: dict[str, Any] | None = None
    if row.actor_hash is not None:
        actor_json = {"hash": row.actor_hash, "type": row.actor_type}
        if actor is not None:
            if actor.erased_at is not None:
                actor_json["erased"] = True
            else:
                actor_json.update(id=actor.actor_id, name=actor.name, email=actor.email)
    return {
        "id": row.event_id,
        "seq": row.seq,
        "recorded_at": format_ts(row.recorded_at),
        "occurred_at": payload.get("occurred_at"),
        "action": row.action,
        "category": row.category,
        "severity": _SEVERITIES[row.severity].label,
        "security": bool(row.security),
        "actor": actor_json,
        "target": (
            {"type": row.target_type, "id": row.target_id} if row.target_type is not None else None
        ),
        "outcome": row.outcome,
        "ip": bytes_to_ip(row.ip) if row.ip is not None else None,
        "context": payload.get("context") or {},
        "changes": payload.get("changes") or [],
        "metadata": payload.get("metadata") or {},
        "redacted": row.payload is None,
        "redaction": redaction_json(row, redaction),
        "leaf_hash": b64(row.leaf_hash),
    }


def redaction_json(row: EntryRow, redaction: tuple[str, int] | None) -> dict[str, Any] | None:
    """None for an entry that is not redacted; else its reason and when, each
    null if not known (a redaction made before reasons were kept)."""
    if row.payload is not None:
        return None
    if redaction is None:
        return {"reason": None, "redacted_at": None}
    reason, at = redaction
    return {"reason": reason, "redacted_at": format_ts(at)}


def receipt_json(r: Any, recorded_at: str) -> dict[str, Any]:
    """A receipt; `recorded_at` is its time as text (see `receipts_json`)."""
    return {"id": r.id, "seq": r.seq, "recorded_at": recorded_at, "leaf_hash": b64(r.leaf_hash)}


def receipts_json(receipts: Iterable[Any]) -> list[dict[str, Any]]:
    """receipt_json of each; a batch's receipts share one recorded_at, whose
    text is made once (it was a twentieth of a batched request's time)."""
    texts: dict[int, str] = {}
    out = []
    for r in receipts:
        at = texts.get(r.recorded_at)
        if at is None:
            at = texts[r.recorded_at] = format_ts(r.recorded_at)
        out.append(receipt_json(r, at))
    return out


def receipts_body(receipts: list[Any]) -> bytes:
    """The 201 body of POST /v1/events, ``{"receipts": receipts_json(...)}``
    as compact UTF-8 JSON (the bytes JSONResponse sends), written in C where
    the extension is built: a dict per receipt was a microsecond per event of
    a batched request."""
    if _receipts_body_in_c is not None:
        try:
            return _receipts_body_in_c(receipts)
        except ValueError:
            pass  # an id that is not UTF-8, say: msgspec's verdict, as before
    return _encode({"receipts": receipts_json(receipts)})
