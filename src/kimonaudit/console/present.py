"""Entries as the console shows them: display values computed once, in
Python, so templates only print text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kimonaudit.core.catalogue import CATALOGUE, Severity, is_log_access
from kimonaudit.core.ipaddr import bytes_to_ip
from kimonaudit.core.records import ActorRecord, EntryRow
from kimonaudit.core.timefmt import format_ts

_SEVERITIES = tuple(Severity)
FAILURES = ("failure", "denied", "error")


@dataclass(frozen=True)
class ActorView:
    # known: in the directory; erased: GDPR erasure; unknown: no directory
    # row; none: the entry has no actor.
    status: str
    hash: str | None = None
    type: str | None = None
    id: str | None = None
    name: str | None = None
    email: str | None = None

    @property
    def label(self) -> str:
        if self.status == "known":
            return self.name or self.email or self.id or "?"
        if self.status == "erased":
            return "erased actor"
        if self.status == "unknown":
            return f"unknown actor {self.hash[:12] if self.hash else ''}"
        return "—"


@dataclass(frozen=True)
class EntryView:
    seq: int
    event_id: str
    recorded_at: int
    recorded_at_text: str
    action: str
    description: str
    category: str
    severity: str
    security: bool
    actor: ActorView
    target_type: str | None
    target_id: str | None
    outcome: str
    ip: str | None

    @property
    def failed(self) -> bool:
        return self.outcome in FAILURES

    @property
    def log_access(self) -> bool:
        """Someone reading this log: shown quietly, never as security
        (entries recorded before the rule keep their signed flag)."""
        return is_log_access(self.action)

    @property
    def highlighted(self) -> bool:
        """Shown with the security highlight."""
        return self.security and not self.log_access

    @property
    def target(self) -> str:
        if self.target_type is None:
            return ""
        return f"{self.target_type}:{self.target_id}"


def actor_view(row: EntryRow, record: ActorRecord | None) -> ActorView:
    if row.actor_hash is None:
        return ActorView("none")
    if record is None:
        return ActorView("unknown", row.actor_hash, row.actor_type)
    if record.erased_at is not None:
        return ActorView("erased", row.actor_hash, row.actor_type)
    return ActorView(
        "known", row.actor_hash, row.actor_type, record.actor_id, record.name, record.email
    )


def entry_view(row: EntryRow, record: ActorRecord | None) -> EntryView:
    info = CATALOGUE.get(row.action)
    return EntryView(
        row.seq,
        row.event_id,
        row.recorded_at,
        format_ts(row.recorded_at),
        row.action,
        info.description if info is not None else "Custom action.",
        row.category,
        _SEVERITIES[row.severity].label,
        bool(row.security),
        actor_view(row, record),
        row.target_type,
        row.target_id,
        row.outcome,
        bytes_to_ip(row.ip) if row.ip is not None else None,
    )


def entry_views(
    rows: list[EntryRow], resolve: Callable[[str], ActorRecord | None]
) -> list[EntryView]:
    """Views of `rows`, each distinct actor looked up once."""
    cache: dict[str, ActorRecord | None] = {}
    out = []
    for row in rows:
        rec = None
        if row.actor_hash is not None:
            if row.actor_hash not in cache:
                cache[row.actor_hash] = resolve(row.actor_hash)
            rec = cache[row.actor_hash]
        out.append(entry_view(row, rec))
    return out


def pairs(mapping: dict[str, Any]) -> list[tuple[str, Any]]:
    return sorted(mapping.items())
