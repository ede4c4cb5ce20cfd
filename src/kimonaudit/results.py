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

    def lines(self, max_problems: int = 20) -> list[str]:
        """The report as text: a summary line, the entries and checkpoints
        found, then up to `max_problems` problems and how many more."""
        r = self
        if r.ok:
            entries = _plural(r.checked, "entry", "entries")
            checkpoints = _plural(r.checkpoints_checked, "checkpoint")
            purged = f", {r.purged:,} before them purged by policy" if r.purged else ""
            return [
                f"ok {r.tenant_id}: {entries} ({r.redacted:,} redacted{purged}), "
                f"{checkpoints} verified, tree size {r.tree_size:,}"
            ]
        failed = len(r.checkpoints_failed) + r.checkpoints_failed_omitted
        counts = [
            f"{n:,} {kind}"
            for kind, n in (
                ("tampered", r.tampered),
                ("inserted", r.inserted),
                ("reordered", r.reordered),
                ("missing", r.missing),
            )
            if n
        ]
        if failed:
            counts.append(f"{_plural(failed, 'checkpoint')} no longer match")
        first = "unknown" if r.first_bad_seq is None else str(r.first_bad_seq)
        found = ", ".join(counts) or "see below"
        lines = [f"FAILED {r.tenant_id}: first bad seq {first}; {found}"]
        for kind, listed in r.entries.items():
            if listed:
                text = ", ".join(f"{lo}" if lo == hi else f"{lo}..{hi}" for lo, hi in listed)
                more = r.ranges_omitted.get(kind, 0)
                lines.append(
                    f"  {kind} entries: {text}" + (f" (and {more} more ranges)" if more else "")
                )
        if r.checkpoints_checked:
            matched = r.checkpoints_checked - failed - r.checkpoints_unchecked
            line = f"  checkpoints: {matched:,} of {r.checkpoints_checked:,} match"
            if failed:
                sizes = ", ".join(str(c.size) for c in r.checkpoints_failed[:5])
                sizes += ", …" if failed > 5 else ""
                line += f"; {failed:,} no longer match (sizes {sizes})"
            if r.checkpoints_unchecked:
                line += f"; {r.checkpoints_unchecked:,} could not be checked"
            lines.append(line)
        for p in r.problems[:max_problems]:
            lines.append(f"  - {p.kind}: {p.message}")
        total = len(r.problems) + r.problems_omitted
        if total > max_problems:
            where = "--json lists 100" if total > 100 else "--json lists them all"
            lines.append(f"  … and {total - max_problems:,} more problems ({where})")
        return lines


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else many or word + 's'}"
