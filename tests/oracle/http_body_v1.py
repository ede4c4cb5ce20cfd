# FROZEN ORACLE -- do not edit, do not import from production code.
#
# parse_json (api/body.py) and events_of (api/routes_events.py) as they stood
# before POST /v1/events decoded its body with msgspec (commit 0ecb409): the
# reference tests/core/test_decode_differential.py compares the new body
# decoder against. They validate with the frozen events_v1 copy.
from __future__ import annotations

import json
from typing import Any

from kimonaudit.api.errors import ApiError
from kimonaudit.errors import InvalidEvent
from tests.oracle.events_v1 import Event, validate_batch, validate_event

_TENANT_KEYS = ("tenant", "tenant_id")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> Any:
    """The JSON value of a body; 400 naming the problem for anything that
    is not strict UTF-8 JSON (NaN, Infinity and lone surrogates included)."""
    if not raw:
        raise ApiError(400, "empty body; expected a JSON document")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"body is not UTF-8 (byte {exc.start})") from None
    if text.startswith("\ufeff"):
        raise ApiError(400, "body starts with a byte order mark; send plain UTF-8 JSON")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply") from None
    except ValueError as exc:  # NaN/Infinity, or an integer with too many digits
        raise ApiError(400, f"malformed JSON: {exc}") from None


def events_of(data: Any, max_events: int) -> list[Event]:
    """The events of a request body: one event object or {"events": [...]}."""
    if not isinstance(data, dict):
        raise InvalidEvent('expected an event object or {"events": [...]}', field="")
    if "events" not in data:
        return [validate_event(data)]
    for key in sorted(data):
        if key in _TENANT_KEYS:
            raise InvalidEvent(
                "must not be sent: the tenant comes from the API key", field=str(key)
            )
        if key != "events":
            raise InvalidEvent(f'unknown key {key!r}; a batch is {{"events": [...]}}', field=key)
    items = data["events"]
    if not isinstance(items, list):
        raise InvalidEvent("expected an array of events", field="events")
    if not items:
        raise InvalidEvent("must hold at least one event", field="events")
    if len(items) > max_events:
        raise ApiError(413, f"{len(items)} events in one request; at most {max_events} are allowed")
    return validate_batch(items)
