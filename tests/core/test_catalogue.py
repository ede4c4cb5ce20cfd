"""The action catalogue: contents, security rule, severities, docs."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kimonaudit.core.catalogue import (
    ACTION_RE,
    CATALOGUE,
    ActionInfo,
    Severity,
    catalogue_markdown,
    classify,
)
from kimonaudit.errors import InvalidEvent

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"

# Copied by hand from DESIGN.md's "Catalogue" paragraph.
DESIGN_ACTIONS = [
    "auth.login.succeeded",
    "auth.login.failed",
    "auth.logout",
    "auth.password.changed",
    "auth.mfa.enabled",
    "auth.mfa.disabled",
    "auth.api_token.created",
    "auth.api_token.revoked",
    "user.created",
    "user.deleted",
    "user.suspended",
    "role.assigned",
    "role.revoked",
    "role.created",
    "role.updated",
    "role.deleted",
    "permission.updated",
    "sso.config.updated",
    "sso.group.member_added",
    "sso.group.member_removed",
    "sso.group_mapping.updated",
    "ticket.viewed",
    "ticket.created",
    "ticket.field_changed",
    "ticket.merged",
    "ticket.deleted",
    "tag.deleted",
    "macro.applied",
    "macro.created",
    "macro.updated",
    "macro.deleted",
    "export.requested",
    "export.downloaded",
    "api.request",
    "authz.denied",
    "workflow.created",
    "workflow.updated",
    "workflow.deleted",
    "audit_log.viewed",
    "audit_log.searched",
    "audit_log.exported",
    "audit_log.purged",
    "audit.retention.changed",
    "audit_stream.created",
    "audit_stream.paused",
    "audit_stream.resumed",
    "audit_stream.deleted",
    "support.impersonation.started",
    "support.impersonation.ended",
    # Issue 8: erasure and redaction are entries too.
    "actor.erased",
    "audit_log.redacted",
]

# DESIGN.md's security rule as it is written there, as shell patterns, so the
# test does not share the implementation's prefix table.
DESIGN_SECURITY_PATTERNS = [
    "sso.*",
    "role.*",
    "permission.*",
    "auth.login.failed",
    "auth.mfa.*",
    "auth.api_token.*",
    "auth.password.*",
    "user.*",
    "authz.denied",
    "export.*",
    "audit_*",
    "audit.*",
    "support.impersonation.*",
    "actor.erased",  # issue 8: "the erasure is itself an entry (actor.erased, security-relevant)"
]


# Issue 11: reading the log is recorded but is not a security event.
ROUTINE_LOG_ACCESS = {"audit_log.viewed", "audit_log.searched"}


def design_says_security(action: str) -> bool:
    if action in ROUTINE_LOG_ACCESS:
        return False
    return any(fnmatch.fnmatchcase(action, pattern) for pattern in DESIGN_SECURITY_PATTERNS)


def test_catalogue_is_exactly_the_design_list() -> None:
    """The table holds every action DESIGN.md lists, and nothing else."""
    assert sorted(CATALOGUE) == sorted(DESIGN_ACTIONS)
    assert len(DESIGN_ACTIONS) == 51


def test_entries_are_consistent_and_not_custom() -> None:
    """Each entry is keyed by its own action, well-formed and not marked custom."""
    for action, info in CATALOGUE.items():
        assert info.action == action
        assert ACTION_RE.fullmatch(action)
        assert not info.custom
        assert info.description.endswith(".")
        assert isinstance(info.severity, Severity)


@pytest.mark.parametrize("action", DESIGN_ACTIONS)
def test_security_flag_follows_design_rule(action: str) -> None:
    """A catalogue action is security-relevant exactly when DESIGN's rule says so."""
    assert CATALOGUE[action].security is design_says_security(action)


def test_security_rule_sanity() -> None:
    """The derived rule marks the obvious cases (guards the test's own patterns)."""
    assert CATALOGUE["auth.login.failed"].security
    assert not CATALOGUE["auth.login.succeeded"].security
    assert not CATALOGUE["auth.logout"].security
    assert not CATALOGUE["ticket.viewed"].security
    assert CATALOGUE["audit_stream.paused"].security
    assert CATALOGUE["audit.retention.changed"].security


def test_reading_the_log_is_not_a_security_event() -> None:
    """A routine view or search of the log is recorded as log access, not as
    security; exporting, purging and redacting the log stay security."""
    from kimonaudit.core.catalogue import is_log_access

    for action in ("audit_log.viewed", "audit_log.searched"):
        assert not CATALOGUE[action].security and is_log_access(action)
    for action in ("audit_log.exported", "audit_log.purged", "audit_log.redacted"):
        assert CATALOGUE[action].security and not is_log_access(action)
    assert CATALOGUE["authz.denied"].security and CATALOGUE["export.downloaded"].security
    assert not is_log_access("ticket.viewed")


@pytest.mark.parametrize(
    "action",
    [a for a in DESIGN_ACTIONS if a.split(".")[0] in ("role", "permission", "sso")],
)
def test_access_changes_are_at_least_high(action: str) -> None:
    """Role, permission and SSO changes default to HIGH or above."""
    assert CATALOGUE[action].severity >= Severity.HIGH


@pytest.mark.parametrize(
    ("action", "severity"),
    [
        ("ticket.viewed", Severity.INFO),
        ("auth.login.failed", Severity.MEDIUM),
        ("auth.mfa.disabled", Severity.HIGH),
        ("audit_log.purged", Severity.HIGH),
        ("support.impersonation.started", Severity.HIGH),
        ("user.deleted", Severity.HIGH),
        ("sso.config.updated", Severity.CRITICAL),
    ],
)
def test_chosen_severities(action: str, severity: Severity) -> None:
    """Key actions carry the severities the product promises."""
    assert CATALOGUE[action].severity is severity


def test_categories() -> None:
    """Actions group into the documented categories."""
    assert {info.category for info in CATALOGUE.values()} == {
        "authentication",
        "user_management",
        "access_control",
        "sso",
        "ticket",
        "macro",
        "export",
        "api",
        "workflow",
        "audit_log",
        "support",
    }
    assert CATALOGUE["permission.updated"].category == "access_control"
    assert CATALOGUE["authz.denied"].category == "access_control"
    assert CATALOGUE["audit_stream.created"].category == "audit_log"


def test_severity_labels_and_order() -> None:
    """Severities order info < ... < critical and have lower-case labels."""
    assert [s.label for s in sorted(Severity)] == ["info", "low", "medium", "high", "critical"]
    assert [int(s) for s in Severity] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("text", ["info", "low", "medium", "high", "critical", "HIGH", "High"])
def test_severity_parse(text: str) -> None:
    """parse accepts every label, in any case."""
    assert Severity.parse(text).label == text.lower()


@pytest.mark.parametrize("text", ["", "severe", " high", "3", "hi"])
def test_severity_parse_rejects(text: str) -> None:
    """parse rejects anything else, listing the valid labels."""
    with pytest.raises(ValueError, match="info, low, medium, high, critical"):
        Severity.parse(text)


def test_classify_catalogue_action() -> None:
    """classify returns the table's entry for a known action."""
    assert classify("role.assigned") is CATALOGUE["role.assigned"]


@pytest.mark.parametrize(
    ("action", "category", "security"),
    [
        ("billing.invoice.paid", "billing", False),
        ("kb.article_published", "kb", False),
        ("role.cloned", "role", True),
        ("auth.login.locked", "auth", False),
        ("audit_trail.x", "audit_trail", True),
        ("x1.y2", "x1", False),
    ],
)
def test_classify_custom(action: str, category: str, security: bool) -> None:
    """Custom actions: first segment as category, INFO, security per DESIGN's rule."""
    assert classify(action) == ActionInfo(
        action=action,
        category=category,
        severity=Severity.INFO,
        security=security,
        description="Custom action.",
        custom=True,
    )


@given(
    st.lists(st.from_regex(r"[a-z0-9_]{1,12}", fullmatch=True), min_size=2, max_size=5).map(
        ".".join
    )
)
@settings(max_examples=200)
def test_custom_security_matches_design_rule(action: str) -> None:
    """For any well-formed action, the security flag is DESIGN's rule."""
    assert classify(action).security is design_says_security(action)


@pytest.mark.parametrize(
    "action",
    [
        "",
        "ticket",
        "Ticket.viewed",
        "ticket..viewed",
        ".ticket.viewed",
        "ticket.viewed.",
        "ticket viewed",
        "ticket.viewed\n",
        "ticket-viewed.x",
        "tícket.viewed",
    ],
)
def test_classify_rejects_malformed(action: str) -> None:
    """Malformed actions raise InvalidEvent naming the action field."""
    with pytest.raises(InvalidEvent, match="well-formed") as info:
        classify(action)
    assert info.value.field == "action"


def test_action_length_boundary() -> None:
    """100 characters is accepted, 101 is not."""
    ok = "a." + "b" * 98
    assert len(ok) == 100
    assert classify(ok).custom
    with pytest.raises(InvalidEvent, match="at most 100") as info:
        classify(ok + "c")
    assert info.value.field == "action"


def test_docs_table_is_generated_from_catalogue() -> None:
    """docs/events.md carries catalogue_markdown() verbatim between its markers."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index("<!-- catalogue:start -->\n") + len("<!-- catalogue:start -->\n")
    end = text.index("<!-- catalogue:end -->")
    assert text[start:end] == catalogue_markdown(), (
        "docs/events.md is stale: paste the output of "
        "`python -c 'from kimonaudit.core.catalogue import catalogue_markdown as m; "
        'print(m(), end="")\'` between the catalogue markers'
    )


@pytest.mark.parametrize("action", DESIGN_ACTIONS)
def test_docs_row_per_action(action: str) -> None:
    """Each action has a docs row with its category, severity and security flag."""
    info = CATALOGUE[action]
    row = (
        f"| `{action}` | {info.category} | {info.severity.label} | "
        f"{'yes' if design_says_security(action) else 'no'} |"
    )
    assert row in DOCS.read_text(encoding="utf-8")
