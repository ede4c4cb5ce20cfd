"""Offline-grade verification of one tenant's log in the database.

Recomputes every leaf from its stored columns, the tree from the leaves,
and checks the result against every signed checkpoint (and optionally one
saved outside the database). Reports the first bad sequence number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kimonaudit.core.leaf import payload_commitment
from kimonaudit.core.ledger import leaf_of_row
from kimonaudit.core.merkle import CompactRange, leaf_hash
from kimonaudit.core.note import Checkpoint, Verifier, open_checkpoint
from kimonaudit.errors import VerificationError
from kimonaudit.results import Problem, VerifyReport
from kimonaudit.store.base import Store

Progress = Callable[[int, int], None]  # (entries checked, entries expected)
_MAX_PROBLEMS = 100


class _Findings:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.first_bad: int | None = None
        self.missing = 0
        self.tampered = 0

    def add(self, seq: int | None, kind: str, message: str) -> None:
        if seq is not None and (self.first_bad is None or seq < self.first_bad):
            self.first_bad = seq
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(Problem(seq, kind, message))


def _trusted_checkpoints(
    store: Store, tenant_id: str, origin: str, verifiers: Sequence[Verifier], f: _Findings
) -> dict[int, Checkpoint]:
    out: dict[int, Checkpoint] = {}
    for rec in store.list_checkpoints(tenant_id):
        try:
            cp, _ = open_checkpoint(rec.note, verifiers)
        except VerificationError as exc:
            f.add(None, "checkpoint", f"stored checkpoint at size {rec.size}: {exc.message}")
            continue
        if cp.origin != origin or cp.size != rec.size or cp.root_hash != rec.root:
            f.add(None, "checkpoint", f"stored checkpoint at size {rec.size} does not match its row")
            continue
        out[cp.size] = cp
    return out


def verify_tenant(
    store: Store,
    tenant_id: str,
    origin: str,
    verifiers: Sequence[Verifier],
    against: str | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    f = _Findings()
    checkpoints = _trusted_checkpoints(store, tenant_id, origin, verifiers, f)
    if against is not None:
        cp, _ = open_checkpoint(against, verifiers)  # raises: a bad file is a usage error
        if cp.origin != origin:
            raise VerificationError(
                f"the checkpoint given is for {cp.origin!r}, not this tenant ({origin!r})"
            )
        known = checkpoints.get(cp.size)
        if known is not None and known.root_hash != cp.root_hash:
            f.add(None, "checkpoint", f"saved checkpoint at size {cp.size} differs from the stored one")
        checkpoints[cp.size] = cp

    state = store.tree_state(tenant_id)
    expected_size = max([state.size, *checkpoints.keys()])
    tree = CompactRange()
    purged = state.purged
    if purged:
        raise VerificationError("verifying a purged log needs the retention module")
    next_seq = purged
    present = redacted = checked = 0
    broken = False  # once leaves are missing the recomputed tree means nothing
    pending = sorted(s for s in checkpoints if s > 0)
    cp_i = 0

    def check_checkpoints() -> None:
        nonlocal cp_i
        while cp_i < len(pending) and pending[cp_i] <= tree.size:
            size = pending[cp_i]
            cp_i += 1
            prev = pending[cp_i - 2] if cp_i >= 2 else 0
            explained = f.first_bad is not None and f.first_bad >= prev
            if size == tree.size and not broken and tree.root() != checkpoints[size].root_hash:
                if explained:  # a row already named in this stretch accounts for it
                    continue
                f.tampered += 1
                f.add(
                    prev,
                    "tampered",
                    f"entries {prev}..{size - 1} do not match the signed checkpoint at size "
                    f"{size} (rows were altered and their leaf hashes recomputed)",
                )

    for row in store.iter_entries(tenant_id, purged):
        if row.seq != next_seq:
            gap = row.seq - next_seq
            f.missing += gap
            f.add(next_seq, "missing", f"entries {next_seq}..{row.seq - 1} are missing")
            broken = True
            next_seq = row.seq
        if row.seq >= state.size and row.seq >= expected_size:
            f.tampered += 1
            f.add(row.seq, "forged", f"entry {row.seq} lies beyond the tree size {state.size}")
        checked += 1
        if row.payload is None and row.salt is None:
            redacted += 1
        elif row.payload is None or row.salt is None:
            f.tampered += 1
            f.add(row.seq, "tampered", f"entry {row.seq}: payload or salt removed by hand")
        elif payload_commitment(row.salt, row.payload) != row.payload_commitment:
            f.tampered += 1
            f.add(row.seq, "tampered", f"entry {row.seq}: payload does not match its commitment")
        else:
            present += 1
        lh = leaf_hash(leaf_of_row(row))
        if lh != row.leaf_hash:
            f.tampered += 1
            f.add(row.seq, "tampered", f"entry {row.seq}: stored fields do not match its leaf hash")
        if not broken:
            tree.append(lh)
            check_checkpoints()
        next_seq = row.seq + 1
        if progress is not None and checked % 10_000 == 0:
            progress(checked, expected_size - purged)

    if next_seq < expected_size:
        f.missing += expected_size - next_seq
        f.add(
            next_seq,
            "missing",
            f"entries {next_seq}..{expected_size - 1} are missing (the log was truncated)",
        )
    elif not broken and tree.size == state.size and tree.root() != state.tree.root():
        f.add(None, "state", "the stored tree state does not match the entries")
    if progress is not None:
        progress(checked, expected_size - purged)
    return VerifyReport(
        tenant_id=tenant_id,
        ok=not f.problems,
        tree_size=state.size,
        checked=checked,
        present=present,
        redacted=redacted,
        purged=purged,
        missing=f.missing,
        tampered=f.tampered,
        checkpoints_checked=len(checkpoints),
        first_bad_seq=f.first_bad,
        problems=tuple(f.problems),
    )
