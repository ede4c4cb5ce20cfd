"""The Store protocol: everything the service needs from a database.

A store keeps rows; it never hashes, signs or formats. Every method takes a
tenant id and touches only that tenant's rows (the exceptions are the
tenant table itself and schema management).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from kimonaudit.core.records import (
    ActorRecord,
    ActorRow,
    AppendPlan,
    CheckpointRecord,
    EntryRow,
    Receipt,
    TenantRecord,
    TreeState,
)

# Called by the store's writer while it holds the tenant's lock: given the
# current tree state and the receipts of event ids already in the log,
# return what to write.
PlanBuilder = Callable[[TreeState, Mapping[str, Receipt]], AppendPlan]


class Store(Protocol):
    dialect: str  # "sqlite" or "postgres": the SQL flavour search compiles to
    url: str

    def close(self) -> None: ...

    # -- tenants -------------------------------------------------------
    def insert_tenant(self, tenant: TenantRecord) -> None: ...
    def get_tenant(self, tenant_id: str) -> TenantRecord | None: ...
    def list_tenants(self) -> list[TenantRecord]: ...
    def set_legal_hold(self, tenant_id: str, hold: bool) -> None: ...

    # -- appends -------------------------------------------------------
    def append(self, tenant_id: str, event_ids: Sequence[str], build: PlanBuilder) -> AppendPlan:
        """Atomically lock the tenant, read its state and the receipts of
        `event_ids` already present, write `build(...)`'s plan and commit.
        Returns only after the commit; concurrent calls may share one."""
        ...

    # -- entries and tree ----------------------------------------------
    def tree_state(self, tenant_id: str) -> TreeState: ...
    def get_entry(self, tenant_id: str, seq: int) -> EntryRow | None: ...
    def get_entry_by_event_id(self, tenant_id: str, event_id: str) -> EntryRow | None: ...
    def iter_entries(
        self, tenant_id: str, start: int = 0, end: int | None = None
    ) -> Iterator[EntryRow]:
        """Entries with start <= seq < end in seq order, streamed."""
        ...

    def leaf_hashes(self, tenant_id: str, start: int, end: int) -> list[bytes]:
        """Stored leaf hashes for seq in [start, end), in order."""
        ...

    def nodes(
        self, tenant_id: str, keys: Iterable[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        """Stored perfect-subtree hashes for the (level, index) keys present."""
        ...

    def put_nodes(self, tenant_id: str, nodes: Sequence[tuple[int, int, bytes]]) -> None: ...

    def search(
        self,
        tenant_id: str,
        where: str,
        params: Sequence[object],
        limit: int,
        before_seq: int | None = None,
    ) -> list[EntryRow]:
        """Newest first; `where` is a compiled, parameterised predicate over
        alias ``e``."""
        ...

    def count(self, tenant_id: str, where: str, params: Sequence[object]) -> int: ...

    def redact(self, tenant_id: str, seq: int) -> bool: ...

    # -- checkpoints ---------------------------------------------------
    def add_checkpoint(self, cp: CheckpointRecord) -> None: ...
    def latest_checkpoint(self, tenant_id: str) -> CheckpointRecord | None: ...
    def get_checkpoint(self, tenant_id: str, size: int) -> CheckpointRecord | None: ...
    def list_checkpoints(self, tenant_id: str) -> list[CheckpointRecord]: ...

    # -- actor directory -----------------------------------------------
    def upsert_actors(self, tenant_id: str, actors: Sequence[ActorRow]) -> None: ...
    def get_actor(self, tenant_id: str, actor_hash: str) -> ActorRecord | None: ...
    def erase_actor(self, tenant_id: str, actor_hash: str, erased_at: int) -> bool: ...
