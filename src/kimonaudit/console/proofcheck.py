"""The "verified" mark on an event's page, computed, not asserted.

An entry is shown as verified only when, in this order:
1. its stored columns rebuild the leaf whose hash is stored (nothing in the
   row was edited);
2. its payload, unless redacted, still matches the payload commitment in
   that leaf (the details shown are the ones committed to);
3. the newest checkpoint's signature verifies with the deployment's
   verifier keys and names this tenant's log;
4. the entry's inclusion proof leads from the leaf hash to that signed root
   (RFC 9162 section 2.1.3.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from kimonaudit.core.leaf import payload_commitment
from kimonaudit.core.ledger import leaf_of_row
from kimonaudit.core.merkle import leaf_hash, verify_inclusion
from kimonaudit.core.note import open_checkpoint
from kimonaudit.core.records import EntryRow
from kimonaudit.errors import AuditLogError
from kimonaudit.service import AuditLog


@dataclass(frozen=True)
class Mark:
    ok: bool
    message: str
    tree_size: int | None = None
    checkpoint_issued_at: int | None = None
    signed_by: tuple[str, ...] = ()


def check_entry(log: AuditLog, tenant_id: str, row: EntryRow) -> Mark:
    leaf = leaf_of_row(row)
    computed = leaf_hash(leaf)
    if computed != row.leaf_hash:
        return Mark(False, "the stored entry does not match its leaf hash: it was altered")
    if row.payload is not None and (
        row.salt is None or payload_commitment(row.salt, row.payload) != row.payload_commitment
    ):
        return Mark(False, "the entry's details do not match their commitment: they were altered")
    try:
        proof = log.prove_inclusion(tenant_id, row.seq)
        cp, note = open_checkpoint(proof.checkpoint, log.keys.verifiers)
        if cp.origin != log.origin(tenant_id):
            return Mark(False, f"the checkpoint is for another log ({cp.origin})")
        if cp.size != proof.tree_size or cp.root_hash != proof.root:
            return Mark(False, "the proof does not match the checkpoint it names")
        verify_inclusion(computed, row.seq, cp.size, proof.proof, cp.root_hash)
    except AuditLogError as exc:
        return Mark(False, exc.message)
    issued = log.store.get_checkpoint(tenant_id, cp.size)
    return Mark(
        True,
        f"included in the signed checkpoint of tree size {cp.size:,}",
        cp.size,
        issued.issued_at if issued is not None else None,
        note.verified_by,
    )
