"""Turning prepared events into entries: the one place that assigns
sequence numbers, server timestamps and leaf hashes.

Pure: the store calls `plan_append` while it holds the tenant's lock and
writes what it returns; the verifier calls `leaf_of_row` to rebuild a leaf
from stored columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kimonaudit.core.leaf import leaf_fields
from kimonaudit.core.merkle import is_stored_level, leaf_hash
from kimonaudit.core.records import AppendPlan, EntryRow, Prepared, Receipt, TreeState


def leaf_of(tenant_id: str, seq: int, recorded_at: int, p: Prepared | EntryRow) -> bytes:
    """The canonical leaf bytes of one entry (the Merkle tree hashes these)."""
    return leaf_fields(
        tenant_id,
        seq,
        recorded_at,
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


def plan_append(
    state: TreeState,
    events: Sequence[Prepared],
    existing: Mapping[str, Receipt],
    now_us: int,
) -> AppendPlan:
    """Plan the append of `events` after `state`.

    Events whose id is in `existing` were appended before (a retry): they get
    their original receipt and append nothing. Every new entry of one batch
    shares one `recorded_at`, which never goes below the tenant's previous
    one, so the log stays ordered even if the clock steps back.
    """
    tree = state.tree.copy()
    tenant_id = state.tenant_id
    recorded_at = max(now_us, state.last_recorded_at)
    rows: list[EntryRow] = []
    nodes: list[tuple[int, int, bytes]] = []
    receipts: list[Receipt] = []
    existing = dict(existing)  # grows: an id repeated inside the batch is a retry too
    for p in events:
        earlier = existing.get(p.event_id)
        if earlier is not None:
            receipts.append(earlier)
            continue
        seq = tree.size
        lh = leaf_hash(leaf_of(tenant_id, seq, recorded_at, p))
        for node in tree.append(lh):
            if is_stored_level(node[0]):
                nodes.append(node)
        rows.append(
            EntryRow(
                tenant_id,
                seq,
                p.event_id,
                recorded_at,
                p.action,
                p.category,
                p.severity,
                p.security,
                p.actor_hash,
                p.actor_type,
                p.target_type,
                p.target_id,
                p.outcome,
                p.occurred_at,
                p.ip,
                p.payload,
                p.salt,
                p.payload_commitment,
                lh,
                p.search_text,
            )
        )
        receipt = Receipt(p.event_id, seq, recorded_at, lh)
        existing[p.event_id] = receipt
        receipts.append(receipt)
    new_state = TreeState(
        tenant_id,
        tree,
        recorded_at if rows else state.last_recorded_at,
        state.purged,
    )
    return AppendPlan(tenant_id, rows, nodes, [], new_state, receipts)
