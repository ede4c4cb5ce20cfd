"""Helpdesk helpers: field diffs with keyed hashes for sensitive values, and
typed builders whose events a real AuditLog accepts with the catalogue's
classification."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import kimonaudit
from kimonaudit.core.events import validate_event
from kimonaudit.core.pseudonym import field_hash
from kimonaudit.integrations import helpdesk as h
from kimonaudit.integrations.helpdesk import Actor, ticket_changes

KEY = b"k" * 32
ANN = Actor("agent_42", name="Ann Lee", email="ann@acme.test")


@pytest.fixture
def audit_log(tmp_path: Path) -> Iterator[kimonaudit.AuditLog]:
    with kimonaudit.open(
        f"sqlite:///{tmp_path / 'audit.db'}", key_file=str(tmp_path / "k.key")
    ) as log:
        yield log


# --- ticket_changes ---------------------------------------------------------------------


def test_only_changed_fields_sorted_by_field() -> None:
    """Unchanged fields are left out; the rest come sorted by field name,
    a field missing on one side counting as None."""
    before = {"status": "open", "priority": "low", "assignee": "u1", "tags": ["a"]}
    after = {"status": "pending", "priority": "low", "group": "billing", "tags": ["a"]}
    assert ticket_changes(before, after) == [
        {"field": "assignee", "from": "u1", "to": None},
        {"field": "group", "from": None, "to": "billing"},
        {"field": "status", "from": "open", "to": "pending"},
    ]


def test_sensitive_values_become_keyed_hashes() -> None:
    """Emails, phone numbers and free text are replaced by field_hash(key,
    value): the change is visible, the value is not."""
    before = {"requester_email": "bob@example.test", "phone": "+1 555 0100", "subject": "Hi"}
    after = {"requester_email": "rob@example.test", "phone": None, "subject": "Refund for Bob"}
    changes = {c["field"]: c for c in ticket_changes(before, after, key=KEY)}
    assert changes["requester_email"]["from"] == field_hash(KEY, "bob@example.test")
    assert changes["requester_email"]["to"] == field_hash(KEY, "rob@example.test")
    assert changes["phone"] == {
        "field": "phone",
        "from": field_hash(KEY, "+1 555 0100"),
        "to": None,
    }
    assert changes["subject"]["to"] == field_hash(KEY, "Refund for Bob")
    text = json.dumps(changes)
    assert "example.test" not in text and "555" not in text and "Bob" not in text


def test_equal_sensitive_values_hash_equal_and_keys_matter() -> None:
    """The same value under the same key gives the same hash (so a reverted
    change is recognisable); another key gives another hash."""
    a = ticket_changes({"email": "x@y.test"}, {"email": "z@y.test"}, key=KEY)
    b = ticket_changes({"email": "z@y.test"}, {"email": "x@y.test"}, key=KEY)
    assert a[0]["from"] == b[0]["to"]
    c = ticket_changes({"email": "x@y.test"}, {"email": "z@y.test"}, key=b"o" * 32)
    assert c[0]["from"] != a[0]["from"]


def test_without_a_key_sensitive_values_are_redacted() -> None:
    """No key: the value is replaced by "[redacted]", never stored raw."""
    changes = ticket_changes({"description": "secret text"}, {"description": "other"})
    assert changes == [{"field": "description", "from": "[redacted]", "to": "[redacted]"}]


def test_custom_sensitive_list_and_patterns() -> None:
    """`sensitive` replaces the defaults; shell patterns match the full
    dotted name or its last part, case-insensitively."""
    before = {"custom": {"VIP_Notes": "a", "order": 1}, "email": "e@x.test"}
    after = {"custom": {"VIP_Notes": "b", "order": 2}, "email": "f@x.test"}
    changes = ticket_changes(before, after, sensitive=["vip_*"], key=KEY)
    assert changes == [
        {"field": "custom.VIP_Notes", "from": field_hash(KEY, "a"), "to": field_hash(KEY, "b")},
        {"field": "custom.order", "from": 1, "to": 2},
        {"field": "email", "from": "e@x.test", "to": "f@x.test"},
    ]


def test_values_are_made_json_and_type_changes_count() -> None:
    """Datetimes, dates, decimals, enums and sets become JSON; 1 -> True is
    a change; large integers become text."""

    class Prio(Enum):
        HIGH = "high"

    when = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    before = {"due": None, "day": None, "price": None, "prio": None, "flag": 1, "big": 0, "s": None}
    after = {
        "due": when,
        "day": date(2026, 1, 6),
        "price": Decimal("9.90"),
        "prio": Prio.HIGH,
        "flag": True,
        "big": 2**60,
        "s": {"b", "a"},
    }
    to = {c["field"]: c["to"] for c in ticket_changes(before, after)}
    assert to == {
        "due": "2026-01-05T09:00:00.000000Z",
        "day": "2026-01-06",
        "price": "9.90",
        "prio": "high",
        "flag": True,
        "big": str(2**60),
        "s": ["a", "b"],
    }


def test_short_keys_are_refused() -> None:
    """A field-hash key under 16 bytes is a configuration error."""
    with pytest.raises(ValueError, match="16"):
        ticket_changes({"email": "a"}, {"email": "b"}, key=b"short")


_values = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.text(max_size=5))
_tickets = st.dictionaries(st.sampled_from(["status", "group", "tags", "prio"]), _values)


@settings(max_examples=200, deadline=None)
@given(_tickets, _tickets)
def test_applying_the_changes_to_before_gives_after(
    before: dict[str, Any], after: dict[str, Any]
) -> None:
    """Property: the changes are exactly the differing fields, sorted, and
    replaying them onto `before` yields `after` (None standing for absent)."""
    changes = ticket_changes(before, after, sensitive=())
    fields = [c["field"] for c in changes]
    assert fields == sorted(set(fields))
    state = dict(before)
    for c in changes:
        assert c["from"] == before.get(c["field"])
        state[c["field"]] = c["to"]
    norm = lambda d: {k: v for k, v in d.items() if v is not None}  # noqa: E731
    assert norm(state) == norm(after)


# --- typed helpers ------------------------------------------------------------------------

BEFORE = {"status": "open", "priority": "low", "requester_email": "bob@example.test"}
AFTER = {"status": "solved", "priority": "high", "requester_email": "bob@example.test"}

HELPERS: dict[str, tuple[Callable[[], dict[str, Any] | None], str]] = {
    "login_succeeded": (lambda: h.login_succeeded(ANN, method="sso", ip="203.0.113.9"), "info"),
    "login_failed": (lambda: h.login_failed("bob@example.test", reason="bad_password"), "medium"),
    "ticket_viewed": (lambda: h.ticket_viewed(ANN, 10482, request_id="r1"), "info"),
    "ticket_field_changed": (lambda: h.ticket_field_changed(ANN, 10482, BEFORE, AFTER), "info"),
    "macro_applied": (
        lambda: h.macro_applied(ANN, 10482, "m7", BEFORE, AFTER, macro_name="Close"),
        "info",
    ),
    "export_requested": (
        lambda: h.export_requested(ANN, export_id="x1", format="csv", query="is:security"),
        "medium",
    ),
    "export_downloaded": (lambda: h.export_downloaded(ANN, "x1"), "medium"),
    "api_call": (lambda: h.api_call(ANN, "get", "/tickets/{id}", 200, duration_ms=3.2), "info"),
    "workflow_created": (
        lambda: h.workflow_created(ANN, "w1", {"trigger": "ticket.created", "actions": ["x"]}),
        "low",
    ),
    "workflow_updated": (
        lambda: h.workflow_updated(ANN, "w1", {"enabled": True}, {"enabled": False}),
        "low",
    ),
    "workflow_deleted": (lambda: h.workflow_deleted(ANN, "w1", name="Escalate"), "medium"),
    "role_assigned": (lambda: h.role_assigned(ANN, "u9", "admin"), "high"),
    "role_revoked": (lambda: h.role_revoked(ANN, "u9", "admin"), "high"),
    "permission_updated": (
        lambda: h.permission_updated(ANN, "r1", {"tickets.view"}, {"tickets.view", "export"}),
        "high",
    ),
    "sso_group_member_added": (
        lambda: h.sso_group_member_added(ANN, "support-l2", "u9", provider="okta"),
        "high",
    ),
    "sso_group_member_removed": (
        lambda: h.sso_group_member_removed(ANN, "support-l2", "u9"),
        "high",
    ),
}


@pytest.mark.parametrize("name", sorted(HELPERS))
def test_helpers_build_events_the_log_accepts(name: str, audit_log: kimonaudit.AuditLog) -> None:
    """Every helper's event passes validation, is appended by AuditLog and
    gets the catalogue action's severity."""
    build, severity = HELPERS[name]
    event = build()
    assert event is not None
    ev = validate_event(event)
    assert not ev.info.custom  # a catalogue action, not a custom one
    assert ev.severity.label == severity
    tenant = audit_log.create_tenant("acme")
    (receipt,) = audit_log.append(tenant.id, [event])
    row = audit_log.get_entry(tenant.id, receipt.seq)
    assert row.action == event["action"]
    assert "Ann Lee" not in repr(row) and "ann@acme.test" not in repr(row)


def test_helper_shapes() -> None:
    """Targets, changes, outcome and metadata of the typed helpers."""
    e = h.macro_applied(ANN, 10482, "m7", BEFORE, AFTER, macro_name="Close", key=KEY)
    assert e["target"] == {"type": "ticket", "id": "10482"}
    assert e["metadata"] == {"macro_id": "m7", "macro_name": "Close"}
    assert [c["field"] for c in e["changes"]] == ["priority", "status"]

    f = h.login_failed("bob@example.test", reason="bad_password", ip="203.0.113.9")
    assert f["outcome"] == "failure"
    assert f["actor"] == {"id": "bob@example.test", "type": "user"}
    assert f["context"] == {"ip": "203.0.113.9"}

    p = h.permission_updated(ANN, "r1", {"tickets.view"}, {"tickets.view", "export"})
    assert p["changes"] == [{"field": "export", "from": False, "to": True}]
    assert p["target"] == {"type": "role", "id": "r1"}

    r = h.role_revoked(ANN, 9, "admin")
    assert r["changes"] == [{"field": "role", "from": "admin", "to": None}]
    assert r["target"] == {"type": "user", "id": "9"}

    a = h.api_call(None, "delete", "/tickets/{id}", 403)
    assert (a["outcome"], a["context"]["method"], "actor" in a) == ("denied", "DELETE", False)
    assert [h.outcome_for_status(s) for s in (200, 302, 404, 401, 503)] == [
        "success",
        "success",
        "failure",
        "denied",
        "error",
    ]

    t = h.ticket_viewed(ANN, 1, occurred_at=datetime(2026, 1, 5, 10, 0, tzinfo=UTC))
    assert t["occurred_at"] == "2026-01-05T10:00:00.000000Z"
    assert t["actor"] == {
        "id": "agent_42",
        "type": "agent",
        "name": "Ann Lee",
        "email": "ann@acme.test",
    }


def test_field_changed_without_changes_is_none() -> None:
    """Nothing changed, nothing to record."""
    assert h.ticket_field_changed(ANN, 1, BEFORE, dict(BEFORE)) is None


def test_field_changed_hashes_sensitive_fields_with_the_key() -> None:
    """The default sensitive list applies to ticket_field_changed."""
    e = h.ticket_field_changed(
        ANN, 1, {"requester_email": "a@x.test"}, {"requester_email": "b@x.test"}, key=KEY
    )
    assert e is not None
    assert e["changes"][0]["to"] == field_hash(KEY, "b@x.test")


def test_unknown_keyword_arguments_are_refused() -> None:
    """A typo in a keyword argument is an error, not a silently lost field."""
    with pytest.raises(TypeError, match="user_agnet"):
        h.ticket_viewed(ANN, 1, user_agnet="x")  # type: ignore[call-arg]


def test_naive_occurred_at_is_refused() -> None:
    """A timestamp without a zone would be ambiguous."""
    with pytest.raises(ValueError, match="timezone"):
        h.ticket_viewed(ANN, 1, occurred_at=datetime(2026, 1, 5, 10, 0))
