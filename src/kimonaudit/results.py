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
    kind: str  # missing | tampered | forged | checkpoint | state
    message: str


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
            "checkpoints_checked": self.checkpoints_checked,
            "first_bad_seq": self.first_bad_seq,
            "problems": [
                {"seq": p.seq, "kind": p.kind, "message": p.message} for p in self.problems
            ],
        }
