"""Typed helpers that build catalogue events, and field diffs with
sensitive values replaced by keyed hashes.

    from kimonaudit.integrations.helpdesk import Actor, ticket_field_changed

    ann = Actor("agent_42", name="Ann Lee", email="ann@acme.test")
    event = ticket_field_changed(ann, 10482, before, after, key=settings.AUDIT_FIELD_KEY)
    if event is not None:
        audit.record(event)          # AuditClient, or AuditLog.append(tenant, [event])

Every helper returns a plain dict in the input shape of docs/events.md.
Keyword arguments shared by all of them: `ip`, `user_agent`, `request_id`,
`context` (more context keys), `occurred_at` (aware datetime or RFC 3339
text), `metadata` and `outcome`.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TypedDict, Unpack
from uuid import UUID

from kimonaudit.core.pseudonym import field_hash

Event = dict[str, Any]

# Matched (case-insensitively, as shell patterns) against a field's full
# dotted name and its last part: contact details, free text and secrets.
DEFAULT_SENSITIVE: frozenset[str] = frozenset(
    {
        "*email*",
        "*phone*",
        "*mobile*",
        "*fax*",
        "*address*",
        "requester_name",
        "subject",
        "description",
        "*body*",
        "*comment*",
        "*note*",
        "*message*",
        "*text*",
        "*password*",
        "*secret*",
        "*token*",
    }
)
REDACTED = "[redacted]"
MIN_KEY_BYTES = 16
_MAX_SAFE_INTEGER = 2**53 - 1


@dataclass(frozen=True)
class Actor:
    """Who did it. Only `id` reaches the log (as a keyed hash); `name` and
    `email` go to the erasable actor directory."""

    id: str
    type: str = "agent"
    name: str | None = None
    email: str | None = None

    def to_json(self) -> dict[str, str]:
        out = {"id": str(self.id), "type": self.type}
        if self.name:
            out["name"] = self.name
        if self.email:
            out["email"] = self.email
        return out


class Common(TypedDict, total=False):
    ip: str | None
    user_agent: str | None
    request_id: str | None
    context: Mapping[str, Any] | None
    occurred_at: datetime | str | None
    metadata: Mapping[str, Any] | None
    outcome: str | None


_COMMON_KEYS = frozenset(Common.__annotations__)


# --- diffs -------------------------------------------------------------------


def ticket_changes(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    sensitive: Iterable[str] = DEFAULT_SENSITIVE,
    key: bytes | None = None,
) -> list[dict[str, Any]]:
    """The `changes` list: one {"field", "from", "to"} per changed field,
    sorted by field. Nested mappings (custom fields) are compared field by
    field under dotted names; a field missing on one side counts as None.

    Values of `sensitive` fields (names or shell patterns) become
    ``field_hash(key, value)``: equal values still hash equal, so the change
    stays visible, but the value is not stored. `key` is the integrating
    app's secret (at least 16 bytes); without one they become "[redacted]".
    """
    if key is not None and len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the field-hash key must be at least {MIN_KEY_BYTES} random bytes")
    patterns = tuple(p.lower() for p in sensitive)
    old, new = _flatten(before), _flatten(after)
    out: list[dict[str, Any]] = []
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        if _same(a, b):
            continue
        if _is_sensitive(name, patterns):
            a, b = _mask(a, key), _mask(b, key)
        else:
            a, b = _jsonable(a), _jsonable(b)
        out.append({"field": name, "from": a, "to": b})
    return out


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in values.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out


def _same(a: Any, b: Any) -> bool:
    # 1 == True and 0 == 0.0 in Python; a type change is a change.
    return type(a) is type(b) and a == b


def _is_sensitive(name: str, patterns: tuple[str, ...]) -> bool:
    full = name.lower()
    last = full.rsplit(".", 1)[-1]
    return any(fnmatch.fnmatchcase(full, p) or fnmatch.fnmatchcase(last, p) for p in patterns)


def _mask(value: Any, key: bytes | None) -> str | None:
    if value is None:
        return None
    if key is None:
        return REDACTED
    if isinstance(value, str):
        text = value
    elif isinstance(value, Mapping | list | tuple | set | frozenset):
        text = json.dumps(_jsonable(value), sort_keys=True, ensure_ascii=False)
    else:
        text = str(_jsonable(value))
    return field_hash(key, text)


def _jsonable(value: Any) -> Any:
    """A value the server accepts: JSON types, integers within 2**53,
    finite floats; dates as ISO text; anything else as its text."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if abs(value) <= _MAX_SAFE_INTEGER else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if isinstance(value, datetime):
        return _timestamp(value) if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((_jsonable(v) for v in value), key=repr)
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def _timestamp(when: datetime | str) -> str:
    if isinstance(when, str):
        return when
    if when.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware")
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


# --- the generic builder -----------------------------------------------------


def event(
    action: str,
    actor: Actor | None = None,
    *,
    target: tuple[str, str | int] | None = None,
    changes: list[dict[str, Any]] | None = None,
    **common: Unpack[Common],
) -> Event:
    """Any event, catalogue or custom: the helpers below are built on it."""
    unknown = common.keys() - _COMMON_KEYS
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    ev: Event = {"action": action}
    if actor is not None:
        ev["actor"] = actor.to_json()
    if target is not None:
        ev["target"] = {"type": target[0], "id": str(target[1])}
    context = dict(common.get("context") or {})
    for k in ("ip", "user_agent", "request_id"):
        value = common.get(k)
        if value is not None:
            context[k] = value
    if context:
        ev["context"] = _jsonable(context)
    if changes:
        ev["changes"] = changes
    outcome = common.get("outcome")
    if outcome is not None:
        ev["outcome"] = outcome
    occurred = common.get("occurred_at")
    if occurred is not None:
        ev["occurred_at"] = _timestamp(occurred)
    metadata = {k: v for k, v in (common.get("metadata") or {}).items() if v is not None}
    if metadata:
        ev["metadata"] = _jsonable(metadata)
    return ev


def _with_metadata(common: Common, **extra: Any) -> Common:
    merged = {k: v for k, v in extra.items() if v is not None}
    merged.update(common.get("metadata") or {})
    return {**common, "metadata": merged}


# --- authentication ----------------------------------------------------------


def login_succeeded(actor: Actor, *, method: str | None = None, **common: Unpack[Common]) -> Event:
    """auth.login.succeeded; `method` such as "password", "sso", "magic_link"."""
    return event("auth.login.succeeded", actor, **_with_metadata(common, method=method))


def login_failed(
    actor: Actor | str,
    *,
    reason: str | None = None,
    method: str | None = None,
    **common: Unpack[Common],
) -> Event:
    """auth.login.failed. `actor` may be the login name that was tried (it
    is stored only as a keyed hash); `reason` such as "bad_password"."""
    who = actor if isinstance(actor, Actor) else Actor(actor, type="user")
    common = _with_metadata(common, reason=reason, method=method)
    common.setdefault("outcome", "failure")
    return event("auth.login.failed", who, **common)


# --- tickets and macros --------------------------------------------------------


def ticket_viewed(actor: Actor, ticket_id: str | int, **common: Unpack[Common]) -> Event:
    return event("ticket.viewed", actor, target=("ticket", ticket_id), **common)


def ticket_field_changed(
    actor: Actor,
    ticket_id: str | int,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    sensitive: Iterable[str] = DEFAULT_SENSITIVE,
    key: bytes | None = None,
    **common: Unpack[Common],
) -> Event | None:
    """ticket.field_changed with the diff of `before` and `after`; None when
    nothing changed, so there is nothing to record."""
    changes = ticket_changes(before, after, sensitive, key)
    if not changes:
        return None
    return event(
        "ticket.field_changed", actor, target=("ticket", ticket_id), changes=changes, **common
    )


def macro_applied(
    actor: Actor,
    ticket_id: str | int,
    macro_id: str | int,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    *,
    macro_name: str | None = None,
    sensitive: Iterable[str] = DEFAULT_SENSITIVE,
    key: bytes | None = None,
    **common: Unpack[Common],
) -> Event:
    """macro.applied on a ticket, with the fields the macro changed. The
    target is the ticket (so the ticket's history shows it); the macro is
    in metadata."""
    changes = ticket_changes(before or {}, after or {}, sensitive, key)
    common = _with_metadata(common, macro_id=str(macro_id), macro_name=macro_name)
    return event("macro.applied", actor, target=("ticket", ticket_id), changes=changes, **common)


# --- exports and API calls ---------------------------------------------------------


def export_requested(
    actor: Actor,
    *,
    export_id: str | int | None = None,
    format: str | None = None,
    query: str | None = None,
    rows: int | None = None,
    **common: Unpack[Common],
) -> Event:
    """export.requested: what was exported (`query`), how (`format`) and
    how much (`rows`, when known)."""
    target = ("export", export_id) if export_id is not None else None
    common = _with_metadata(common, format=format, query=query, rows=rows)
    return event("export.requested", actor, target=target, **common)


def export_downloaded(actor: Actor, export_id: str | int, **common: Unpack[Common]) -> Event:
    return event("export.downloaded", actor, target=("export", export_id), **common)


def outcome_for_status(status: int) -> str:
    if status < 400:
        return "success"
    if status in (401, 403):
        return "denied"
    return "failure" if status < 500 else "error"


def api_call(
    actor: Actor | None,
    method: str,
    route: str,
    status: int,
    *,
    duration_ms: float | None = None,
    **common: Unpack[Common],
) -> Event:
    """api.request: `route` is the route template ("/tickets/{ticket_id}"),
    never the raw path, so ids and secrets in URLs stay out of the log."""
    method = method.upper()
    context: dict[str, Any] = {"method": method, "route": route, "status": status}
    if duration_ms is not None:
        context["duration_ms"] = round(duration_ms, 3)
    context.update(common.get("context") or {})
    common = {**common, "context": context}
    common.setdefault("outcome", outcome_for_status(status))
    return event("api.request", actor, target=("route", f"{method} {route}"[:200]), **common)


# --- workflows -----------------------------------------------------------------


def workflow_created(
    actor: Actor,
    workflow_id: str | int,
    definition: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    **common: Unpack[Common],
) -> Event:
    """workflow.created; the definition's fields appear as changes from None."""
    changes = ticket_changes({}, definition or {}, sensitive=())
    common = _with_metadata(common, name=name)
    return event(
        "workflow.created", actor, target=("workflow", workflow_id), changes=changes, **common
    )


def workflow_updated(
    actor: Actor,
    workflow_id: str | int,
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    *,
    name: str | None = None,
    sensitive: Iterable[str] = (),
    key: bytes | None = None,
    **common: Unpack[Common],
) -> Event:
    changes = ticket_changes(before, after, sensitive, key)
    common = _with_metadata(common, name=name)
    return event(
        "workflow.updated", actor, target=("workflow", workflow_id), changes=changes, **common
    )


def workflow_deleted(
    actor: Actor, workflow_id: str | int, *, name: str | None = None, **common: Unpack[Common]
) -> Event:
    common = _with_metadata(common, name=name)
    return event("workflow.deleted", actor, target=("workflow", workflow_id), **common)


# --- roles, permissions, SSO groups ------------------------------------------------


def role_assigned(actor: Actor, user_id: str | int, role: str, **common: Unpack[Common]) -> Event:
    """role.assigned: `user_id` got `role`."""
    change = [{"field": "role", "from": None, "to": role}]
    common = _with_metadata(common, role=role)
    return event("role.assigned", actor, target=("user", user_id), changes=change, **common)


def role_revoked(actor: Actor, user_id: str | int, role: str, **common: Unpack[Common]) -> Event:
    change = [{"field": "role", "from": role, "to": None}]
    common = _with_metadata(common, role=role)
    return event("role.revoked", actor, target=("user", user_id), changes=change, **common)


def permission_updated(
    actor: Actor,
    role_id: str | int,
    before: Mapping[str, Any] | Iterable[str],
    after: Mapping[str, Any] | Iterable[str],
    *,
    target_type: str = "role",
    **common: Unpack[Common],
) -> Event:
    """permission.updated on a role (or another `target_type`). `before` and
    `after` are permission -> setting mappings, or collections of granted
    permission names (each change is then False -> True or True -> False)."""
    old, new = _grants(before), _grants(after)
    if not isinstance(before, Mapping) and not isinstance(after, Mapping):
        for name in old.keys() | new.keys():
            old.setdefault(name, False)
            new.setdefault(name, False)
    changes = ticket_changes(old, new, sensitive=())
    return event(
        "permission.updated", actor, target=(target_type, role_id), changes=changes, **common
    )


def _grants(value: Mapping[str, Any] | Iterable[str]) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    return dict.fromkeys(value, True)


def sso_group_member_added(
    actor: Actor,
    group: str,
    user_id: str | int,
    *,
    provider: str | None = None,
    **common: Unpack[Common],
) -> Event:
    """sso.group.member_added: `user_id` joined the identity provider's `group`."""
    change = [{"field": "sso_group", "from": None, "to": group}]
    common = _with_metadata(common, group=group, provider=provider)
    return event(
        "sso.group.member_added", actor, target=("user", user_id), changes=change, **common
    )


def sso_group_member_removed(
    actor: Actor,
    group: str,
    user_id: str | int,
    *,
    provider: str | None = None,
    **common: Unpack[Common],
) -> Event:
    change = [{"field": "sso_group", "from": group, "to": None}]
    common = _with_metadata(common, group=group, provider=provider)
    return event(
        "sso.group.member_removed", actor, target=("user", user_id), changes=change, **common
    )
