"""Turning prepared events into entries: the one place that assigns
sequence numbers, server timestamps and leaf hashes.

Pure: the store calls `plan_append` while it holds the tenant's lock and
writes what it returns; the verifier calls `leaf_of_row` to rebuild a leaf
from stored columns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from kimonaudit.core.leaf import leaf_from_template, leaf_template
from kimonaudit.core.merkle import LEAF_PREFIX, STORED_LEVEL_STRIDE
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


def same_content(p: Prepared, row: EntryRow) -> bool:
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
) -> AppendPlan:
    """Plan the append of `events` after `state`.

    Events whose id is in `existing` were appended before (a retry): with
    the same content they get their original receipt and append nothing;
    with other content the whole batch is refused (Conflict), since
    swallowing it would let anyone who can guess an id suppress an event.
    Every new entry of one batch shares one `recorded_at`, which never goes
    below the tenant's previous one, so the log stays ordered even if the
    clock steps back.
    """
    tree = state.tree.copy()
    tenant_id = state.tenant_id
    recorded_at = max(now_us, state.last_recorded_at)
    rows: list[EntryRow] = []
    nodes: list[tuple[int, int, bytes]] = []
    receipts: list[Receipt] = []
    seen = dict(existing)  # grows: an id repeated inside the batch is a retry too
    tmpl = leaf_template(tenant_id, recorded_at)
    make_row = EntryRow._make
    for n, p in enumerate(events):
        earlier = seen.get(p.event_id)
        if earlier is not None:
            if not same_content(p, earlier):
                raise Conflict(
                    f"event id {p.event_id!r} was already used for an event with other "
                    "content; a retry must repeat the event unchanged, a new event needs "
                    "a new id",
                    field=f"events[{n}].id",
                )
            receipts.append(
                Receipt(earlier.event_id, earlier.seq, earlier.recorded_at, earlier.leaf_hash)
            )
            continue
        seq = tree.size
        lh = _sha256(
            LEAF_PREFIX
            + leaf_from_template(
                tmpl, seq, p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[14]
            )
        ).digest()
        for node in tree.append(lh):
            if node[0] % STORED_LEVEL_STRIDE == 0:
                nodes.append(node)
        # Prepared is (event_id, header..., payload_commitment); EntryRow puts
        # tenant and seq first and recorded_at after the id, leaf hash last.
        rows.append(make_row((tenant_id, seq, p[0], recorded_at, *p[1:], lh)))
        seen[p.event_id] = rows[-1]
        receipts.append(Receipt(p.event_id, seq, recorded_at, lh))
    new_state = TreeState(
        tenant_id,
        tree,
        recorded_at if rows else state.last_recorded_at,
        state.purged,
    )
    return AppendPlan(tenant_id, rows, nodes, [], new_state, receipts)
