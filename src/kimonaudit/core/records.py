"""Plain records shared by the core, the stores and the service.

Rows are NamedTuples, not dataclasses: a store hands them straight to
``executemany``/COPY, and a million appends should not pay for attribute
dictionaries. Field order is the column order of the ``entries`` table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from kimonaudit.core.merkle import CompactRange


class Prepared(NamedTuple):
    """An event after validation and everything that needs no lock: the
    payload is encoded and committed, the actor pseudonymised."""

    event_id: str
    action: str
    category: str
    severity: int
    security: bool
    actor_hash: str | None
    actor_type: str | None
    target_type: str | None
    target_id: str | None
    outcome: str
    occurred_at: int | None
    ip: bytes | None
    payload: bytes
    salt: bytes
    payload_commitment: bytes


class EntryRow(NamedTuple):
    """One stored entry; `payload` and `salt` are None once redacted."""

    tenant_id: str
    seq: int
    event_id: str
    recorded_at: int
    action: str
    category: str
    severity: int
    security: bool
    actor_hash: str | None
    actor_type: str | None
    target_type: str | None
    target_id: str | None
    outcome: str
    occurred_at: int | None
    ip: bytes | None
    payload: bytes | None
    salt: bytes | None
    payload_commitment: bytes
    leaf_hash: bytes


ENTRY_COLUMNS: tuple[str, ...] = EntryRow._fields


class LedgerScan(NamedTuple):
    """What a native scan of a seq range found (`Store.scan_ledger`): every
    row's seq and stored leaf hash, and which rows failed a check (or could
    not be read natively) so the verifier checks them again in Python.
    `present` and `redacted` count the rows that passed."""

    seqs: bytes  # each row's seq as native int64, array("q") layout
    hashes: bytes  # stored leaf hashes, 32 bytes each, in row order
    odd: list[int]  # indexes into seqs
    present: int
    redacted: int


class Receipt(NamedTuple):
    """What a writer gets back once its entry is committed."""

    id: str
    seq: int
    recorded_at: int
    leaf_hash: bytes


class ActorRow(NamedTuple):
    actor_hash: str
    actor_id: str
    actor_type: str
    name: str | None
    email: str | None


@dataclass
class TreeState:
    """A tenant's tree as of its last commit. `purged` is the number of
    leading entries removed by retention (their rows are gone; the
    tree is not)."""

    tenant_id: str
    tree: CompactRange = field(default_factory=CompactRange)
    last_recorded_at: int = 0
    purged: int = 0

    @property
    def size(self) -> int:
        return self.tree.size


@dataclass
class AppendPlan:
    """Everything one append writes, computed under the tenant's lock."""

    tenant_id: str
    rows: list[EntryRow]
    nodes: list[tuple[int, int, bytes]]
    actors: list[ActorRow]
    state: TreeState
    receipts: list[Receipt]


@dataclass(frozen=True)
class TenantRecord:
    id: str
    name: str
    plan: str
    created_at: int
    retention_months: int
    legal_hold: bool = False


@dataclass(frozen=True)
class CheckpointRecord:
    tenant_id: str
    size: int
    root: bytes
    note: str
    issued_at: int
    key_id: int = 0


@dataclass(frozen=True)
class ActorRecord:
    actor_hash: str
    actor_id: str | None
    actor_type: str | None
    name: str | None
    email: str | None
    erased_at: int | None
