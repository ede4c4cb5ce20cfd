"""Verification of one tenant's log in the database.

The verifier names exactly what changed and nothing else. Every row is
checked alone (its payload against its commitment, its fields against its
stored leaf hash); a row whose fields no longer give its leaf hash is then
classed:

- reordered: its fields give its stored leaf hash under another seq (the
  row was moved or renumbered; the report says from where);
- inserted: no seq explains it, and the entry signed at its seq is found
  elsewhere (or its seq lies beyond every signed size);
- tampered: altered in place.

The original sequence of leaf hashes is then rebuilt (each entry at the seq
it was signed at, with its stored leaf hash) and checked against every
signed checkpoint. When the rows named account for all the damage, every
checkpoint matches, which confirms the report; an edit whose leaf hash was
recomputed does not show in its row, and is caught there instead: the
first checkpoint that no longer matches names the stretch since the last
one that does. Entries that are gone are missing; from the first one on,
the tree cannot be rebuilt and later checkpoints cannot be checked.

Large logs are scanned in stretches of sequence numbers by several workers
(threads where the store checks rows natively, as SQLite's C scanner does;
processes otherwise), while this process rebuilds the tree in order: leaf
recomputation is the expensive part and parallelises; the tree is cheap and
must be sequential.
"""

from __future__ import annotations

import bisect
import hashlib
import multiprocessing as mp
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field

from kimonaudit.core.leaf import PAYLOAD_COMMITMENT_PREFIX
from kimonaudit.core.ledger import RowLeaves, leaf_of_row
from kimonaudit.core.merkle import LEAF_PREFIX, CompactRange
from kimonaudit.core.note import Checkpoint, Verifier, open_checkpoint
from kimonaudit.core.records import EntryRow
from kimonaudit.errors import VerificationError
from kimonaudit.results import (
    MAX_LISTED,
    CheckpointFailure,
    Problem,
    SeqRanges,
    VerifyReport,
)
from kimonaudit.store.base import Store

Progress = Callable[[int, int], None]  # (entries checked, entries expected)
CHUNK = 50_000  # entries per worker task
PARALLEL_FROM = 200_000  # below this, worker start-up costs more than it saves
PARTNER_SEARCH = 500  # up to this many altered rows are tried under each other's seq
SHIFTS = (1, -1, 2, -2)  # seq offsets tried first: a row inserted or deleted before
_H = 32  # bytes per hash


def _leaf_hash(row: EntryRow) -> bytes:
    return hashlib.sha256(LEAF_PREFIX + leaf_of_row(row)).digest()


@dataclass
class Chunk:
    """What a scan of seq in [start, end) found. Rows are numbered by their
    index in `seqs` (the rows present, in seq order); `hashes` holds their
    stored leaf hashes, 32 bytes each."""

    start: int
    end: int | None
    seqs: array[int] = field(default_factory=lambda: array("q"))
    hashes: bytearray = field(default_factory=bytearray)
    present: int = 0
    redacted: int = 0
    payload_bad: dict[int, str] = field(default_factory=dict)  # index -> what is wrong
    altered: dict[int, bytes] = field(default_factory=dict)  # index -> recomputed leaf hash
    moved: dict[int, int] = field(default_factory=dict)  # index -> seq it was signed at
    suspects: dict[int, EntryRow] = field(default_factory=dict)  # altered rows, capped

    def extend(self, other: Chunk) -> None:
        off = len(self.seqs)
        self.seqs.extend(other.seqs)
        self.hashes += other.hashes
        self.present += other.present
        self.redacted += other.redacted
        for mine, theirs in (
            (self.payload_bad, other.payload_bad),
            (self.altered, other.altered),
            (self.moved, other.moved),
            (self.suspects, other.suspects),
        ):
            mine.update({i + off: v for i, v in theirs.items()})  # type: ignore[attr-defined]


def scan(store: Store, tenant_id: str, start: int, end: int | None) -> Chunk:
    """Check each row of seq in [start, end) alone; keep its stored leaf hash.

    The store's native scanner, where it has one, checks the rows in C and
    lists those that fail (or that it cannot read); only those go through
    `_check` here, so both paths give the same chunk."""
    native = store.scan_ledger(tenant_id, start, end)
    if native is None:
        return _scan_rows(store, tenant_id, start, end)
    out = Chunk(start, end)
    out.seqs.frombytes(native.seqs)
    out.hashes += native.hashes
    out.present, out.redacted = native.present, native.redacted
    leaf_hash = RowLeaves(tenant_id).leaf_hash
    shift = 0
    odd = native.odd
    k = 0
    while k < len(odd):
        # Odd rows come in runs (everything after an inserted row is
        # shifted): one read per run of consecutive seqs.
        first = k
        while k + 1 < len(odd) and out.seqs[odd[k + 1]] == out.seqs[odd[k]] + 1:
            k += 1
        lo, hi = out.seqs[odd[first]], out.seqs[odd[k]] + 1
        run = odd[first : k + 1]
        done = 0
        for i, row in zip(run, store.iter_entries(tenant_id, lo, hi), strict=False):
            if row.seq != out.seqs[i] or bytes(row.leaf_hash) != out.hashes[i * _H : (i + 1) * _H]:
                break
            shift = _check(out, i, row, leaf_hash, shift)
            done += 1
        if done != len(run):
            # Changed since the native read (a purge, or rows being edited
            # right now): the Python scan reads the whole range again.
            return _scan_rows(store, tenant_id, start, end)
        k += 1
    return out


def _scan_rows(store: Store, tenant_id: str, start: int, end: int | None) -> Chunk:
    out = Chunk(start, end)
    leaf_hash = RowLeaves(tenant_id).leaf_hash
    shift = 0
    for row in store.iter_entries(tenant_id, start, end):
        i = len(out.seqs)
        out.seqs.append(row.seq)
        out.hashes += bytes(row.leaf_hash)
        shift = _check(out, i, row, leaf_hash, shift)
    return out


def _check(
    out: Chunk, i: int, row: EntryRow, leaf_hash: Callable[[EntryRow], bytes], last_shift: int
) -> int:
    """Row `i`'s own checks: its payload against its commitment, then its
    fields against its stored leaf hash, trying the nearby seqs a moved row
    may have been signed at (`last_shift` first: rows after an insertion all
    move alike). Returns the shift that placed it, or `last_shift`."""
    payload, salt = row.payload, row.salt
    if payload is None and salt is None:
        out.redacted += 1
    elif payload is None or salt is None:
        out.payload_bad[i] = "payload or salt removed by hand"
    elif not _commits(salt, payload, row.payload_commitment):
        out.payload_bad[i] = "payload does not match its commitment"
    else:
        out.present += 1
    stored = bytes(row.leaf_hash)
    try:
        lh = leaf_hash(row)
    except (TypeError, ValueError, IndexError, AttributeError):
        # A column holds a value of a type or range the writer never stores
        # (a text severity, a blob id): no leaf can come from it.
        out.altered[i] = _UNREADABLE
        return last_shift
    if lh == stored:
        return last_shift
    for shift in (last_shift, *SHIFTS) if last_shift else SHIFTS:
        q = row.seq - shift
        if q >= 0 and _leaf_hash(row._replace(seq=q)) == stored:
            out.moved[i] = q
            return shift
    out.altered[i] = lh
    if len(out.suspects) < PARTNER_SEARCH:
        out.suspects[i] = row
    return last_shift


# The recomputed leaf hash recorded for a row whose fields give no leaf.
_UNREADABLE = bytes(_H)


def _commits(salt: bytes, payload: bytes, commitment: bytes) -> bool:
    try:
        digest = hashlib.sha256(PAYLOAD_COMMITMENT_PREFIX + salt + payload).digest()
    except TypeError:  # a payload or salt stored as text
        return False
    return digest == commitment


def _scan_in_worker(url: str, tenant_id: str, start: int, end: int | None) -> Chunk:
    from kimonaudit.store import open_store

    options = {"indexer": "off"} if url.startswith("sqlite:") else {}
    store = open_store(url, **options)
    try:
        return scan(store, tenant_id, start, end)
    finally:
        store.close()


def _trusted_checkpoints(
    store: Store, tenant_id: str, origin: str, verifiers: Sequence[Verifier], notes: list[Problem]
) -> dict[int, Checkpoint]:
    out: dict[int, Checkpoint] = {}
    for rec in store.list_checkpoints(tenant_id):
        try:
            cp, _ = open_checkpoint(rec.note, verifiers)
        except VerificationError as exc:
            notes.append(
                Problem(None, "checkpoint", f"stored checkpoint {rec.size}: {exc.message}")
            )
            continue
        if cp.origin != origin or cp.size != rec.size or cp.root_hash != rec.root:
            notes.append(
                Problem(None, "checkpoint", f"stored checkpoint {rec.size} does not match its row")
            )
            continue
        out[cp.size] = cp
    return out


def _chunks(
    store: Store, tenant_id: str, start: int, expected: int, workers: int
) -> Iterator[Chunk]:
    # A native scanner releases the GIL, so threads share its work with no
    # start-up cost; the Python scan needs processes, worth it only when large.
    native = store.scans_natively()
    if workers <= 1 or expected - start < (2 * CHUNK if native else PARALLEL_FROM):
        yield scan(store, tenant_id, start, None)
        return
    bounds = list(range(start, expected, CHUNK))
    ends = [*bounds[1:], None]  # the last chunk also takes rows past `expected`
    if native:
        pool: Executor = ThreadPoolExecutor(max_workers=workers)
        futures = [
            pool.submit(scan, store, tenant_id, lo, hi) for lo, hi in zip(bounds, ends, strict=True)
        ]
    else:
        # spawn, not fork: the parent has a writer thread and open connections.
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
        futures = [
            pool.submit(_scan_in_worker, store.url, tenant_id, lo, hi)
            for lo, hi in zip(bounds, ends, strict=True)
        ]
    try:
        for fut in futures:
            yield fut.result()
    finally:
        pool.shutdown(cancel_futures=True)


def ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted seqs as inclusive (first, last) runs."""
    out: list[tuple[int, int]] = []
    for s in sorted(seqs):
        if out and out[-1][1] == s - 1:
            out[-1] = (out[-1][0], s)
        elif not out or out[-1][1] != s:
            out.append((s, s))
    return out


def span(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}..{hi}"


def _partner_search(rows: Chunk) -> None:
    """Altered rows tried under each other's seq: finds rows swapped far apart."""
    if not rows.suspects or len(rows.altered) > PARTNER_SEARCH:
        return
    seqs = rows.seqs
    candidates = sorted({seqs[i] for i in rows.altered})
    for i, row in rows.suspects.items():
        stored = bytes(rows.hashes[i * _H : (i + 1) * _H])
        for q in candidates:
            if q != row.seq and _leaf_hash(row._replace(seq=q)) == stored:
                rows.moved[i] = q
                del rows.altered[i]
                break


@dataclass
class _Classes:
    """Which row holds which signed entry."""

    moved_to: dict[int, int]  # signed seq -> index of the row that holds it elsewhere
    inserted: dict[int, str]  # index -> why
    tampered: set[int]  # indices altered in place (fields or payload)
    skip: set[int]  # indices whose row is not the entry signed at its seq


def _classify(rows: Chunk, expected: int, live: int) -> _Classes:
    """`live` is the tree size read after the scan: intact rows below it
    were appended while we read (a log verified while it is served) and are
    left for the next run, not called inserted."""
    seqs = rows.seqs
    n = len(seqs)

    def at_home(q: int) -> bool:  # the entry signed at q is in its own row
        j = bisect.bisect_left(seqs, q)
        return j < n and seqs[j] == q and j not in rows.moved and j not in rows.altered

    moved_to: dict[int, int] = {}
    inserted: dict[int, str] = {}
    for i, q in sorted(rows.moved.items()):
        if at_home(q) or q in moved_to:
            inserted[i] = f"seq {seqs[i]} holds a copy of entry {q} (inserted)"
        else:
            moved_to[q] = i
    tampered: set[int] = set()
    for i in rows.altered:
        p = seqs[i]
        if p >= expected:
            inserted[i] = f"seq {p} lies beyond the signed tree size {expected} (inserted)"
        elif p in moved_to:
            inserted[i] = f"seq {p} holds an entry that was never signed there (inserted)"
        else:
            tampered.add(i)
    for i, seq in enumerate(seqs) if expected <= (seqs[-1] if n else -1) else ():
        if seq >= live and i not in inserted and i not in rows.moved:
            inserted[i] = f"seq {seq} lies beyond the signed tree size {expected} (inserted)"
    tampered.update(i for i in rows.payload_bad if i not in inserted)
    return _Classes(moved_to, inserted, tampered, set(rows.moved) | set(inserted))


def stretch_reason(lo: int, size: int) -> str:
    """Why checkpoint `size` fails when the one at `lo` still matches."""
    if lo == size - 1:
        return (
            f"entry {lo} (signed after checkpoint {lo}, which matches) no longer gives its "
            "root: it was altered and its leaf hash recomputed"
        )
    return (
        f"entries {lo}..{size - 1} (signed after checkpoint {lo}, which matches) no longer "
        "give its root: one or more of them were altered and their leaf hashes recomputed"
    )


@dataclass
class _TreeCheck:
    """The original leaf hashes folded in seq order and compared with every
    checkpoint. Tree `a` takes each entry's stored leaf hash, tree `b` (kept
    only while they differ) the hash recomputed from its fields: when `b`
    matches a checkpoint that `a` does not, the rows in between kept their
    fields and had their stored leaf hash rewritten."""

    checkpoints: dict[int, Checkpoint]
    pending: list[int]
    a: CompactRange = field(default_factory=CompactRange)
    b: CompactRange | None = None
    stretch: list[int] = field(default_factory=list)  # indices where a and b differ
    last_good: int = 0
    diverged: tuple[int, int] | None = None  # (last good size, first failed size)
    failures: list[CheckpointFailure] = field(default_factory=list)
    rewritten: set[int] = field(default_factory=set)  # indices whose leaf hash was rewritten
    compared: int = 0

    def append(self, i: int, ha: bytes, hb: bytes) -> None:
        if hb != ha:
            if self.b is None:
                self.b = self.a.copy()
            self.stretch.append(i)
        self.a.append(ha)
        if self.b is not None:
            self.b.append(hb)
        pending = self.pending
        while pending and pending[0] == self.a.size:
            self._check(pending.pop(0))

    def _check(self, size: int) -> None:
        root = self.checkpoints[size].root_hash
        self.compared += 1
        if self.diverged is not None:
            lo, first = self.diverged
            self.failures.append(
                CheckpointFailure(
                    size, f"covers {span(lo, first - 1)}, the stretch checkpoint {first} rejects"
                )
            )
            return
        if self.a.root() == root:
            pass
        elif self.b is not None and self.b.root() == root:
            self.rewritten.update(self.stretch)
            self.a = self.b
        else:
            lo = self.last_good
            self.diverged = (lo, size)
            self.failures.append(CheckpointFailure(size, stretch_reason(lo, size)))
            return
        self.b = None
        self.stretch = []
        self.last_good = size


def _in_place(rows: Chunk, first: int) -> bool:
    """Whether every row is at the seq it was signed at with its own leaf
    hash, from `first` on with no gap: the tree then takes them in order."""
    seqs = rows.seqs
    return (
        not rows.altered
        and not rows.moved
        and (not seqs or (seqs[0] == first and seqs[-1] - first == len(seqs) - 1))
    )


def _fold_intact(tree: _TreeCheck, hashes: bytearray, count: int) -> None:
    """The common case, fast: every row in place with its own leaf hash.
    The leaves between two checkpoints go into the tree in one
    `CompactRange.extend` (the same tree as appending them one by one)."""
    data = bytes(hashes[: count * _H])
    pending = tree.pending
    done = 0
    while done < count:
        size = tree.a.size
        take = count - done
        if pending and size < pending[0] <= size + take:
            take = pending[0] - size
        tree.a.extend([data[i : i + _H] for i in range(done * _H, (done + take) * _H, _H)])
        done += take
        if pending and tree.a.size == pending[0]:
            tree._check(pending.pop(0))


def verify_tenant(
    store: Store,
    tenant_id: str,
    origin: str,
    verifiers: Sequence[Verifier],
    against: str | None = None,
    progress: Progress | None = None,
    workers: int = 2,
) -> VerifyReport:
    notes: list[Problem] = []
    checkpoints = _trusted_checkpoints(store, tenant_id, origin, verifiers, notes)
    if against is not None:
        cp, _ = open_checkpoint(against, verifiers)  # raises: a bad file is a usage error
        if cp.origin != origin:
            raise VerificationError(
                f"the checkpoint given is for {cp.origin!r}, not this tenant ({origin!r})"
            )
        known = checkpoints.get(cp.size)
        if known is not None and known.root_hash != cp.root_hash:
            notes.append(
                Problem(None, "checkpoint", f"saved checkpoint {cp.size} differs from stored")
            )
        checkpoints[cp.size] = cp

    state = store.tree_state(tenant_id)
    purged = state.purged
    start = CompactRange()
    if purged:
        # Retention removed entries [0, purged): rebuild from the compact range
        # it kept, and check older checkpoints through its kept proofs.
        from kimonaudit.purge import check_purged_prefix

        start = check_purged_prefix(store, tenant_id, checkpoints, notes.append)
    expected = max([state.size, *checkpoints.keys()])

    def new_tree() -> _TreeCheck:
        tree = _TreeCheck(checkpoints, sorted(s for s in checkpoints if s > purged))
        tree.a = start.copy()
        tree.last_good = purged
        return tree

    # Rebuild the signed sequence of leaf hashes and check the checkpoints.
    # In the common case every row is in place with its own leaf hash: then
    # each chunk is folded into the tree as it arrives, on this thread while
    # the workers scan the next ones. Once a chunk is not, folding stops
    # here and the tree is rebuilt below from the classified rows.
    tree = new_tree()
    folded = 0
    rows = Chunk(purged, None)
    for chunk in _chunks(store, tenant_id, purged, expected, workers):
        if folded == len(rows.seqs) and _in_place(chunk, purged + folded):
            take = min(len(chunk.seqs), expected - purged - folded)
            _fold_intact(tree, chunk.hashes, take)
            folded += take
        rows.extend(chunk)
        if progress is not None:
            progress(len(rows.seqs), expected - purged)
    _partner_search(rows)
    live = max(expected, store.tree_state(tenant_id).size)
    cls = _classify(rows, expected, live)

    seqs, hashes = rows.seqs, rows.hashes
    n = len(seqs)
    missing: list[int] = []
    if _in_place(rows, purged):
        _fold_intact(tree, hashes[folded * _H :], min(n, expected - purged) - folded)
        missing = list(range(purged + n, expected))
    else:
        tree = new_tree()
        ptr = 0
        for pos in range(purged, expected):
            i = cls.moved_to.get(pos)
            if i is None:
                while ptr < n and seqs[ptr] < pos:
                    ptr += 1
                if ptr < n and seqs[ptr] == pos and ptr not in cls.skip:
                    i = ptr
            if i is None:
                missing.append(pos)
                continue
            if missing:
                continue  # a leaf is gone: the tree past it cannot be rebuilt
            ha = bytes(hashes[i * _H : (i + 1) * _H])
            tree.append(i, ha, rows.altered.get(i, ha))

    problems = _problems(rows, cls, tree, missing, expected, n)
    problems.extend(notes)
    unchecked = list(tree.pending)
    if missing and unchecked:
        problems.append(
            Problem(
                None,
                "unchecked",
                f"{_sizes(unchecked)} could not be checked: entry {missing[0]} is missing",
            )
        )
    intact = not missing and tree.diverged is None and tree.a.size == state.size
    if intact and tree.a.root() != state.tree.root():
        lo = tree.last_good
        problems.append(
            Problem(
                lo if lo < state.size else None,
                "state",
                f"the stored tree state does not match the entries: entries "
                f"{lo}..{state.size - 1} (after the last checkpoint) were altered with their "
                "leaf hashes recomputed, or the tree state itself was",
            )
        )
    problems.sort(key=lambda p: (p.seq is None, p.seq or 0))
    first_bad = min((p.seq for p in problems if p.seq is not None), default=None)

    sets = {
        "tampered": ranges(seqs[i] for i in cls.tampered),
        "inserted": ranges(seqs[i] for i in cls.inserted),
        "reordered": ranges(seqs[i] for i in cls.moved_to.values()),
        "missing": ranges(missing),
    }
    return VerifyReport(
        tenant_id=tenant_id,
        ok=not problems,
        tree_size=state.size,
        checked=n,
        present=rows.present,
        redacted=rows.redacted,
        purged=purged,
        missing=len(missing),
        tampered=len(cls.tampered),
        checkpoints_checked=len(checkpoints),
        first_bad_seq=first_bad,
        problems=tuple(problems[:MAX_LISTED]),
        problems_omitted=max(0, len(problems) - MAX_LISTED),
        inserted=len(cls.inserted),
        reordered=len(cls.moved_to),
        entries={k: _capped(v) for k, v in sets.items()},
        ranges_omitted={k: max(0, len(v) - MAX_LISTED) for k, v in sets.items()},
        checkpoints_failed=tuple(tree.failures[:MAX_LISTED]),
        checkpoints_failed_omitted=max(0, len(tree.failures) - MAX_LISTED),
        checkpoints_unchecked=len(unchecked) if missing else 0,
    )


def _capped(rs: list[tuple[int, int]]) -> SeqRanges:
    return tuple(rs[:MAX_LISTED])


def _sizes(sizes: list[int], noun: str = "checkpoint") -> str:
    """'1 checkpoint (size 20)', '2 checkpoints (sizes 10 and 20)', ...
    '40 checkpoints (sizes 10 to 900)'."""
    if len(sizes) == 1:
        return f"1 {noun} (size {sizes[0]})"
    if len(sizes) == 2:
        return f"2 {noun}s (sizes {sizes[0]} and {sizes[1]})"
    return f"{len(sizes)} {noun}s (sizes {sizes[0]} to {sizes[-1]})"


def _problems(
    rows: Chunk, cls: _Classes, tree: _TreeCheck, missing: list[int], expected: int, n: int
) -> list[Problem]:
    seqs = rows.seqs
    out: list[Problem] = []
    for lo, hi in ranges(missing):
        truncated = hi == expected - 1 and (n == 0 or seqs[-1] < lo)
        why = " (the log was truncated)" if truncated else ""
        what = f"entry {lo} is" if lo == hi else f"entries {lo}..{hi} are"
        out.append(Problem(lo, "missing", f"{what} missing{why}"))
    for i in sorted(cls.tampered):
        reasons = []
        if i in rows.payload_bad:
            reasons.append(rows.payload_bad[i])
        if i in rows.altered:
            reasons.append(
                "its stored leaf hash was rewritten (its fields match the signed checkpoint)"
                if i in tree.rewritten
                else "stored fields do not match its leaf hash"
            )
        out.append(Problem(seqs[i], "tampered", f"entry {seqs[i]}: {'; '.join(reasons)}"))
    for i, why in sorted(cls.inserted.items()):
        out.append(Problem(seqs[i], "inserted", why))
    # Rows moved by the same offset one after another are one renumbering.
    runs: list[list[int]] = []  # [first index, last index, offset]
    for q, i in sorted(cls.moved_to.items(), key=lambda qi: qi[1]):
        off = seqs[i] - q
        if runs and runs[-1][1] == i - 1 and runs[-1][2] == off and seqs[i - 1] == seqs[i] - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i, off])
    for first, last, off in runs:
        lo, hi = seqs[first], seqs[last]
        if lo == hi:
            msg = f"seq {lo} holds the entry signed at seq {lo - off} (reordered)"
        else:
            msg = (
                f"seq {lo}..{hi} hold the entries signed at seq {lo - off}..{hi - off} (renumbered)"
            )
        out.append(Problem(lo, "reordered", msg))
    if tree.failures and tree.diverged is not None:
        lo, size = tree.diverged
        first = tree.failures[0]
        out.append(Problem(lo, "checkpoint", f"checkpoint {first.size}: {first.reason}"))
        later = tree.failures[1:]
        if later:
            sizes = _sizes([c.size for c in later], "later checkpoint")
            out.append(
                Problem(
                    None,
                    "checkpoint",
                    f"{sizes} also differ, as they must: they cover "
                    + (f"entry {lo}" if lo == size - 1 else f"entries {lo}..{size - 1}"),
                )
            )
    return out
