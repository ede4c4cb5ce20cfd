"""Turning prepared events into entries: the one place that assigns
sequence numbers, server timestamps and leaf hashes.

Pure: the store calls `plan_append` while it holds the tenant's lock and
writes what it returns; the verifier calls `leaf_of_row` to rebuild a leaf
from stored columns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from kimonaudit.core.leaf import (
    _escape,
    leaf_after_id,
    leaf_from_template,
    leaf_head,
    leaf_head_start,
    leaf_middle,
    leaf_tail,
    leaf_tail_around,
    leaf_template,
)
from kimonaudit.core.merkle import CompactRange
from kimonaudit.core.records import AppendPlan, EntryRow, Prepared, Receipt, TreeState
from kimonaudit.errors import Conflict

_sha256 = hashlib.sha256


def leaf_of(tenant_id: str, seq: int, recorded_at: int, p: Prepared | EntryRow) -> bytes:
    """The canonical leaf bytes of one entry (the Merkle tree hashes these)."""
    # The per-(tenant, time) template: consecutive entries share both (one
    # batch, one recorded_at), which is what verify walks through.
    return leaf_from_template(
        leaf_template(tenant_id, recorded_at),
        seq,
        p.event_id,
        p.action,
        p.category,
        p.severity,
        p.security,
        p.actor_hash,
        p.actor_type,
        p.target_type,
        p.target_id,
        p.outcome,
        p.payload_commitment,
    )


def leaf_of_row(row: EntryRow) -> bytes:
    return leaf_of(row.tenant_id, row.seq, row.recorded_at, row)


class LeafParts(NamedTuple):
    """Per event, the leaf hash input around recorded_at, security and seq
    (kimonaudit.core.leaf): everything of a leaf that needs no lock."""

    heads: list[bytes]
    tails: list[bytes]


def leaf_parts(tenant_id: str, events: Sequence[Prepared]) -> LeafParts:
    """The LeafParts of `events` (the service computes them as it prepares
    a batch, with caches; this is the plain version)."""
    heads = [
        leaf_head(
            leaf_head_start(p.action, p.actor_hash, p.actor_type, p.category),
            p.event_id,
            p.outcome,
            p.payload_commitment,
        )
        for p in events
    ]
    tails = [leaf_tail(p.severity, p.target_id, p.target_type, tenant_id) for p in events]
    return LeafParts(heads, tails)


class RowLeaves:
    """Leaf hashes of stored rows of one tenant, as `leaf_of_row` gives them
    (LEAF_PREFIX + leaf, hashed), for scans over many rows: the parts of a
    leaf that rows share (actor and action, target and severity, time) are
    built once and cached; each row then costs one bytes format and one
    hash. Any value a row holds, tampered or not, gives the same bytes as
    `leaf_of_row` (the parts are the template's, pinned by a property test).
    """

    __slots__ = ("_afters", "_middles", "_starts", "_tails", "tenant_id")

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self._starts: dict[tuple[object, ...], bytes] = {}
        self._tails: dict[tuple[object, ...], tuple[bytes, bytes]] = {}
        self._afters: dict[object, bytes] = {}
        self._middles: dict[int, tuple[bytes, bytes]] = {}

    def leaf_hash(self, row: EntryRow) -> bytes:
        key = (row.action, row.actor_hash, row.actor_type, row.category)
        start = self._starts.get(key)
        if start is None:
            start = leaf_head_start(row.action, row.actor_hash, row.actor_type, row.category)
            if len(self._starts) > _CACHE_LIMIT:
                self._starts.clear()
            self._starts[key] = start
        severity = row.severity
        tail_key = (severity, row.target_type)
        # Only exact ints are cached: 1.0 or True would find 1's entry.
        exact = type(severity) is int
        around = self._tails.get(tail_key) if exact else None
        if around is None:
            around = leaf_tail_around(severity, row.target_type, self.tenant_id)
            if len(self._tails) > _CACHE_LIMIT:
                self._tails.clear()
            if exact:
                self._tails[tail_key] = around
        after = self._afters.get(row.outcome)
        if after is None:
            after = leaf_after_id(row.outcome)
            if len(self._afters) > _CACHE_LIMIT:
                self._afters.clear()
            self._afters[row.outcome] = after
        recorded_at = row.recorded_at
        exact = type(recorded_at) is int
        middle = self._middles.get(recorded_at) if exact else None
        if middle is None:
            middle = leaf_middle(recorded_at)
            if len(self._middles) > _CACHE_LIMIT:
                self._middles.clear()
            if exact:
                self._middles[recorded_at] = middle
        eid = row.event_id
        tid = row.target_id
        return _sha256(
            b'%b%b%b%b","recorded_at":"%b%d%b%b%b'
            % (
                start,
                b"null" if eid is None else _escape(eid).encode("utf-8", "surrogatepass"),
                after,
                row.payload_commitment.hex().encode("ascii"),
                middle[1 if row.security else 0],
                row.seq,
                around[0],
                b"null" if tid is None else _escape(tid).encode("utf-8", "surrogatepass"),
                around[1],
            )
        ).digest()


_CACHE_LIMIT = 10_000

# The leaf hashes of a batch in C where the optional extension was built:
# the same bytes hashed, without a Python step per entry under the write
# lock. tests/test_native.py pins the two together.
_leaf_hashes: Callable[..., list[bytes]] | None
_plan_rows: Callable[..., tuple[list[EntryRow], list[Receipt]]]
try:
    from kimonaudit._native import leaf_hashes as _leaf_hashes
    from kimonaudit._native import plan_rows as _plan_rows
except ImportError:
    _leaf_hashes = None


def same_content(p: Prepared, row: EntryRow | Prepared) -> bool:
    """Whether a retried event says what the stored entry with its id says.

    The salt, seq and time are the server's, so they are not compared; a
    redacted entry has no payload left to compare, only its header.
    """
    return (
        p.action == row.action
        and p.severity == row.severity
        and p.security == row.security
        and p.actor_hash == row.actor_hash
        and p.actor_type == row.actor_type
        and p.target_type == row.target_type
        and p.target_id == row.target_id
        and p.outcome == row.outcome
        and (row.payload is None or (p.payload == row.payload and p.occurred_at == row.occurred_at))
    )


def plan_append(
    state: TreeState,
    events: Sequence[Prepared],
    existing: Mapping[str, EntryRow],
    now_us: int,
    parts: LeafParts | None = None,
) -> AppendPlan:
    """Plan the append of `events` after `state`.

    Events whose id is in `existing` were appended before (a retry): with
    the same content they get their original receipt and append nothing;
    with other content the whole batch is refused (Conflict), since
    swallowing it would let anyone who can guess an id suppress an event.
    An id repeated inside the batch is a retry of its first occurrence.
    Every new entry of one batch shares one `recorded_at`, which never goes
    below the tenant's previous one, so the log stays ordered even if the
    clock steps back. `parts` are the events' LeafParts, if already known.
    """
    tree = state.tree.copy()
    tenant_id = state.tenant_id
    recorded_at = max(now_us, state.last_recorded_at)
    heads, tails = parts if parts is not None else leaf_parts(tenant_id, events)
    if existing or len({p[0] for p in events}) != len(events):
        fresh, retried = _retries(events, existing)
        new: Sequence[Prepared] = [events[n] for n in fresh]
        heads = [heads[n] for n in fresh]
        tails = [tails[n] for n in fresh]
    else:
        # The common case (server-made ids, or client ids seen for the
        # first time): every event is a new entry, in order.
        new, retried = events, []
    seq0 = tree.size
    middle = leaf_middle(recorded_at)
    sha256 = _sha256
    # Prepared[4] is `security`; Prepared[0] the event id. Indexing instead
    # of attribute access: this loop runs once per entry under the lock.
    if _leaf_hashes is not None and type(new) is list and type(heads) is list:
        leaves = _leaf_hashes(new, heads, list(tails), middle, seq0)
        nodes = tree.extend(leaves)
        rows, receipts = _plan_rows(new, leaves, seq0, tenant_id, recorded_at, EntryRow, Receipt)
        return _plan(state, tree, recorded_at, rows, nodes, receipts, retried, len(events))
    leaves = [
        sha256(b"%b%b%d%b" % (head, middle[1 if p[4] else 0], seq, tail)).digest()
        for p, head, tail, seq in zip(new, heads, tails, range(seq0, seq0 + len(new)), strict=True)
    ]
    nodes = tree.extend(leaves)
    new_row = tuple.__new__
    # Prepared is (event_id, header..., payload_commitment); EntryRow puts
    # tenant and seq first and recorded_at after the id, leaf hash last.
    rows = [
        new_row(EntryRow, (tenant_id, seq, p[0], recorded_at, *p[1:], lh))
        for p, lh, seq in zip(new, leaves, range(seq0, seq0 + len(new)), strict=True)
    ]
    receipts = [
        new_row(Receipt, (p[0], seq, recorded_at, lh))
        for p, lh, seq in zip(new, leaves, range(seq0, seq0 + len(new)), strict=True)
    ]
    return _plan(state, tree, recorded_at, rows, nodes, receipts, retried, len(events))


def _plan(
    state: TreeState,
    tree: CompactRange,
    recorded_at: int,
    rows: list[EntryRow],
    nodes: list[tuple[int, int, bytes]],
    receipts: list[Receipt],
    retried: list[tuple[int, EntryRow | int]],
    total: int,
) -> AppendPlan:
    if retried:
        receipts = _with_retries(receipts, retried, total)
    new_state = TreeState(
        state.tenant_id,
        tree,
        recorded_at if rows else state.last_recorded_at,
        state.purged,
    )
    return AppendPlan(state.tenant_id, rows, nodes, [], new_state, receipts)


def _retries(
    events: Sequence[Prepared], existing: Mapping[str, EntryRow]
) -> tuple[list[int], list[tuple[int, EntryRow | int]]]:
    """(positions of the new events, [(position, earlier entry)] of the
    retries), the earlier entry being a stored row or the index (among the
    new events) of the same id's first occurrence in this batch. Raises
    Conflict for a retry with other content."""
    seen: dict[str, EntryRow | int] = dict(existing)
    fresh: list[int] = []
    retried: list[tuple[int, EntryRow | int]] = []
    for n, p in enumerate(events):
        earlier = seen.get(p.event_id)
        if earlier is None:
            seen[p.event_id] = len(fresh)
            fresh.append(n)
            continue
        first = events[fresh[earlier]] if isinstance(earlier, int) else earlier
        if not same_content(p, first):
            raise Conflict(
                f"event id {p.event_id!r} was already used for an event with other "
                "content; a retry must repeat the event unchanged, a new event needs "
                "a new id",
                field=f"events[{n}].id",
            )
        retried.append((n, earlier))
    return fresh, retried


def _with_retries(
    receipts: list[Receipt], retried: list[tuple[int, EntryRow | int]], total: int
) -> list[Receipt]:
    """All receipts in event order: the new entries' and the retries'."""
    out: list[Receipt] = []
    made = iter(receipts)
    retry = dict(retried)
    for n in range(total):
        earlier = retry.get(n)
        if earlier is None:
            out.append(next(made))
        elif isinstance(earlier, int):
            out.append(receipts[earlier])
        else:
            out.append(
                Receipt(earlier.event_id, earlier.seq, earlier.recorded_at, earlier.leaf_hash)
            )
    return out
