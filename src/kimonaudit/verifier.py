"""Verification of one tenant's log in the database.

Recomputes every leaf from its stored columns, the tree from the leaves,
and checks the result against every signed checkpoint (and optionally one
saved outside the database). Reports the first bad sequence number.

Large logs are scanned by worker processes, each recomputing the leaf
hashes of one stretch of sequence numbers, while this process folds the
hashes into the tree in order: leaf recomputation is the expensive part and
parallelises; the tree is cheap and must be sequential.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field

from kimonaudit.core.leaf import PAYLOAD_COMMITMENT_PREFIX
from kimonaudit.core.ledger import leaf_of_row
from kimonaudit.core.merkle import LEAF_PREFIX, CompactRange
from kimonaudit.core.note import Checkpoint, Verifier, open_checkpoint
from kimonaudit.errors import VerificationError
from kimonaudit.results import Problem, VerifyReport
from kimonaudit.store.base import Store

Progress = Callable[[int, int], None]  # (entries checked, entries expected)
_MAX_PROBLEMS = 100
CHUNK = 50_000  # entries per worker task
PARALLEL_FROM = 200_000  # below this, worker start-up costs more than it saves


@dataclass
class Chunk:
    """What a scan of seq in [start, end) found. `hashes[i]` is the
    recomputed leaf hash of the i-th row present (in `seqs[i]`)."""

    start: int
    end: int | None
    seqs: list[int] = field(default_factory=list)
    hashes: list[bytes] = field(default_factory=list)
    present: int = 0
    redacted: int = 0
    problems: list[Problem] = field(default_factory=list)
    tampered: int = 0


def scan(store: Store, tenant_id: str, start: int, end: int | None) -> Chunk:
    """Recompute the leaves of seq in [start, end) and check each row alone."""
    out = Chunk(start, end)
    sha = hashlib.sha256
    add_seq = out.seqs.append
    add_hash = out.hashes.append
    for row in store.iter_entries(tenant_id, start, end):
        seq = row.seq
        payload, salt = row.payload, row.salt
        if payload is None and salt is None:
            out.redacted += 1
        elif payload is None or salt is None:
            out.tampered += 1
            out.problems.append(
                Problem(seq, "tampered", f"entry {seq}: payload or salt removed by hand")
            )
        elif sha(PAYLOAD_COMMITMENT_PREFIX + salt + payload).digest() != row.payload_commitment:
            out.tampered += 1
            out.problems.append(
                Problem(seq, "tampered", f"entry {seq}: payload does not match its commitment")
            )
        else:
            out.present += 1
        lh = sha(LEAF_PREFIX + leaf_of_row(row)).digest()
        if lh != row.leaf_hash:
            out.tampered += 1
            out.problems.append(
                Problem(seq, "tampered", f"entry {seq}: stored fields do not match its leaf hash")
            )
        add_seq(seq)
        add_hash(lh)
    return out


def _scan_in_worker(url: str, tenant_id: str, start: int, end: int | None) -> Chunk:
    from kimonaudit.store import open_store

    store = open_store(url)
    try:
        return scan(store, tenant_id, start, end)
    finally:
        store.close()


class _Findings:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.first_bad: int | None = None
        self.missing = 0
        self.tampered = 0

    def add(self, p: Problem) -> None:
        if p.seq is not None and (self.first_bad is None or p.seq < self.first_bad):
            self.first_bad = p.seq
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(p)


def _trusted_checkpoints(
    store: Store, tenant_id: str, origin: str, verifiers: Sequence[Verifier], f: _Findings
) -> dict[int, Checkpoint]:
    out: dict[int, Checkpoint] = {}
    for rec in store.list_checkpoints(tenant_id):
        try:
            cp, _ = open_checkpoint(rec.note, verifiers)
        except VerificationError as exc:
            f.add(Problem(None, "checkpoint", f"stored checkpoint {rec.size}: {exc.message}"))
            continue
        if cp.origin != origin or cp.size != rec.size or cp.root_hash != rec.root:
            f.add(
                Problem(None, "checkpoint", f"stored checkpoint {rec.size} does not match its row")
            )
            continue
        out[cp.size] = cp
    return out


def _chunks(
    store: Store, tenant_id: str, start: int, expected: int, workers: int
) -> Iterator[Chunk]:
    if workers <= 1 or expected - start < PARALLEL_FROM:
        yield scan(store, tenant_id, start, None)
        return
    bounds = list(range(start, expected, CHUNK))
    # spawn, not fork: the parent has a writer thread and open connections.
    pool: Executor = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
    try:
        futures = [
            pool.submit(
                _scan_in_worker,
                store.url,
                tenant_id,
                lo,
                None if i == len(bounds) - 1 else bounds[i + 1],
            )
            for i, lo in enumerate(bounds)
        ]
        for fut in futures:
            yield fut.result()
    finally:
        pool.shutdown(cancel_futures=True)


def verify_tenant(
    store: Store,
    tenant_id: str,
    origin: str,
    verifiers: Sequence[Verifier],
    against: str | None = None,
    progress: Progress | None = None,
    workers: int = 2,
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
            f.add(Problem(None, "checkpoint", f"saved checkpoint {cp.size} differs from stored"))
        checkpoints[cp.size] = cp

    state = store.tree_state(tenant_id)
    purged = state.purged
    if purged:
        raise VerificationError("verifying a purged log needs the retention module")
    expected = max([state.size, *checkpoints.keys()])
    tree = CompactRange()
    pending = sorted(s for s in checkpoints if s > 0)
    cp_i = 0
    next_seq = purged
    broken = False  # once leaves are missing, the recomputed tree means nothing
    present = redacted = checked = 0

    for chunk in _chunks(store, tenant_id, purged, expected, workers):
        present += chunk.present
        redacted += chunk.redacted
        f.tampered += chunk.tampered
        for p in chunk.problems:
            f.add(p)
        for seq, lh in zip(chunk.seqs, chunk.hashes, strict=True):
            checked += 1
            if seq != next_seq:
                f.missing += seq - next_seq
                f.add(Problem(next_seq, "missing", f"entries {next_seq}..{seq - 1} are missing"))
                broken = True
            if seq >= expected:
                f.tampered += 1
                f.add(Problem(seq, "forged", f"entry {seq} lies beyond the tree size {expected}"))
            next_seq = seq + 1
            if broken:
                continue
            tree.append(lh)
            while cp_i < len(pending) and pending[cp_i] <= tree.size:
                size = pending[cp_i]
                prev = pending[cp_i - 1] if cp_i else 0
                cp_i += 1
                if size != tree.size or tree.root() == checkpoints[size].root_hash:
                    continue
                if f.first_bad is not None and f.first_bad >= prev:
                    continue  # a row already named in this stretch accounts for it
                f.tampered += 1
                f.add(
                    Problem(
                        prev,
                        "tampered",
                        f"entries {prev}..{size - 1} do not match the signed checkpoint at "
                        f"size {size} (rows were altered and their leaf hashes recomputed)",
                    )
                )
        if progress is not None:
            progress(checked, expected - purged)

    if next_seq < expected:
        f.missing += expected - next_seq
        f.add(
            Problem(
                next_seq,
                "missing",
                f"entries {next_seq}..{expected - 1} are missing (the log was truncated)",
            )
        )
    elif not broken and tree.size == state.size and tree.root() != state.tree.root():
        f.add(Problem(None, "state", "the stored tree state does not match the entries"))
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
