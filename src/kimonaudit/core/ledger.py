"""Turning prepared events into entries: the one place that assigns
sequence numbers, server timestamps and leaf hashes.

Pure: the store calls `plan_append` while it holds the tenant's lock and
writes what it returns; the verifier calls `leaf_of_row` to rebuild a leaf
from stored columns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import NamedTuple

from kimonaudit.core.leaf import (
    leaf_from_template,
    leaf_head,
    leaf_head_start,
    leaf_middle,
    leaf_tail,
    leaf_template,
)
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
    leaves = [
        sha256(b"%b%b%d%b" % (head, middle[1 if p[4] else 0], seq, tail)).digest()
        for p, head, tail, seq in zip(new, heads, tails, range(seq0, seq0 + len(new)), strict=True)
    ]
    nodes = tree.extend(leaves)
    new_row = tuple.__new__
    # Prepared is (event_id, header..., payload_commitment); EntryRow puts
    # tenant and seq first and recorded_at after the id, leaf hash last.
    rows: list[EntryRow] = [
        new_row(EntryRow, (tenant_id, seq, p[0], recorded_at, *p[1:], lh))
        for p, lh, seq in zip(new, leaves, range(seq0, seq0 + len(new)), strict=True)
    ]
    receipts: list[Receipt] = [
        new_row(Receipt, (p[0], seq, recorded_at, lh))
        for p, lh, seq in zip(new, leaves, range(seq0, seq0 + len(new)), strict=True)
    ]
    if retried:
        receipts = _with_retries(receipts, retried, len(events))
    new_state = TreeState(
        tenant_id,
        tree,
        recorded_at if rows else state.last_recorded_at,
        state.purged,
    )
    return AppendPlan(tenant_id, rows, nodes, [], new_state, receipts)


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
