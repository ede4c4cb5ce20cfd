"""Redaction of one entry's payload on a legal request (issue 8).

The payload (context, changes, metadata, occurred_at) and its salt are
deleted; the header stays, and so does the leaf's `payload_commitment`, so
the tree, every proof and every checkpoint are untouched. Without the salt
the deleted payload cannot be guessed back from its commitment. The reason
is kept beside the entry, and the redaction is appended to the log as
`audit_log.redacted` (naming the seq and the reason, never the payload)
before the payload goes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from kimonaudit.errors import InvalidInput
from kimonaudit.store.retention import retention_store

if TYPE_CHECKING:
    from kimonaudit.service import AuditLog

MAX_REASON = 500


def check_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("say why the entry is redacted (a reason is required)", "reason")
    if len(reason) > MAX_REASON or any(ord(c) < 32 for c in reason):
        raise InvalidInput(f"a reason is at most {MAX_REASON} printable characters", "reason")
    return reason


def redact(
    log: AuditLog,
    tenant_id: str,
    seq: int,
    reason: str,
    *,
    actor: Mapping[str, str] | None = None,
) -> bool:
    """Redact entry `seq`; False (and nothing appended) if it already was."""
    from kimonaudit.service import SYSTEM_ACTOR

    why = check_reason(reason)
    row = log.get_entry(tenant_id, seq)  # NotFound for a purged or unknown seq
    if row.payload is None and row.salt is None:
        return False
    if row.action == "audit_log.redacted":
        raise InvalidInput("the record of a redaction cannot itself be redacted", "seq")
    log.append(
        tenant_id,
        [
            {
                # A fixed id: a retried redaction appends one entry, not two.
                "id": f"redaction-{tenant_id}-{seq}",
                "action": "audit_log.redacted",
                "actor": dict(actor or SYSTEM_ACTOR),
                "target": {"type": "entry", "id": str(seq)},
                "metadata": {"seq": seq, "event_id": row.event_id, "reason": why},
            }
        ],
    )
    store = retention_store(log.store)
    store.add_redaction(tenant_id, seq, why, log.now_us())
    log.store.redact(tenant_id, seq)
    return True
