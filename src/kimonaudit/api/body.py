"""Request bodies: size limit, media type, JSON parsing and event decoding.

The size limit is enforced on the bytes actually received, not on what
Content-Length claims: `BodyLimit` wraps the ASGI receive channel, so every
route (including routers added later that let FastAPI read the body) is
covered. A declared Content-Length over the limit is refused before
anything is read.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kimonaudit.api.errors import ApiError, error_response
from kimonaudit.core import decode
from kimonaudit.core.events import Event, validate_batch, validate_event
from kimonaudit.errors import InvalidEvent

_TENANT_KEYS = ("tenant", "tenant_id")


def too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body is larger than {limit} bytes ({limit // 1024} KiB)")


class BodyLimit:
    """ASGI middleware: at most `limit` bytes of request body."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0:
                    response = error_response(400, "bad_request", "malformed Content-Length")
                    await response(scope, receive, send)
                    return
                if declared > self.limit:
                    exc = too_large(self.limit)
                    response = error_response(413, exc.code, exc.message)
                    await response(scope, receive, send)
                    return
        received = 0
        limit = self.limit

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large(limit)
            return message

        await self.app(scope, limited, send)


def require_json(request: Request) -> None:
    """415 unless the body is declared as JSON (application/json or +json)."""
    ctype = request.headers.get("content-type")
    if ctype is None:
        raise ApiError(415, "missing Content-Type; send the body as application/json")
    media, _, params = ctype.partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (
        media.startswith("application/") and media.endswith("+json")
    ):
        raise ApiError(415, f"unsupported Content-Type {media!r}; send application/json")
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise ApiError(415, "JSON bodies must be UTF-8")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes, *, unique_keys: bool = False) -> Any:
    """The JSON value of a body; 400 naming the problem for anything that
    is not strict UTF-8 JSON (NaN, Infinity and lone surrogates included).
    With `unique_keys`, a key repeated in one object is a 422 naming it
    (I-JSON, RFC 7493), where JSON parsers otherwise keep the last value."""
    if not raw:
        raise ApiError(400, "empty body; expected a JSON document")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"body is not UTF-8 (byte {exc.start})") from None
    if text.startswith("\ufeff"):
        raise ApiError(400, "body starts with a byte order mark; send plain UTF-8 JSON")
    hook = decode.pairs_hook if unique_keys else None
    try:
        data = json.loads(text, parse_constant=_no_constant, object_pairs_hook=hook)
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise ApiError(400, "malformed JSON: nested too deeply") from None
    except ValueError as exc:  # NaN/Infinity, or an integer with too many digits
        raise ApiError(400, f"malformed JSON: {_value_error(exc)}") from None
    if unique_keys:
        decode.raise_duplicate(data)
    return data


def decode_events(raw: bytes, max_events: int) -> list[Event]:
    """The events of a POST /v1/events body, decoded from the raw bytes.

    msgspec's C decoder takes every valid body; anything it does not accept
    goes through `parse_json` and `events_of`, which name the problem
    exactly as they always have. Duplicate keys are a 422 either way."""
    try:
        events = decode.decode_body_fast(raw)
    except decode.Slow:
        return events_of(parse_json(raw, unique_keys=True), max_events)
    if len(events) > max_events:
        raise ApiError(
            413, f"{len(events)} events in one request; at most {max_events} are allowed"
        )
    return events


def events_of(data: Any, max_events: int) -> list[Event]:
    """The events of a parsed request body: one event object or {"events": [...]}."""
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


async def read_body(request: Request) -> bytes:
    """The raw body of a JSON request (415 if it is not declared JSON)."""
    require_json(request)
    return await request.body()


def _value_error(exc: ValueError) -> str:
    """The parser's complaint, without Python's advice on how to lift its
    integer limit (sys.set_int_max_str_digits), which is no business of a
    client's."""
    if "integer string conversion" in str(exc):
        return f"an integer has more than {sys.get_int_max_str_digits()} digits"
    return str(exc)
