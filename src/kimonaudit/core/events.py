"""Validation of ingested events: outside input in, a frozen `Event` out.

Every rejection is an InvalidEvent whose `field` is the dotted path of the
offending value (``events[3].actor.id``) and whose message says what is
wrong and what is expected. docs/events.md describes the accepted shape.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeAlias, cast

from kimonaudit.core.catalogue import ActionInfo, Severity, classify
from kimonaudit.core.leaf import encode_payload, payload_of
from kimonaudit.core.timefmt import format_ts, parse_ts
from kimonaudit.errors import InvalidEvent, InvalidInput

#: How an Event holds its context and metadata: read-only views of dicts
#: that only the view holds. The extension's view is left out of the cycle
#: collector's sight where the dict holds no container (a mappingproxy is
#: always tracked, which made appends trigger full collections of the whole
#: process: docs/scaling.md); without the extension, mappingproxy.
read_only: Callable[[dict[str, Any]], Mapping[str, Any]]
try:
    from kimonaudit._native import ReadOnlyMap
except ImportError:
    read_only = MappingProxyType
else:
    Mapping.register(ReadOnlyMap)
    read_only = ReadOnlyMap

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None

MAX_TEXT_LENGTH = 200  # ids, names, emails, target type/id, change fields
MAX_CHANGES = 200
MAX_DEPTH = 16  # containers nested inside one JSON value
MAX_BATCH_EVENTS = 1000
MAX_SAFE_INTEGER = 2**53 - 1  # I-JSON (RFC 7493): larger ints lose precision
OUTCOMES = ("success", "failure", "denied", "error", "unknown")
DEFAULT_ACTOR_TYPE = "user"

EVENT_KEYS = frozenset(
    {
        "id",
        "action",
        "actor",
        "target",
        "context",
        "changes",
        "outcome",
        "occurred_at",
        "metadata",
        "severity",
    }
)
_ACTOR_KEYS = frozenset({"id", "type", "name", "email"})
_TARGET_KEYS = frozenset({"type", "id"})
_CHANGE_KEYS = frozenset({"field", "from", "to"})
_TENANT_KEYS = ("tenant", "tenant_id")

# C0, DEL, C1, and unpaired surrogates (which UTF-8 cannot encode).
_BAD_CHAR = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_ACTOR_TYPE = re.compile(r"[a-z][a-z0-9_]{0,39}")
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Actor:
    id: str
    type: str
    name: str | None
    email: str | None


@dataclass(frozen=True)
class Target:
    type: str
    id: str


@dataclass(frozen=True)
class Change:
    """One changed field; input keys are "field", "from" and "to"."""

    field: str
    before: JSON
    after: JSON


@dataclass(frozen=True)
class Event:
    """A validated event. Treat nested values as read-only: the canonical
    payload is computed once, at validation."""

    id: str | None
    action: str
    info: ActionInfo
    severity: Severity
    actor: Actor | None
    target: Target | None
    context: Mapping[str, JSON]
    changes: tuple[Change, ...]
    outcome: str
    occurred_at: int | None  # µs since the epoch, UTC; the client's claim
    metadata: Mapping[str, JSON]
    # Canonical payload bytes set by validate_event. init=False so that
    # dataclasses.replace() drops it instead of carrying a stale encoding.
    _payload: bytes | None = field(default=None, init=False, repr=False, compare=False)


def validate_event(obj: object, field_prefix: str = "") -> Event:
    """Check one input event and return it as an `Event`.

    `field_prefix` (e.g. "events[3].") is put before every field path in
    errors."""
    p = field_prefix
    if not isinstance(obj, dict):
        raise InvalidEvent(f"expected an event object, got {_kind(obj)}", field=p.rstrip("."))
    if not obj.keys() <= EVENT_KEYS:
        _unknown_keys(obj, EVENT_KEYS, p)

    action = obj.get("action")
    if action is None:
        raise InvalidEvent('is required, e.g. "ticket.viewed"', field=f"{p}action")
    if not isinstance(action, str):
        raise InvalidEvent(
            f'expected a string such as "ticket.viewed", got {_kind(action)}',
            field=f"{p}action",
        )
    try:
        info = classify(action)
    except InvalidEvent as e:
        raise InvalidEvent(e.reason, field=f"{p}action") from None

    event_id = obj.get("id")
    if event_id is not None:
        event_id = _text(event_id, f"{p}id", "a client id such as a UUID")
        check_reachable_id(event_id, f"{p}id")

    value = obj.get("actor")
    actor = None if value is None else _actor(value, f"{p}actor")
    value = obj.get("target")
    target = None if value is None else _target(value, f"{p}target")
    value = obj.get("context")
    context = {} if value is None else _context(value, f"{p}context")
    value = obj.get("changes")
    changes = () if value is None else _changes(value, f"{p}changes")

    outcome = obj.get("outcome")
    if outcome is None:
        outcome = "success"
    elif not isinstance(outcome, str) or outcome not in OUTCOMES:
        raise InvalidEvent(
            f"{_show(outcome)} is not an outcome; expected one of {', '.join(OUTCOMES)}",
            field=f"{p}outcome",
        )

    occurred_at = obj.get("occurred_at")
    if occurred_at is not None:
        try:
            occurred_at = parse_ts(occurred_at, field=f"{p}occurred_at")
        except InvalidInput as e:
            raise InvalidEvent(e.reason, field=e.field) from None

    value = obj.get("metadata")
    metadata = {} if value is None else _object(value, f"{p}metadata")

    severity = info.severity
    value = obj.get("severity")
    if value is not None:
        severity = _severity(value, info, f"{p}severity")

    event = Event(
        id=event_id,
        action=action,
        info=info,
        severity=severity,
        actor=actor,
        target=target,
        context=read_only(context),
        changes=changes,
        outcome=outcome,
        occurred_at=occurred_at,
        metadata=read_only(metadata),
    )
    try:
        data = encode_payload(payload_of(event))
    except InvalidInput as e:
        raise InvalidEvent(e.reason, field=p.rstrip(".")) from None
    object.__setattr__(event, "_payload", data)
    return event


def validate_batch(objs: object) -> list[Event]:
    """Check a list of input events (at most MAX_BATCH_EVENTS); errors name
    "events[i]...". Client ids must be unique within the batch.

    Valid events take msgspec's C path (kimonaudit.core.decode); anything
    it does not accept is judged here, by the reference rules."""
    if not isinstance(objs, list | tuple):
        raise InvalidEvent(f"expected an array of events, got {_kind(objs)}", field="events")
    if len(objs) <= MAX_BATCH_EVENTS:
        from kimonaudit.core import decode  # imports this module

        try:
            return decode.convert_batch(objs)
        except decode.Slow:
            pass  # the reference below names the problem
    return _validate_batch(objs)


def _validate_batch(objs: list[object] | tuple[object, ...]) -> list[Event]:
    """The reference batch validator: exact messages, no shortcuts."""
    if len(objs) > MAX_BATCH_EVENTS:
        raise InvalidEvent(
            f"has {len(objs)} events; at most {MAX_BATCH_EVENTS} are allowed per batch",
            field="events",
        )
    events = [validate_event(obj, f"events[{i}].") for i, obj in enumerate(objs)]
    seen: dict[str, int] = {}
    for i, event in enumerate(events):
        if event.id is None:
            continue
        first = seen.setdefault(event.id, i)
        if first != i:
            raise InvalidEvent(
                f"duplicate id {_show(event.id)}: events[{first}] and events[{i}] share it; "
                f"ids must be unique within a batch",
                field=f"events[{i}].id",
            )
    return events


def event_to_json(event: Event) -> dict[str, JSON]:
    """The input shape of `event`: validate_event(event_to_json(e)) == e."""
    out: dict[str, JSON] = {"action": event.action}
    if event.id is not None:
        out["id"] = event.id
    if event.actor is not None:
        a = event.actor
        actor: dict[str, JSON] = {"id": a.id, "type": a.type}
        if a.name is not None:
            actor["name"] = a.name
        if a.email is not None:
            actor["email"] = a.email
        out["actor"] = actor
    if event.target is not None:
        out["target"] = {"type": event.target.type, "id": event.target.id}
    if event.context:
        out["context"] = dict(event.context)
    if event.changes:
        out["changes"] = [
            {"field": c.field, "from": c.before, "to": c.after} for c in event.changes
        ]
    out["outcome"] = event.outcome
    if event.occurred_at is not None:
        out["occurred_at"] = format_ts(event.occurred_at)
    if event.metadata:
        out["metadata"] = dict(event.metadata)
    if event.severity != event.info.severity:
        out["severity"] = event.severity.label
    return out


# ---- parts -----------------------------------------------------------------


def _actor(value: object, where: str) -> Actor:
    if not isinstance(value, dict):
        raise InvalidEvent(
            f'expected an object such as {{"id": "agent_42", "type": "agent"}}, got {_kind(value)}',
            field=where,
        )
    if not value.keys() <= _ACTOR_KEYS:
        _unknown_keys(value, _ACTOR_KEYS, f"{where}.")
    actor_id = value.get("id")
    if actor_id is None:
        raise InvalidEvent(
            "is required: the actor's stable id in your system (it is stored only as a keyed hash)",
            field=f"{where}.id",
        )
    actor_id = _text(actor_id, f"{where}.id", "the actor's id")
    actor_type = value.get("type")
    if actor_type is None:
        actor_type = DEFAULT_ACTOR_TYPE
    elif not isinstance(actor_type, str) or _ACTOR_TYPE.fullmatch(actor_type) is None:
        raise InvalidEvent(
            f"{_show(actor_type)} is not an actor type; expected a short lower-case "
            f'identifier (a-z, 0-9, "_", at most 40 characters) such as "user", "agent", '
            f'"api_key" or "system"',
            field=f"{where}.type",
        )
    return Actor(
        id=actor_id,
        type=actor_type,
        name=_optional_text(value.get("name"), f"{where}.name", "a display name"),
        email=_optional_text(value.get("email"), f"{where}.email", "an email address"),
    )


def _target(value: object, where: str) -> Target:
    if not isinstance(value, dict):
        raise InvalidEvent(
            f'expected an object such as {{"type": "ticket", "id": "10482"}}, got {_kind(value)}',
            field=where,
        )
    if not value.keys() <= _TARGET_KEYS:
        _unknown_keys(value, _TARGET_KEYS, f"{where}.")
    parts = []
    for key, what in (("type", 'the kind of object, e.g. "ticket"'), ("id", "the object's id")):
        item = value.get(key)
        if item is None:
            raise InvalidEvent(f"is required: {what}", field=f"{where}.{key}")
        parts.append(_text(item, f"{where}.{key}", what))
    return Target(type=parts[0], id=parts[1])


def _context(value: object, where: str) -> dict[str, JSON]:
    context = _object(value, where)
    ip = context.get("ip")
    if ip is not None:
        if not isinstance(ip, str):
            raise InvalidEvent(
                f'expected an IP address string such as "203.0.113.9", got {_kind(ip)}',
                field=f"{where}.ip",
            )
        try:
            context["ip"] = _normal_ip(ip)
        except ValueError:
            raise InvalidEvent(
                f'{_show(ip)} is not an IP address; expected IPv4 ("203.0.113.9") '
                f'or IPv6 ("2001:db8::1")',
                field=f"{where}.ip",
            ) from None
    for key in ("user_agent", "request_id"):
        item = context.get(key)
        if item is not None and not isinstance(item, str):
            raise InvalidEvent(f"expected a string, got {_kind(item)}", field=f"{where}.{key}")
    return context


def _changes(value: object, where: str) -> tuple[Change, ...]:
    if not isinstance(value, list | tuple):
        raise InvalidEvent(
            f'expected an array such as [{{"field": "status", "from": "open", "to": "pending"}}], '
            f"got {_kind(value)}",
            field=where,
        )
    if len(value) > MAX_CHANGES:
        raise InvalidEvent(
            f"has {len(value)} changes; at most {MAX_CHANGES} are allowed per event",
            field=where,
        )
    changes = []
    for i, item in enumerate(value):
        here = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise InvalidEvent(
                f'expected an object {{"field": ..., "from": ..., "to": ...}}, got {_kind(item)}',
                field=here,
            )
        if not item.keys() <= _CHANGE_KEYS:
            _unknown_keys(item, _CHANGE_KEYS, f"{here}.")
        name = item.get("field")
        if name is None:
            raise InvalidEvent(
                'is required: the name of the changed field, e.g. "status"', field=f"{here}.field"
            )
        changes.append(
            Change(
                field=_text(name, f"{here}.field", "the name of the changed field"),
                before=_json_at(item.get("from"), f"{here}.from", 0),
                after=_json_at(item.get("to"), f"{here}.to", 0),
            )
        )
    return tuple(changes)


@functools.lru_cache(maxsize=4096)
def _normal_ip(text: str) -> str:
    # Cached: ipaddress takes 5-15 µs per parse and a tenant's traffic comes
    # from comparatively few addresses.
    return str(ipaddress.ip_address(text))


def _severity(value: object, info: ActionInfo, where: str) -> Severity:
    labels = ", ".join(s.label for s in Severity)
    if not isinstance(value, str):
        raise InvalidEvent(f"expected one of {labels}, got {_kind(value)}", field=where)
    try:
        severity = Severity.parse(value)
    except ValueError:
        raise InvalidEvent(
            f"{_show(value)} is not a severity; expected one of {labels}", field=where
        ) from None
    if severity < info.severity:
        raise InvalidEvent(
            f"{severity.label!r} is below the default {info.severity.label!r} of "
            f"{info.action}; an event may raise its severity but never lower it",
            field=where,
        )
    return severity


# -- event ids that GET /v1/events/{id} can reach (harden, issue 10 item 7) --------
# Names under /v1/events/ that are routes of their own, and the dot segments
# every HTTP client collapses: an event with such an id could never be
# fetched or proven by id.
RESERVED_IDS = frozenset({"histogram", ".", ".."})


def check_reachable_id(event_id: str, where: str) -> None:
    """Refuse an id that `GET /v1/events/{id}` could never reach: one with
    a "/" (a path separator even when percent-encoded) or a reserved name."""
    if "/" in event_id:
        raise InvalidEvent(
            'must not contain "/": the event could never be fetched by id at GET /v1/events/{id}',
            field=where,
        )
    if event_id in RESERVED_IDS:
        raise InvalidEvent(
            f"{event_id!r} is reserved (GET /v1/events/{event_id} is not an event); "
            "choose another id",
            field=where,
        )


def _text(value: object, where: str, what: str) -> str:
    """A short identifier-like string: 1..200 characters, no control characters."""
    if not isinstance(value, str):
        raise InvalidEvent(f"expected a string ({what}), got {_kind(value)}", field=where)
    if not value:
        raise InvalidEvent(f"must not be empty; expected {what}", field=where)
    if len(value) > MAX_TEXT_LENGTH:
        raise InvalidEvent(
            f"is {len(value)} characters long; at most {MAX_TEXT_LENGTH} are allowed",
            field=where,
        )
    if value.isascii() and value.isprintable():
        return value  # the common case, checked faster than the regex below
    bad = _BAD_CHAR.search(value)
    if bad is not None:
        raise InvalidEvent(
            f"contains U+{ord(bad.group()):04X} at position {bad.start()}; control "
            f"characters and unpaired surrogates are not allowed",
            field=where,
        )
    return value


def _optional_text(value: object, where: str, what: str) -> str | None:
    # An empty name or email is treated as absent: clients often send "".
    if value is None or value == "":
        return None
    return _text(value, where, what)


def _object(value: object, where: str) -> dict[str, JSON]:
    if not isinstance(value, dict):
        raise InvalidEvent(f"expected an object, got {_kind(value)}", field=where)
    result = _json_at(value, where, 0)
    assert isinstance(result, dict)
    return result


# ---- JSON values -----------------------------------------------------------


class _BadValue(Exception):
    """Raised deep inside a value; the path is collected while unwinding so
    the common (valid) case builds no path strings."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.path: list[str | int] = []


def _json_at(value: object, where: str, depth: int) -> JSON:
    try:
        return _json(value, depth)
    except _BadValue as e:
        raise InvalidEvent(e.message, field=where + _render_path(e.path)) from None


def _json(value: object, depth: int) -> JSON:
    """A copy of `value` checked to be RFC 8785-encodable JSON."""
    kind = type(value)
    if kind is str:
        assert isinstance(value, str)
        if not value.isascii() and _SURROGATE.search(value) is not None:
            raise _BadValue("contains an unpaired surrogate, which UTF-8 cannot encode")
        return value
    if value is None or kind is bool:
        return cast(JSON, value)
    if kind is int:
        assert isinstance(value, int)
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value
        raise _BadValue(
            f"integer {value} is outside ±(2**53-1), the range JSON numbers carry "
            f"exactly; send it as a string"
        )
    if kind is float:
        assert isinstance(value, float)
        if math.isfinite(value):
            return value
        raise _BadValue(f"{value} is not a JSON number; NaN and infinities are not allowed")
    if kind is dict or kind is list or kind is tuple:
        if depth >= MAX_DEPTH:
            raise _BadValue(f"nests deeper than {MAX_DEPTH} levels of objects and arrays")
        if isinstance(value, dict):
            out: dict[str, JSON] = {}
            for key, item in value.items():
                if type(key) is not str:
                    raise _BadValue(f"object keys must be strings, got {type(key).__name__}")
                if not key.isascii() and _SURROGATE.search(key) is not None:
                    raise _BadValue(f"key {_show(key)} contains an unpaired surrogate")
                try:
                    out[key] = _json(item, depth + 1)
                except _BadValue as e:
                    e.path.append(key)
                    raise
            return out
        assert isinstance(value, list | tuple)
        items: list[JSON] = []
        for i, item in enumerate(value):
            try:
                items.append(_json(item, depth + 1))
            except _BadValue as e:
                e.path.append(i)
                raise
        return items
    # Subclasses (an IntEnum, a str subclass) are stored as their plain value.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return _json(int(value), depth)
    if isinstance(value, float):
        return _json(float(value), depth)
    if isinstance(value, str):
        return _json(str(value), depth)
    if isinstance(value, dict):
        return _json(dict(value), depth)
    if isinstance(value, list | tuple):
        return _json(list(value), depth)
    raise _BadValue(f"expected a JSON value, got {_kind(value)}")


def _render_path(path: list[str | int]) -> str:
    out = []
    for part in reversed(path):
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _PLAIN_KEY.fullmatch(part):
            out.append(f".{part}")
        else:
            out.append(f"[{json.dumps(part)}]")
    return "".join(out)


# ---- messages --------------------------------------------------------------


def _unknown_keys(obj: dict[Any, Any], allowed: frozenset[str], prefix: str) -> None:
    unknown = sorted((k for k in obj if k not in allowed), key=str)
    for key in _TENANT_KEYS if allowed is EVENT_KEYS else ():
        if key in unknown:
            raise InvalidEvent(
                "must not be sent: the tenant comes from the API key (or the tenant "
                "argument of append), never from the event",
                field=f"{prefix}{key}",
            )
    names = ", ".join(_show(k) for k in unknown)
    raise InvalidEvent(
        f"unknown key{'s' if len(unknown) > 1 else ''} {names}; "
        f"expected only {', '.join(sorted(allowed))}",
        field=f"{prefix}{unknown[0]}",
    )


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
