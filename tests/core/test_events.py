"""Validation of ingested events, and the timestamps they carry."""

from __future__ import annotations

import copy
import ipaddress
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kimonaudit.core.catalogue import CATALOGUE, Severity
from kimonaudit.core.events import (
    MAX_BATCH_EVENTS,
    RESERVED_IDS,
    Actor,
    Change,
    Target,
    event_to_json,
    validate_batch,
    validate_event,
)
from kimonaudit.core.leaf import payload_bytes, payload_of
from kimonaudit.core.timefmt import MAX_US, MIN_US, format_ts, from_us, parse_ts, to_us
from kimonaudit.errors import InvalidEvent, InvalidInput

DESIGN_EXAMPLE: dict[str, Any] = {
    "id": "6f1c2d7e-2b1a-4c3d-9e8f-0a1b2c3d4e5f",
    "action": "ticket.field_changed",
    "actor": {"id": "agent_42", "type": "agent", "name": "Ann Lee", "email": "ann@acme.test"},
    "target": {"type": "ticket", "id": "10482"},
    "context": {"ip": "203.0.113.9", "user_agent": "Mozilla/5.0", "request_id": "r-1"},
    "changes": [{"field": "status", "from": "open", "to": "pending"}],
    "outcome": "success",
    "occurred_at": "2026-11-26T10:00:00Z",
    "metadata": {"via": "web"},
}


def ev(**fields: Any) -> dict[str, Any]:
    return {"action": "ticket.viewed", **fields}


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


# ---- accepted input ----------------------------------------------------------


def test_design_example_validates() -> None:
    """The example event from DESIGN.md validates into the expected Event."""
    event = validate_event(DESIGN_EXAMPLE)
    assert event.id == "6f1c2d7e-2b1a-4c3d-9e8f-0a1b2c3d4e5f"
    assert event.action == "ticket.field_changed"
    assert event.info is CATALOGUE["ticket.field_changed"]
    assert event.severity is Severity.INFO
    assert event.actor == Actor("agent_42", "agent", "Ann Lee", "ann@acme.test")
    assert event.target == Target("ticket", "10482")
    assert dict(event.context) == DESIGN_EXAMPLE["context"]
    assert event.changes == (Change("status", "open", "pending"),)
    assert event.outcome == "success"
    assert event.occurred_at == to_us(datetime(2026, 11, 26, 10, tzinfo=UTC))
    assert dict(event.metadata) == {"via": "web"}


def test_defaults() -> None:
    """Only action is required; the rest default sensibly."""
    event = validate_event({"action": "ticket.viewed", "actor": {"id": "u1"}})
    assert event.id is None
    assert event.actor == Actor("u1", "user", None, None)
    assert event.target is None
    assert dict(event.context) == {} and dict(event.metadata) == {}
    assert event.changes == ()
    assert event.outcome == "success"
    assert event.occurred_at is None


def test_nulls_count_as_absent() -> None:
    """Optional keys sent as null behave as if they were not sent."""
    keys = ("id", "actor", "target", "context", "changes", "outcome", "occurred_at", "metadata")
    sent = validate_event(ev(severity=None, **dict.fromkeys(keys)))
    assert sent == validate_event(ev())


def test_empty_name_and_email_are_absent() -> None:
    """An empty name or email is stored as absent, not as ""."""
    event = validate_event(ev(actor={"id": "u", "name": "", "email": ""}))
    assert event.actor == Actor("u", "user", None, None)


def test_change_without_from_or_to() -> None:
    """A change's missing from/to are null."""
    assert validate_event(ev(changes=[{"field": "tags"}])).changes == (Change("tags", None, None),)


@pytest.mark.parametrize(
    ("ip", "normal"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("::ffff:192.0.2.1", "::ffff:c000:201"),
        ("fe80::1%eth0", "fe80::1%eth0"),
    ],
)
def test_ip_is_normalised(ip: str, normal: str) -> None:
    """context.ip is stored in the ipaddress module's normal form."""
    assert validate_event(ev(context={"ip": ip})).context["ip"] == normal


def test_occurred_at_offset_converted_to_utc() -> None:
    """occurred_at with an offset is stored as the same instant in UTC µs."""
    event = validate_event(ev(occurred_at="2026-11-26T11:30:00.25+01:30"))
    assert event.occurred_at == to_us(datetime(2026, 11, 26, 10, 0, 0, 250000, tzinfo=UTC))
    assert payload_of(event)["occurred_at"] == "2026-11-26T10:00:00.250000Z"


@pytest.mark.parametrize("outcome", ["success", "failure", "denied", "error", "unknown"])
def test_outcomes(outcome: str) -> None:
    """Each documented outcome is accepted as is."""
    assert validate_event(ev(outcome=outcome)).outcome == outcome


def test_severity_may_be_raised() -> None:
    """A severity override above (or equal to) the default is kept."""
    assert validate_event(ev(severity="critical")).severity is Severity.CRITICAL
    assert validate_event(ev(severity="info")).severity is Severity.INFO
    raised = validate_event({"action": "auth.mfa.disabled", "severity": "critical"})
    assert raised.severity is Severity.CRITICAL
    assert raised.info.severity is Severity.HIGH


def test_severity_may_not_be_lowered() -> None:
    """An override below the catalogue default is rejected, naming both."""
    with pytest.raises(InvalidEvent, match="'low' is below the default 'high'") as info:
        validate_event({"action": "auth.mfa.disabled", "severity": "low"})
    assert info.value.field == "severity"


def test_custom_action_any_severity() -> None:
    """A custom action defaults to info and accepts any override."""
    event = validate_event({"action": "billing.invoice.paid", "severity": "medium"})
    assert event.info.custom and event.info.severity is Severity.INFO
    assert event.severity is Severity.MEDIUM


def test_input_is_copied() -> None:
    """Mutating the input after validation changes neither the Event nor its payload."""
    obj = copy.deepcopy(DESIGN_EXAMPLE)
    obj["metadata"]["tags"] = ["a"]
    event = validate_event(obj)
    before = payload_bytes(event)
    obj["metadata"]["tags"].append("b")
    obj["context"]["user_agent"] = "changed"
    obj["changes"][0]["to"] = "closed"
    assert event.metadata["tags"] == ["a"]
    assert payload_of(event)["context"]["user_agent"] == "Mozilla/5.0"
    assert payload_bytes(event) == before
    assert obj != DESIGN_EXAMPLE  # the test really mutated its own copy


def test_input_is_not_modified() -> None:
    """Validation leaves the caller's object untouched (even when normalising)."""
    obj = ev(context={"ip": "2001:DB8::1"})
    validate_event(obj)
    assert obj == ev(context={"ip": "2001:DB8::1"})


def test_top_level_is_read_only() -> None:
    """context and metadata cannot be assigned into."""
    event = validate_event(DESIGN_EXAMPLE)
    with pytest.raises(TypeError):
        event.metadata["x"] = 1  # type: ignore[index]


# ---- rejected input: every error names its field -----------------------------

BAD: list[tuple[object, str, str]] = [
    ([], "", "expected an event object"),
    ({}, "action", "required"),
    ({"action": 5}, "action", "expected a string"),
    ({"action": "Ticket.Viewed"}, "action", "well-formed"),
    ({"action": "ticket"}, "action", "well-formed"),
    (ev(extra=1, more=2), "extra", "unknown keys 'extra', 'more'"),
    (ev(tenant="t1"), "tenant", "comes from the API key"),
    (ev(tenant_id="t1"), "tenant_id", "comes from the API key"),
    (ev(id=""), "id", "must not be empty"),
    (ev(id=5), "id", "expected a string"),
    (ev(id="a\x00b"), "id", "U+0000 at position 1"),
    (ev(id="a\x85"), "id", "U+0085"),
    (ev(id="a\x7f"), "id", "U+007F"),
    (ev(id="a\ud800"), "id", "unpaired surrogate"),
    (ev(id="x" * 201), "id", "at most 200"),
    (ev(actor="agent_42"), "actor", "expected an object"),
    (ev(actor={}), "actor.id", "required"),
    (ev(actor={"id": 42}), "actor.id", "expected a string"),
    (ev(actor={"id": "a\nb"}), "actor.id", "U+000A"),
    (ev(actor={"id": "a", "type": "Agent"}), "actor.type", "short lower-case identifier"),
    (ev(actor={"id": "a", "type": ""}), "actor.type", "identifier"),
    (ev(actor={"id": "a", "name": 5}), "actor.name", "expected a string"),
    (ev(actor={"id": "a", "email": "x" * 201}), "actor.email", "at most 200"),
    (ev(actor={"id": "a", "role": "admin"}), "actor.role", "unknown key 'role'"),
    (ev(target={"type": "ticket"}), "target.id", "required"),
    (ev(target={"id": "1"}), "target.type", "required"),
    (ev(target=[]), "target", "expected an object"),
    (ev(target={"type": "ticket", "id": 1}), "target.id", "expected a string"),
    (ev(target={"type": "ticket", "id": "1", "name": "x"}), "target.name", "unknown key"),
    (ev(context="x"), "context", "expected an object"),
    (ev(context={"ip": "999.1.1.1"}), "context.ip", "not an IP address"),
    (ev(context={"ip": " 10.0.0.1"}), "context.ip", "not an IP address"),
    (ev(context={"ip": 5}), "context.ip", "expected an IP address string"),
    (ev(context={"user_agent": 5}), "context.user_agent", "expected a string"),
    (ev(context={"request_id": []}), "context.request_id", "expected a string"),
    (ev(context={"a": {"b": [1, float("nan")]}}), "context.a.b[1]", "NaN"),
    (ev(context={"big": 2**53}), "context.big", "outside ±(2**53-1)"),
    (ev(context={"content-type": object()}), 'context["content-type"]', "JSON value"),
    (ev(changes={}), "changes", "expected an array"),
    (ev(changes=[5]), "changes[0]", "expected an object"),
    (ev(changes=[{"from": 1}]), "changes[0].field", "required"),
    (ev(changes=[{"field": ""}]), "changes[0].field", "must not be empty"),
    (ev(changes=[{"field": "a", "before": 1}]), "changes[0].before", "unknown key"),
    (
        ev(changes=[{"field": "a"}, {"field": "b", "to": {"x": float("inf")}}]),
        "changes[1].to.x",
        "infinit",
    ),
    (ev(outcome="ok"), "outcome", "expected one of success, failure"),
    (ev(outcome=True), "outcome", "not an outcome"),
    (ev(occurred_at="2026-11-26 10:00:00Z"), "occurred_at", "not an RFC 3339"),
    (ev(occurred_at="2026-11-26T10:00:00"), "occurred_at", "not an RFC 3339"),
    (ev(occurred_at="2026-02-30T10:00:00Z"), "occurred_at", "no such calendar date"),
    (ev(occurred_at=1_700_000_000), "occurred_at", "expected an RFC 3339 timestamp string"),
    (ev(metadata=[]), "metadata", "expected an object"),
    (ev(metadata={1: "x"}), "metadata", "keys must be strings"),
    (ev(metadata={"s": "\udfff"}), "metadata.s", "unpaired surrogate"),
    (ev(metadata={"deep": nested(16)}), "metadata.deep" + "[0]" * 15, "deeper than 16"),
    (ev(severity="urgent"), "severity", "expected one of info, low"),
    (ev(severity=3), "severity", "expected one of"),
    ({"action": "auth.mfa.disabled", "severity": "info"}, "severity", "never lower"),
]


@pytest.mark.parametrize(("obj", "field", "message"), BAD)
def test_error_names_field(obj: object, field: str, message: str) -> None:
    """Each bad input is rejected with InvalidEvent naming the exact field path."""
    with pytest.raises(InvalidEvent) as info:
        validate_event(obj)
    assert info.value.field == field
    assert message in info.value.reason


@pytest.mark.parametrize(("obj", "field", "message"), BAD)
def test_error_field_prefixed_in_batch(obj: object, field: str, message: str) -> None:
    """Inside a batch, the same errors name events[i].<field>."""
    with pytest.raises(InvalidEvent) as info:
        validate_batch([ev(), obj])
    assert info.value.field == ("events[1]." + field if field else "events[1]")
    assert message in info.value.reason


def test_error_message_carries_field() -> None:
    """str(error) starts with the field so logs and CLI output show it."""
    with pytest.raises(InvalidEvent, match=r"^actor\.id: is required"):
        validate_event(ev(actor={"type": "agent"}))


def test_depth_limit_boundary() -> None:
    """Values may nest 16 containers deep, not 17."""
    assert validate_event(ev(metadata={"deep": nested(15)})).metadata["deep"] == nested(15)
    assert validate_event(ev(changes=[{"field": "f", "to": nested(16)}]))
    with pytest.raises(InvalidEvent, match="deeper than 16"):
        validate_event(ev(changes=[{"field": "f", "to": nested(17)}]))


def test_cyclic_value_rejected() -> None:
    """A self-referencing structure (Python callers) is caught by the depth limit."""
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(InvalidEvent, match="deeper than 16"):
        validate_event(ev(metadata=loop))


def test_safe_integer_boundary() -> None:
    """±(2**53-1) is accepted, one further is not."""
    edge = 2**53 - 1
    assert validate_event(ev(metadata={"n": edge, "m": -edge})).metadata["n"] == edge
    with pytest.raises(InvalidEvent):
        validate_event(ev(metadata={"n": -(2**53)}))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        (lambda n: {"id": "i" * n}, "id"),
        (lambda n: {"actor": {"id": "a" * n}}, "actor.id"),
        (lambda n: {"actor": {"id": "a", "name": "n" * n}}, "actor.name"),
        (lambda n: {"target": {"type": "t", "id": "1" * n}}, "target.id"),
        (lambda n: {"target": {"type": "t" * n, "id": "1"}}, "target.type"),
        (lambda n: {"changes": [{"field": "f" * n}]}, "changes[0].field"),
    ],
)
def test_text_length_boundary(fields: Any, field: str) -> None:
    """Identifier-like strings may have 200 characters, not 201."""
    validate_event(ev(**fields(200)))
    with pytest.raises(InvalidEvent, match="201 characters") as info:
        validate_event(ev(**fields(201)))
    assert info.value.field == field


def test_action_length_boundary() -> None:
    """A 100-character action is accepted, 101 is not."""
    action = "x." + "y" * 98
    assert validate_event({"action": action}).action == action
    with pytest.raises(InvalidEvent, match="at most 100") as info:
        validate_event({"action": action + "y"})
    assert info.value.field == "action"


def test_changes_count_boundary() -> None:
    """200 changes are accepted, 201 are not."""
    changes = [{"field": f"f{i}", "from": i, "to": i + 1} for i in range(201)]
    assert len(validate_event(ev(changes=changes[:200])).changes) == 200
    with pytest.raises(InvalidEvent, match="201 changes; at most 200") as info:
        validate_event(ev(changes=changes))
    assert info.value.field == "changes"


def test_payload_over_limit_in_batch_names_event() -> None:
    """An oversized payload in a batch names the event, not a field."""
    with pytest.raises(InvalidEvent, match="at most 32768") as info:
        validate_batch([ev(), ev(metadata={"pad": "x" * 40_000})])
    assert info.value.field == "events[1]"


# ---- batches -------------------------------------------------------------------


def test_batch_validates_each() -> None:
    """A batch returns one Event per input, in order."""
    events = validate_batch([ev(id="a"), ev(id="b"), ev()])
    assert [e.id for e in events] == ["a", "b", None]


def test_batch_rejects_duplicate_ids() -> None:
    """Two events with one id in a batch are rejected, naming both indexes."""
    with pytest.raises(InvalidEvent, match=r"events\[1\] and events\[3\]") as info:
        validate_batch([ev(id="a"), ev(id="dup"), ev(id="b"), ev(id="dup")])
    assert info.value.field == "events[3].id"


@pytest.mark.parametrize("objs", [{"action": "ticket.viewed"}, "x", None])
def test_batch_needs_array(objs: object) -> None:
    """A batch must be an array."""
    with pytest.raises(InvalidEvent, match="expected an array") as info:
        validate_batch(objs)
    assert info.value.field == "events"


def test_batch_size_limit() -> None:
    """1,000 events are accepted, 1,001 are not."""
    assert len(validate_batch([ev()] * MAX_BATCH_EVENTS)) == 1000
    with pytest.raises(InvalidEvent, match="at most 1000") as info:
        validate_batch([ev()] * (MAX_BATCH_EVENTS + 1))
    assert info.value.field == "events"


# ---- generated events ----------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=30)
IDENT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=40
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
OFFSET_TIMES = st.builds(
    lambda dt, minutes: dt.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat(),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
    st.integers(-23 * 60 - 59, 23 * 60 + 59),
)
IPS = st.ip_addresses().map(str)


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


EVENTS = st.fixed_dictionaries(
    {
        "action": st.sampled_from(sorted(CATALOGUE))
        | st.from_regex(r"[a-z_]{1,8}\.[a-z0-9_]{1,8}", fullmatch=True)
    },
    optional={
        # Ids GET /v1/events/{id} cannot reach are refused (check_reachable_id).
        "id": IDENT.filter(lambda s: "/" not in s and s not in RESERVED_IDS),
        "actor": st.fixed_dictionaries(
            {"id": IDENT},
            optional={
                "type": st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
                "name": optional(IDENT),
                "email": optional(IDENT),
            },
        ),
        "target": st.fixed_dictionaries({"type": IDENT, "id": IDENT}),
        "context": st.fixed_dictionaries(
            {}, optional={"ip": IPS, "user_agent": TEXT, "request_id": TEXT}
        ).flatmap(
            lambda known: st.dictionaries(
                TEXT.filter(lambda k: k not in ("ip", "user_agent", "request_id")),
                JSON_VALUES,
                max_size=3,
            ).map(lambda extra: {**extra, **known})
        ),
        "changes": st.lists(
            st.fixed_dictionaries(
                {"field": IDENT}, optional={"from": JSON_VALUES, "to": JSON_VALUES}
            ),
            max_size=4,
        ),
        "outcome": st.sampled_from(["success", "failure", "denied", "error", "unknown"]),
        "occurred_at": OFFSET_TIMES,
        "metadata": st.dictionaries(TEXT, JSON_VALUES, max_size=4),
        "severity": st.just("critical"),
    },
)


def reverse_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: reverse_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reverse_keys(v) for v in value]
    return value


@given(EVENTS)
@settings(max_examples=150, deadline=None)
def test_generated_events_round_trip(obj: dict[str, Any]) -> None:
    """Valid events validate, serialise back and validate to the same Event and payload."""
    event = validate_event(obj)
    again = validate_event(copy.deepcopy(obj))
    assert again == event
    assert payload_of(again) == payload_of(event)
    assert payload_bytes(again) == payload_bytes(event)
    assert validate_event(reverse_keys(obj)) == event
    assert payload_bytes(validate_event(reverse_keys(obj))) == payload_bytes(event)
    back = validate_event(event_to_json(event))
    assert back == event
    assert payload_bytes(back) == payload_bytes(event)


@given(EVENTS)
@settings(max_examples=100, deadline=None)
def test_generated_payload_reflects_input(obj: dict[str, Any]) -> None:
    """The payload holds the input's context, changes and metadata and nothing of the actor."""
    payload = payload_of(validate_event(obj))
    context = dict(obj.get("context") or {})
    if "ip" in context:
        context["ip"] = str(ipaddress.ip_address(context["ip"]))
    assert payload["context"] == context
    assert payload["metadata"] == (obj.get("metadata") or {})
    assert payload["changes"] == [
        {"field": c["field"], "from": c.get("from"), "to": c.get("to")}
        for c in obj.get("changes") or []
    ]
    if obj.get("occurred_at") is None:
        assert payload["occurred_at"] is None
    else:
        moment = datetime.fromisoformat(obj["occurred_at"])
        assert payload["occurred_at"] == format_ts(to_us(moment))
    assert set(payload) == {"context", "changes", "metadata", "occurred_at"}


# ---- timestamps ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("us", "text"),
    [
        (0, "1970-01-01T00:00:00.000000Z"),
        (1_795_687_200_000_000, "2026-11-26T10:00:00.000000Z"),
        (1_795_687_200_123_456, "2026-11-26T10:00:00.123456Z"),
        (-1, "1969-12-31T23:59:59.999999Z"),
        (951_782_400_000_000, "2000-02-29T00:00:00.000000Z"),
        (MIN_US, "0001-01-01T00:00:00.000000Z"),
        (MAX_US, "9999-12-31T23:59:59.999999Z"),
    ],
)
def test_format_ts(us: int, text: str) -> None:
    """format_ts writes UTC with six fraction digits and Z; parse_ts reads it back."""
    assert format_ts(us) == text
    assert parse_ts(text) == us


@pytest.mark.parametrize("us", [MIN_US - 1, MAX_US + 1])
def test_format_ts_range(us: int) -> None:
    """Instants outside years 0001-9999 cannot be written as RFC 3339."""
    with pytest.raises(ValueError, match="0001-9999"):
        format_ts(us)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T10:00:00Z", "2026-11-26T10:00:00.000000Z"),
        ("2026-11-26t10:00:00z", "2026-11-26T10:00:00.000000Z"),
        ("2026-11-26T10:00:00+00:00", "2026-11-26T10:00:00.000000Z"),
        ("2026-11-26T10:00:00-00:00", "2026-11-26T10:00:00.000000Z"),
        ("2026-11-26T12:30:00+02:30", "2026-11-26T10:00:00.000000Z"),
        ("2026-11-26T00:00:00-10:00", "2026-11-26T10:00:00.000000Z"),
        ("2026-11-26T10:00:00.5Z", "2026-11-26T10:00:00.500000Z"),
        ("2026-11-26T10:00:00.123456789Z", "2026-11-26T10:00:00.123456Z"),
        ("2026-11-26T10:00:00.999999999Z", "2026-11-26T10:00:00.999999Z"),
        ("2026-12-31T23:59:59+00:01", "2026-12-31T23:58:59.000000Z"),
        ("2027-01-01T00:30:00+01:00", "2026-12-31T23:30:00.000000Z"),
    ],
)
def test_parse_ts(text: str, expected: str) -> None:
    """parse_ts accepts RFC 3339 with offsets, converting to UTC and truncating to µs."""
    assert format_ts(parse_ts(text)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-26T10:00:00",
        "2026-11-26 10:00:00Z",
        "2026-11-26T10:00Z",
        "2026-11-26T10:00:00.Z",
        "2026-11-26T10:00:00.1234567890Z",
        "2026-11-26T10:00:00+0100",
        "2026-11-26T10:00:00+01",
        "2026-11-26T24:00:00Z",
        "2026-11-26T10:60:00Z",
        "2026-12-31T23:59:60Z",
        "2026-13-01T10:00:00Z",
        "2026-02-29T10:00:00Z",
        "2026-11-26T10:00:00+24:00",
        "2026-11-26T10:00:00+01:60",
        "26-11-26T10:00:00Z",
        "2026-11-26T10:00:00Z ",
        "２０２６-11-26T10:00:00Z",
        "0001-01-01T00:00:00+00:01",
        "",
    ],
)
def test_parse_ts_rejects(text: str) -> None:
    """Anything but strict RFC 3339 is InvalidInput naming the given field."""
    with pytest.raises(InvalidInput) as info:
        parse_ts(text, field="occurred_at")
    assert info.value.field == "occurred_at"


@given(st.integers(MIN_US, MAX_US))
@settings(max_examples=300)
def test_format_parse_round_trip(us: int) -> None:
    """parse_ts(format_ts(us)) == us across the whole range, agreeing with datetime."""
    text = format_ts(us)
    assert parse_ts(text) == us
    assert text == from_us(us).strftime("%Y-%m-%dT%H:%M:%S.%fZ").rjust(27, "0")


@given(OFFSET_TIMES)
@settings(max_examples=200)
def test_parse_agrees_with_datetime(text: str) -> None:
    """For offset times, parse_ts matches datetime.fromisoformat."""
    assert parse_ts(text) == to_us(datetime.fromisoformat(text))


def test_to_us_and_from_us() -> None:
    """to_us/from_us convert exactly between aware datetimes and µs."""
    moment = datetime(2026, 11, 26, 11, 0, 0, 1, tzinfo=timezone(timedelta(hours=1)))
    assert to_us(moment) == 1_795_687_200_000_001
    assert from_us(1_795_687_200_000_001) == moment
    assert from_us(0).tzinfo is UTC


def test_to_us_rejects_naive() -> None:
    """A naive datetime is ambiguous and rejected."""
    with pytest.raises(ValueError, match="naive"):
        to_us(datetime(2026, 11, 26))
