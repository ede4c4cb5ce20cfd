"""The action catalogue: every known action with its category, default
severity and security flag, in one table.

Any other well-formed action (`ACTION_RE`) is accepted as a custom action.
docs/events.md carries this table as rendered by `catalogue_markdown()`; a
test keeps the two equal.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType

from kimonaudit.errors import InvalidEvent

MAX_ACTION_LENGTH = 100
ACTION_RE = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)+")


class Severity(IntEnum):
    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        """The lower-case name used in events, leaves and queries."""
        return _LABELS[self]

    @classmethod
    def parse(cls, text: str) -> Severity:
        """The severity named `text` (case-insensitive); ValueError otherwise."""
        try:
            return _BY_LABEL[text.lower()]
        except (KeyError, AttributeError):
            raise ValueError(
                f"unknown severity {text!r}; expected one of {', '.join(_BY_LABEL)}"
            ) from None


_LABELS: dict[Severity, str] = {s: s.name.lower() for s in Severity}
_BY_LABEL: dict[str, Severity] = {s.name.lower(): s for s in Severity}


@dataclass(frozen=True)
class ActionInfo:
    action: str
    category: str
    severity: Severity
    security: bool
    description: str
    custom: bool = False


# DESIGN.md's rule: these families (by prefix) and these single actions
# are security-relevant. The rule covers custom actions too: a new
# `role.cloned` matters to an investigator as much as `role.created`.
SECURITY_FAMILIES: tuple[str, ...] = (
    "sso.",
    "role.",
    "permission.",
    "auth.mfa.",
    "auth.api_token.",
    "auth.password.",
    "user.",
    "export.",
    "audit_",
    "audit.",
    "support.impersonation.",
)
SECURITY_ACTIONS: frozenset[str] = frozenset({"auth.login.failed", "authz.denied", "actor.erased"})


# Reading the log is recorded (who looked at what is part of the record) but
# a routine view or search is not a security event: were it one, every page
# an investigator opens would bury the events that matter. Exporting the log,
# purging, redacting, retention and stream changes stay security-relevant.
LOG_ACCESS_ACTIONS: frozenset[str] = frozenset({"audit_log.viewed", "audit_log.searched"})


def is_security_action(action: str) -> bool:
    """Whether `action` is security-relevant: DESIGN.md's families and
    actions, except routine reading of the log itself (LOG_ACCESS_ACTIONS)."""
    if action in LOG_ACCESS_ACTIONS:
        return False
    return action in SECURITY_ACTIONS or action.startswith(SECURITY_FAMILIES)


def is_log_access(action: str) -> bool:
    """Whether the entry records someone reading the audit log (a view or a
    search), which the console shows quietly and hides unless asked."""
    return action in LOG_ACCESS_ACTIONS


_I, _L, _M, _H, _C = (
    Severity.INFO,
    Severity.LOW,
    Severity.MEDIUM,
    Severity.HIGH,
    Severity.CRITICAL,
)

# (action, category, default severity, description). Role, permission and
# SSO changes are at least HIGH; SSO configuration is CRITICAL because it
# decides who can sign in at all.
_ROWS: tuple[tuple[str, str, Severity, str], ...] = (
    ("auth.login.succeeded", "authentication", _I, "A user signed in."),
    ("auth.login.failed", "authentication", _M, "A sign-in attempt failed."),
    ("auth.logout", "authentication", _I, "A user signed out."),
    ("auth.password.changed", "authentication", _M, "A password was changed or reset."),
    ("auth.mfa.enabled", "authentication", _L, "Multi-factor authentication was enabled."),
    ("auth.mfa.disabled", "authentication", _H, "Multi-factor authentication was disabled."),
    ("auth.api_token.created", "authentication", _M, "An API token was created."),
    ("auth.api_token.revoked", "authentication", _L, "An API token was revoked."),
    ("user.created", "user_management", _L, "A user account was created."),
    ("user.deleted", "user_management", _H, "A user account was deleted."),
    ("user.suspended", "user_management", _M, "A user account was suspended."),
    ("role.assigned", "access_control", _H, "A role was assigned to a user."),
    ("role.revoked", "access_control", _H, "A role was taken from a user."),
    ("role.created", "access_control", _H, "A role was created."),
    ("role.updated", "access_control", _H, "A role's definition changed."),
    ("role.deleted", "access_control", _H, "A role was deleted."),
    ("permission.updated", "access_control", _H, "Permissions were changed."),
    ("authz.denied", "access_control", _M, "An action was refused for lack of permission."),
    ("sso.config.updated", "sso", _C, "Single sign-on configuration changed."),
    ("sso.group.member_added", "sso", _H, "A user was added to an SSO group."),
    ("sso.group.member_removed", "sso", _H, "A user was removed from an SSO group."),
    ("sso.group_mapping.updated", "sso", _H, "The mapping of SSO groups to roles changed."),
    ("ticket.viewed", "ticket", _I, "A ticket was opened for reading."),
    ("ticket.created", "ticket", _I, "A ticket was created."),
    ("ticket.field_changed", "ticket", _I, "Ticket fields changed (see changes)."),
    ("ticket.merged", "ticket", _L, "Tickets were merged."),
    ("ticket.deleted", "ticket", _M, "A ticket was deleted."),
    ("tag.deleted", "ticket", _L, "A tag was deleted from the helpdesk."),
    ("macro.applied", "macro", _I, "A macro was applied to a ticket."),
    ("macro.created", "macro", _L, "A macro was created."),
    ("macro.updated", "macro", _L, "A macro was changed."),
    ("macro.deleted", "macro", _L, "A macro was deleted."),
    ("export.requested", "export", _M, "A data export was requested."),
    ("export.downloaded", "export", _M, "A data export was downloaded."),
    ("api.request", "api", _I, "An API call was made."),
    ("workflow.created", "workflow", _L, "A workflow or automation was created."),
    ("workflow.updated", "workflow", _L, "A workflow or automation was changed."),
    ("workflow.deleted", "workflow", _M, "A workflow or automation was deleted."),
    ("audit_log.viewed", "audit_log", _I, "An audit log entry was viewed."),
    ("audit_log.searched", "audit_log", _I, "The audit log was searched."),
    ("audit_log.exported", "audit_log", _M, "Audit log entries were exported."),
    ("audit_log.purged", "audit_log", _H, "Entries past retention were purged."),
    ("audit_log.redacted", "audit_log", _H, "One entry's payload was redacted (reason kept)."),
    (
        "audit.retention.changed",
        "audit_log",
        _H,
        "The plan, retention period or legal hold changed.",
    ),
    ("actor.erased", "audit_log", _H, "A person was erased from the actor directory."),
    ("audit_stream.created", "audit_log", _M, "A SIEM stream destination was added."),
    ("audit_stream.paused", "audit_log", _H, "A SIEM stream was paused."),
    ("audit_stream.resumed", "audit_log", _L, "A SIEM stream was resumed."),
    ("audit_stream.deleted", "audit_log", _H, "A SIEM stream destination was removed."),
    ("support.impersonation.started", "support", _H, "Support staff began acting as a user."),
    ("support.impersonation.ended", "support", _L, "Support staff stopped acting as a user."),
)

CATALOGUE: Mapping[str, ActionInfo] = MappingProxyType(
    {
        action: ActionInfo(action, category, severity, is_security_action(action), description)
        for action, category, severity, description in _ROWS
    }
)


def classify(action: str) -> ActionInfo:
    """The catalogue entry of `action`, or a custom entry for any other
    well-formed action. Raises InvalidEvent(field="action") when malformed."""
    info = CATALOGUE.get(action)
    if info is not None:
        return info
    if not isinstance(action, str):
        raise InvalidEvent(
            f'expected a string such as "ticket.viewed", got {type(action).__name__}',
            field="action",
        )
    if len(action) > MAX_ACTION_LENGTH:
        raise InvalidEvent(
            f"is {len(action)} characters long; at most {MAX_ACTION_LENGTH} are allowed",
            field="action",
        )
    if ACTION_RE.fullmatch(action) is None:
        shown = action if len(action) <= 60 else action[:60] + "…"
        raise InvalidEvent(
            f"{shown!r} is not a well-formed action; expected dot-separated lower-case "
            f'segments of a-z, 0-9 and "_", at least two, e.g. "ticket.viewed"',
            field="action",
        )
    return ActionInfo(
        action=action,
        category=action.split(".", 1)[0],
        severity=Severity.INFO,
        security=is_security_action(action),
        description="Custom action.",
        custom=True,
    )


def catalogue_markdown() -> str:
    """The catalogue as the Markdown table kept in docs/events.md."""
    lines = [
        "| action | category | severity | security | description |",
        "|---|---|---|---|---|",
    ]
    for info in CATALOGUE.values():
        lines.append(
            f"| `{info.action}` | {info.category} | {info.severity.label} | "
            f"{'yes' if info.security else 'no'} | {info.description} |"
        )
    return "\n".join(lines) + "\n"
