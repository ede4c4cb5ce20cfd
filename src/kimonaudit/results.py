"""What the facade returns: frozen values with a JSON form.

Hashes are standard base64 in JSON, as in checkpoints and C2SP notes.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from kimonaudit.core.timefmt import format_ts


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    plan: str
    created_at: int
    retention_months: int
    legal_hold: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "plan": self.plan,
            "created_at": format_ts(self.created_at),
            "retention_months": self.retention_months,
            "legal_hold": self.legal_hold,
        }


@dataclass(frozen=True)
class SignedCheckpoint:
    tenant_id: str
    origin: str
    size: int
    root: bytes
    note: str  # the signed note text, exactly as issued
    issued_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "origin": self.origin,
            "tree_size": self.size,
            "root": b64(self.root),
            "issued_at": format_ts(self.issued_at),
            "note": self.note,
        }


@dataclass(frozen=True)
class InclusionProof:
    index: int
    tree_size: int
    leaf: bytes
    leaf_hash: bytes
    root: bytes
    proof: tuple[bytes, ...]
    checkpoint: str  # the signed note committing to (tree_size, root)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "tree_size": self.tree_size,
            "leaf": b64(self.leaf),
            "leaf_hash": b64(self.leaf_hash),
            "root": b64(self.root),
            "proof": [b64(h) for h in self.proof],
            "checkpoint": self.checkpoint,
        }


@dataclass(frozen=True)
class ConsistencyProof:
    old_size: int
    new_size: int
    old_root: bytes
    new_root: bytes
    proof: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "old_size": self.old_size,
            "new_size": self.new_size,
            "old_root": b64(self.old_root),
            "new_root": b64(self.new_root),
            "proof": [b64(h) for h in self.proof],
        }


@dataclass(frozen=True)
class Problem:
    seq: int | None
    kind: str  # missing | tampered | inserted | reordered | checkpoint | state
    message: str


# Each class of damaged entries as sorted, disjoint inclusive ranges of seq.
SeqRanges = tuple[tuple[int, int], ...]
ENTRY_CLASSES = ("tampered", "inserted", "reordered", "missing")
MAX_LISTED = 100  # problems, ranges and checkpoints listed in a report


@dataclass(frozen=True)
class CheckpointFailure:
    """A stored (or given) checkpoint the entries no longer match, and why."""

    size: int
    reason: str


@dataclass(frozen=True)
class VerifyReport:
    tenant_id: str
    ok: bool
    tree_size: int
    checked: int
    present: int
    redacted: int
    purged: int
    missing: int
    tampered: int
    checkpoints_checked: int
    first_bad_seq: int | None
    problems: tuple[Problem, ...] = field(default=())
    inserted: int = 0
    reordered: int = 0
    # class -> ranges (at most MAX_LISTED; `ranges_omitted` counts the rest)
    entries: dict[str, SeqRanges] = field(default_factory=dict)
    ranges_omitted: dict[str, int] = field(default_factory=dict)
    checkpoints_failed: tuple[CheckpointFailure, ...] = ()
    checkpoints_failed_omitted: int = 0
    checkpoints_unchecked: int = 0  # not reached: an entry before their size is missing
    problems_omitted: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "ok": self.ok,
            "tree_size": self.tree_size,
            "checked": self.checked,
            "present": self.present,
            "redacted": self.redacted,
            "purged": self.purged,
            "missing": self.missing,
            "tampered": self.tampered,
            "inserted": self.inserted,
            "reordered": self.reordered,
            "entries": {
                kind: {
                    "ranges": [list(r) for r in self.entries.get(kind, ())],
                    "more_ranges": self.ranges_omitted.get(kind, 0),
                }
                for kind in ENTRY_CLASSES
            },
            "checkpoints_checked": self.checkpoints_checked,
            "checkpoints_failed": [
                {"size": c.size, "reason": c.reason} for c in self.checkpoints_failed
            ],
            "more_checkpoints_failed": self.checkpoints_failed_omitted,
            "checkpoints_unchecked": self.checkpoints_unchecked,
            "first_bad_seq": self.first_bad_seq,
            "problems": [
                {"seq": p.seq, "kind": p.kind, "message": p.message} for p in self.problems
            ],
            "more_problems": self.problems_omitted,
        }
