"""Writing verifiable archives (issue 8): one self-contained file with the
entries, their leaves and payloads, a signed checkpoint, their inclusion
proofs (or the whole retained range and the compact range of any purged
prefix), the verifier keys and a format version, sealed by a signed
manifest. `kimonaudit.core.bundle.verify_bundle` checks it offline;
docs/bundles.md describes the format.

This is how records outlive a plan's retention: archive before the purge,
verify years later with nothing but the file and the verifier key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kimonaudit.core import bundle as fmt
from kimonaudit.core.ledger import leaf_of_row
from kimonaudit.core.merkle import CompactRange
from kimonaudit.core.records import EntryRow
from kimonaudit.core.timefmt import format_ts
from kimonaudit.treeread import TreeReader

if TYPE_CHECKING:
    from kimonaudit.service import AuditLog


@dataclass(frozen=True)
class BundleInfo:
    tenant_id: str
    query: str
    mode: str
    tree_size: int
    entries: int
    bytes: int


def prefix_range(log: AuditLog, tenant_id: str) -> CompactRange:
    """The compact range of the tenant's purged prefix (empty if none)."""
    purged = log.store.tree_state(tenant_id).purged
    if not purged:
        return CompactRange()
    from kimonaudit.purge import stored_prefix

    return stored_prefix(log, tenant_id)


def build(log: AuditLog, tenant_id: str, query: str = "") -> tuple[bytes, BundleInfo]:
    """The bundle of the tenant's entries matching `query` (all when empty)
    under a checkpoint cut now."""
    log.get_tenant(tenant_id)
    cp = log.checkpoint(tenant_id)
    query = query.strip()
    reader = TreeReader(log.store, tenant_id)
    if query:
        from kimonaudit.search import compile_query

        compiled = compile_query(log, tenant_id, query)
        query = compiled.text
        rows: Iterable[EntryRow] = log.store.iter_search(  # type: ignore[attr-defined]
            tenant_id, compiled.sql, -1, cp.size
        )
        mode, prefix = "proofs", CompactRange()
    else:
        prefix = prefix_range(log, tenant_id)
        rows = log.store.iter_entries(tenant_id, prefix.size, cp.size)
        mode = "range"
    entries: list[dict[str, Any]] = []
    for row in rows:
        e: dict[str, Any] = {
            "seq": row.seq,
            "leaf": fmt.b64(leaf_of_row(row)),
            "payload": None if row.payload is None else fmt.b64(row.payload),
            "salt": None if row.salt is None else fmt.b64(row.salt),
        }
        if mode == "proofs":
            e["proof"] = [fmt.b64(h) for h in reader.inclusion_proof(row.seq, cp.size)]
        if row.payload is None:
            why = log.redaction(tenant_id, row.seq)
            if why is not None:
                e["redaction"] = {"reason": why[0], "redacted_at": format_ts(why[1])}
        entries.append(e)
    body: dict[str, Any] = {
        "format": fmt.FORMAT,
        "version": fmt.VERSION,
        "origin": cp.origin,
        "tenant_id": tenant_id,
        "query": query,
        "created_at": format_ts(log.now_us()),
        "verifier_keys": log.keys.verifier_keys(),
        "checkpoint": cp.note,
        "mode": mode,
        "prefix": {"size": prefix.size, "hashes": [fmt.b64(h) for h in prefix.hashes]},
        "entries": entries,
    }
    data = fmt.seal(body, log.keys.active)
    return data, BundleInfo(tenant_id, query, mode, cp.size, len(entries), len(data))
