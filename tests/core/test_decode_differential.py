"""The msgspec fast path against the frozen reference validator.

tests/oracle/ holds the validator (and the HTTP body parser) as they were
before the fast path: for every input, generated valid or broken, from
Python dicts or from raw bytes, the new code must return the same events
with the same canonical payload bytes, or raise the same error with the same
message and field path. The one intended difference: a JSON text that repeats
a key is refused (DuplicateKey) where the reference kept the last value.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from kimonaudit.api.body import decode_events
from kimonaudit.api.errors import ApiError
from kimonaudit.core import decode
from kimonaudit.core.catalogue import CATALOGUE
from kimonaudit.core.events import validate_batch, validate_event
from kimonaudit.core.leaf import encode_payload, payload_bytes, payload_of
from kimonaudit.core.timefmt import format_ts, parse_ts
from kimonaudit.errors import InvalidEvent, InvalidInput
from tests.core.test_events import EVENTS, nested
from tests.oracle import events_v1 as oracle
from tests.oracle import http_body_v1 as oracle_http

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- comparing outcomes ---------------------------------------------------------


def snapshot(event: Any) -> tuple[Any, ...]:
    """Everything an Event carries, as plain values, payload bytes included.

    The payload bytes also tell apart values that compare equal in Python
    but encode differently (True and 1, 1 and 1.0)."""
    actor = event.actor
    target = event.target
    payload = event._payload or encode_payload(payload_of(event))
    return (
        event.id,
        event.action,
        event.info,
        event.severity,
        None if actor is None else (actor.id, actor.type, actor.name, actor.email),
        None if target is None else (target.type, target.id),
        dict(event.context),
        tuple((c.field, c.before, c.after) for c in event.changes),
        event.outcome,
        event.occurred_at,
        dict(event.metadata),
        payload,
        _view(event.context),
        _view(event.metadata),
    )


def _view(mapping: Any) -> str:
    """The kind of mapping an Event holds: a read-only view (mappingproxy in
    the reference, the extension's ReadOnlyMap where built) or anything
    else by name, so that a writable dict would show."""
    from types import MappingProxyType

    from kimonaudit.core.events import read_only

    if isinstance(mapping, (MappingProxyType, read_only)):  # type: ignore[arg-type]
        return "read-only view"
    return type(mapping).__name__


def outcome(call: Any, *args: Any) -> tuple[str, Any]:
    try:
        result = call(*args)
    except ApiError as exc:
        return "api", (exc.status_code, exc.detail)
    except InvalidEvent as exc:
        return "invalid", (exc.field, exc.reason)
    if isinstance(result, list):
        return "ok", [snapshot(e) for e in result]
    return "ok", snapshot(result)


# ---- generated input ---------------------------------------------------------------

NASTY: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**53 - 1,
    -(2**53) + 1,
    2**53,
    -(2**53),
    10**30,
    1.5,
    -0.0,
    1e308,
    5e-324,
    float("nan"),
    float("inf"),
    "",
    "x" * 200,
    "x" * 201,
    "a\x00b",
    "a\x7f",
    "a\x85",
    "tab\there",
    "\u2028",
    "\ud800",
    "\U0001f600",
    "\ue000",
    "é",
    [],
    {},
    [1, [2, [3]]],
    {"a": {"b": 1}},
    nested(15),
    nested(16),
    nested(17),
    "2026-11-26T10:00:00Z",
    "2026-11-26T10:00:00.123456789Z",
    "2026-11-26t10:00:00z",
    "2026-11-26T10:00:00+01:30",
    "2026-02-30T10:00:00Z",
    "2026-11-26T24:00:00Z",
    "2026-11-26T10:00:60Z",
    "0000-01-01T00:00:00Z",
    "2026-11-26T10:00:00.Z",
    "agent",
    "Agent",
    "a" * 41,
    "CRITICAL",
    "info",
    "low",
    "urgent",
    "success",
    "denied",
    "::1",
    "0::1",
    "203.0.113.9",
    "999.1.1.1",
    " 10.0.0.1",
    "ticket.viewed",
    "role.deleted",
    "Ticket.Viewed",
    "x." + "y" * 98,
    "x." + "y" * 99,
    ":starts-with-colon",
    'has"quote":',
    "{brace}",
    "a/b",
    "histogram",
    ".",
    "..",
]
KEYS = [
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
    "tenant",
    "tenant_id",
    "extra",
    "type",
    "name",
    "email",
    "field",
    "from",
    "to",
    "before",
    "ip",
    "user_agent",
    "request_id",
    "content-type",
    "é",
    "\U0001f600",
    "\ue000",
]
VALUES = st.sampled_from(NASTY) | st.integers() | st.floats() | st.text(max_size=8)


def _containers(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = []
    if isinstance(value, dict):
        found.append(path)
        for key, item in value.items():
            found += _containers(item, (*path, key))
    elif isinstance(value, list):
        found.append(path)
        for i, item in enumerate(value):
            found += _containers(item, (*path, i))
    return found


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[Any] = EVENTS) -> Any:
    """A generated valid event with a few random changes anywhere in it."""
    obj = copy.deepcopy(draw(base))
    for _ in range(draw(st.integers(0, 3))):
        spots = _containers(obj)
        path = draw(st.sampled_from(spots))
        holder = obj
        for step in path:
            holder = holder[step]
        if isinstance(holder, dict):
            action = draw(st.sampled_from(["set", "set", "delete"]))
            key = draw(st.sampled_from(KEYS) | st.sampled_from(sorted(holder) or ["x"]))
            if action == "delete":
                holder.pop(key, None)
            else:
                holder[key] = copy.deepcopy(draw(VALUES))
        elif holder:
            holder[draw(st.integers(0, len(holder) - 1))] = copy.deepcopy(draw(VALUES))
        else:
            holder.append(copy.deepcopy(draw(VALUES)))
    return obj


EVENT_INPUTS = EVENTS | mutated()


# ---- from Python dicts (AuditLog.append) -------------------------------------------------


@given(st.lists(EVENT_INPUTS, min_size=1, max_size=4))
@SETTINGS
@example([{"action": "ticket.viewed", "metadata": {"n": 1.5}}, {"action": "x"}])
@example([{"action": "ticket.viewed", "id": "a"}, {"action": "ticket.viewed", "id": "a"}])
@example([{"action": "ticket.viewed", "metadata": {"s": "\ud800"}}])
@example([{"action": "ticket.viewed", "context": {"\U0001f600": 1, "\ue000": 2}}])
def test_batches_of_dicts_match_the_reference(objs: list[Any]) -> None:
    """validate_batch (msgspec.convert first) agrees with the frozen reference."""
    expected = outcome(oracle.validate_batch, copy.deepcopy(objs))
    assert outcome(validate_batch, objs) == expected


class Text(str):
    pass


class Number(int):
    pass


def test_subclasses_and_tuples_match_the_reference() -> None:
    """str/int subclasses, tuples and dict subclasses: judged as the reference does."""
    import collections
    import enum

    class Mixed(str, enum.Enum):  # noqa: UP042 - the str-mixin kind on purpose
        A = "a-value"

    cases: list[Any] = [
        {"action": Text("ticket.viewed"), "id": Text("x")},
        {"action": "ticket.viewed", "metadata": {"k": Text("v"), "e": Mixed.A}},
        {"action": "ticket.viewed", "metadata": {Text("k"): 1}},
        {"action": "ticket.viewed", "metadata": {"n": Number(3), "t": (1, 2)}},
        {"action": "ticket.viewed", "changes": ({"field": "f", "to": (1,)},)},
        collections.OrderedDict(action="ticket.viewed", outcome=Text("denied")),
        {"action": "ticket.viewed", "actor": {"id": "a", "type": Text("agent")}},
        {"action": "ticket.viewed", "context": {"ip": Text("::1")}},
        {"action": "ticket.viewed", "severity": Mixed.A},
        {"action": "ticket.viewed", "occurred_at": Text("2026-11-26T10:00:00Z")},
        # A subclass as a key, which the C encoder writes as a plain string:
        # at the top, nested, inside a change, and beside a "{" in a value.
        {"action": "ticket.viewed", "context": {Text("k"): "v"}},
        {"action": "ticket.viewed", "metadata": {"a": {Text("k"): 1}}},
        {"action": "ticket.viewed", "metadata": {"a": [{Text("k"): 1}]}},
        {"action": "ticket.viewed", "changes": [{"field": "f", "from": {Text("k"): 1}}]},
        {"action": "ticket.viewed", "metadata": {"a": "{", Text("k"): 1}},
        # A subclass as a value inside a list, which the encoder refuses.
        {"action": "ticket.viewed", "metadata": {"a": [Text("v")]}},
    ]
    for obj in cases:
        expected = outcome(oracle.validate_batch, [copy.deepcopy(obj)])
        assert outcome(validate_batch, [obj]) == expected, obj
    # The same in a batch that also holds a float (the tier with floats).
    for obj in cases:
        batch = [{"action": "ticket.viewed", "metadata": {"n": 1.5}}, obj]
        expected = outcome(oracle.validate_batch, copy.deepcopy(batch))
        assert outcome(validate_batch, batch) == expected, obj


def test_validate_batch_copies_its_input() -> None:
    """The returned events share no mutable container with the caller's dicts."""
    obj = {"action": "ticket.viewed", "metadata": {"a": [1]}, "context": {"b": {"c": 1}}}
    (event,) = validate_batch([obj])
    obj["metadata"]["a"].append(2)  # type: ignore[index]
    obj["context"]["b"]["c"] = 2  # type: ignore[index]
    assert event.metadata["a"] == [1] and event.context["b"] == {"c": 1}


# ---- from raw bytes (HTTP bodies, NDJSON lines) ----------------------------------------

RAW_NUMBERS = [
    b"1E2",
    b"1e-400",
    b"-0",
    b"-0.0",
    b"1e999",
    b"123456789012345678901234567890",
    b"9007199254740991",
    b"9007199254740992",
    b"-9007199254740992",
    b"0.1",
    b"5e-324",
    b"1.7976931348623157e308",
    b"2e308",
    b"NaN",
    b"Infinity",
    b"01",
    b"1.",
    b'"\\ud83d\\ude00"',
    b'"\\ud800"',
    b'"\\udc00\\ud800"',
    b'"\\u0000"',
    b'"\\u2028"',
    b'"\\/"',
    b'"\\u0022:"',
    b'"\\u003a"',
    b'"\xf0\x9f\x98\x80"',
    b'"\xed\xa0\x80"',
    b'"\xc0\x80"',
    b'"\xff"',
    b'"\x01"',
    b'"a\tb"',
    b"[1,]",
    b"{}",
    b'{"a" : 1}',
    b'{"a":1,"a":2}',
]
LAYOUTS = [
    {"separators": (",", ":")},
    {},
    {"ensure_ascii": False, "separators": (",", ":")},
    {"indent": 1},
    {"separators": (" ,", " : ")},
]


@st.composite
def raw_bodies(draw: st.DrawFn, batch: bool) -> bytes:
    """JSON text of events in varied layouts, with raw number and string
    tokens and occasional byte damage or a repeated key."""
    objs = draw(st.lists(EVENT_INPUTS, min_size=1, max_size=3))
    for obj in objs:
        if isinstance(obj, dict) and draw(st.booleans()):
            obj.setdefault("metadata", {})
            if isinstance(obj["metadata"], dict):
                obj["metadata"]["raw"] = "__RAW__"
    layout = draw(st.sampled_from(LAYOUTS))
    try:
        body: Any = {"events": objs} if batch else objs[0]
        text = json.dumps(body, allow_nan=True, **layout)
    except (TypeError, ValueError):
        text = json.dumps({"events": []} if batch else {})
    raw = text.encode("utf-8", "surrogatepass")
    raw = raw.replace(b'"__RAW__"', draw(st.sampled_from(RAW_NUMBERS)))
    if draw(st.integers(0, 5)) == 0:  # repeat a key textually
        spots = [i for i in range(len(raw)) if raw[i : i + 2] == b'":']
        if spots:
            at = draw(st.sampled_from(spots))
            start = raw.rfind(b'"', 0, at) + 0
            key = raw[start : at + 1]
            raw = raw[: at + 2] + b'"dup",' + key + b":" + raw[at + 2 :]
    if draw(st.integers(0, 7)) == 0:  # damage a byte
        i = draw(st.integers(0, max(len(raw) - 1, 0)))
        raw = raw[:i] + draw(st.binary(min_size=0, max_size=2)) + raw[i + 1 :]
    return raw


def has_duplicate(raw: bytes) -> bool:
    try:
        data = json.loads(raw, object_pairs_hook=decode.pairs_hook)
    except (ValueError, RecursionError):
        return False
    try:
        decode.raise_duplicate(data)
    except decode.DuplicateKey:
        return True
    return False


@given(raw_bodies(batch=True) | raw_bodies(batch=False))
@SETTINGS
@example(b'{"action":"a.b","action":"c.d"}')
@example(b'{"events":[{"action":"ticket.viewed","metadata":{"t":":x","t":"y"}}]}')
@example(b'{"events":[{"action":"ticket.viewed"}],"events":[{"action":"x.y"}]}')
@example(b'{"action":"ticket.viewed","context":{"ip":"0::1","ip":"::1"}}')
@example(b'{"action" :"ticket.viewed","id" :"a","id":"b"}')
@example(b'{"action":"ticket.viewed","metadata":{"a":{"b":1,"b":2}}}')
@example(b'{"action":"ticket.viewed","changes":[{"field":"f","to":{"k":1,"k":2}}]}')
@example(b'{"action":"ticket.viewed","metadata":{"\\u0061":1,"a":2}}')
@example(b'{"action":"ticket.viewed","metadata":{"k":1.5,"k":2}}')
def test_http_bodies_match_the_reference(raw: bytes) -> None:
    """POST /v1/events decoding agrees with json.loads + the frozen validator,
    except that a repeated key is a 422 naming it."""
    new = outcome(decode_events, raw, 1000)
    expected = outcome(lambda: oracle_http.events_of(oracle_http.parse_json(raw), 1000))
    if expected[0] != "api" and has_duplicate(raw):  # malformed JSON is still a 400 first
        assert new[0] == "invalid" and new[1][1].startswith("duplicate key"), new
        return
    assert new == expected


@given(raw_bodies(batch=False))
@SETTINGS
def test_lines_match_the_reference(raw: bytes) -> None:
    """decode_line agrees with json.loads + the frozen validate_event on valid
    lines and on every validation error; repeated keys are refused."""
    assume(b"\n" not in raw)
    try:
        reference: Any = json.loads(raw.decode("utf-8"))  # as the CLI read lines before
    except (ValueError, RecursionError):
        with pytest.raises(InvalidInput):
            decode.decode_line(raw)
        return
    new = outcome(decode.decode_line, raw)
    if has_duplicate(raw):
        assert new[0] == "invalid" and new[1][1].startswith("duplicate key"), new
        return
    assert new == outcome(oracle.validate_event, reference)


@given(raw_bodies(batch=True) | raw_bodies(batch=False))
@SETTINGS
def test_fast_path_never_accepts_what_the_reference_refuses(raw: bytes) -> None:
    """decode_body_fast either declines (Slow) or gives exactly the reference's events."""
    try:
        events = decode.decode_body_fast(raw)
    except (decode.Slow, decode.DuplicateKey):
        return
    reference = oracle_http.events_of(oracle_http.parse_json(raw), 10**6)
    assert [snapshot(e) for e in events] == [snapshot(e) for e in reference]
    assert not has_duplicate(raw)


# ---- the workload the benchmarks use ----------------------------------------------------


def test_benchmark_workload_takes_the_fast_path() -> None:
    """Helpdesk-shaped events decode on the fast path, identical to the reference."""
    from benchmarks.workload import events

    objs = list(events(300))
    for obj in objs[:50]:
        obj["occurred_at"] = "2026-11-26T10:00:00.123Z"
    raw = json.dumps({"events": objs}).encode()
    fast = decode.decode_body_fast(raw)
    assert [snapshot(e) for e in fast] == [snapshot(e) for e in oracle.validate_batch(objs)]
    assert [snapshot(e) for e in decode.convert_batch(objs)] == [snapshot(e) for e in fast]
    assert all(payload_bytes(e) == e._payload for e in fast)


def test_catalogue_actions_decode() -> None:
    """Every catalogue action decodes to its catalogue entry from bytes and dicts."""
    for action in CATALOGUE:
        raw = json.dumps({"action": action}).encode()
        assert decode.decode_line_fast(raw).info is CATALOGUE[action]
        assert validate_batch([{"action": action}])[0] == validate_event({"action": action})


@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    st.text("0123456789", max_size=10),
    st.sampled_from(["T", "t", " "]),
    st.sampled_from(["Z", "z", "+00:00", "-01:30"]),
)
@SETTINGS
def test_timestamps_match_parse_ts(moment: datetime, digits: str, sep: str, zone: str) -> None:
    """The fast RFC 3339 reader agrees with parse_ts/format_ts, or declines."""
    text = moment.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + (f".{digits}" if digits else "") + zone
    try:
        us = parse_ts(text)
    except InvalidInput:
        with pytest.raises(decode.Slow):
            decode._timestamp(text)
        return
    assert decode._timestamp(text) == (us, format_ts(us))


def test_decode_body_is_complete() -> None:
    """decode_body (the core's own entry point) decodes both body shapes and
    names problems: malformed JSON as InvalidInput, bad events by path."""
    one = decode.decode_body(b'{"action":"ticket.viewed"}')
    assert [e.action for e in one] == ["ticket.viewed"]
    two = decode.decode_body(b'{"events":[{"action":"ticket.viewed"},{"action":"auth.logout"}]}')
    assert [e.action for e in two] == ["ticket.viewed", "auth.logout"]
    with pytest.raises(InvalidEvent) as info:
        decode.decode_body(b'{"events":[{"action":"ticket.viewed"},{"action":"x"}]}')
    assert info.value.field == "events[1].action"
    with pytest.raises(InvalidEvent) as info:
        decode.decode_body(b'{"events":[{"action":"ticket.viewed"}],"extra":1}')
    assert info.value.field == "extra"
    with pytest.raises(decode.DuplicateKey) as dup:
        decode.decode_body(b'{"events":[{"action":"ticket.viewed","id":"a","id":"b"}]}')
    assert dup.value.field == "events[0].id" and dup.value.key == "id"
    with pytest.raises(InvalidInput, match="not JSON"):
        decode.decode_body(b'{"events":[')


def test_a_lone_surrogate_where_an_object_belongs_is_an_invalid_event() -> None:
    """msgspec.convert fails while naming such a value in its own message
    (UnicodeEncodeError); the reference then gives the usual error, as it
    does for any other value of the wrong type (found by Hypothesis)."""
    obj = {"action": "actor.erased", "actor": "\ud800"}
    expected = outcome(oracle.validate_batch, [copy.deepcopy(obj)])
    assert expected[0] == "invalid" and expected[1][0] == "events[0].actor"
    assert outcome(validate_batch, [obj]) == expected
