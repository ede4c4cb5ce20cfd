"""The Store protocol: everything the service needs from a database.

A store keeps rows; it never hashes, signs or formats. Every method takes a
tenant id and touches only that tenant's rows (the exceptions are the
tenant table itself, schema management, and `get_api_key`, which is how a
request finds its tenant in the first place).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Protocol

from kimonaudit.apikeys import ApiKeyRecord
from kimonaudit.core.console_records import ConsoleSession, ConsoleUser, SavedSearch
from kimonaudit.core.destination_records import DeliveryState, DestinationRecord
from kimonaudit.core.records import (
    ActorRecord,
    ActorRow,
    AppendPlan,
    CheckpointRecord,
    EntryRow,
    LedgerScan,
    TenantRecord,
    TreeState,
)

# Called by the store's writer while it holds the tenant's lock: given the
# current tree state and the stored entries of event ids already in the log,
# return what to write.
PlanBuilder = Callable[[TreeState, Mapping[str, EntryRow]], AppendPlan]


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

    def append_future(
        self,
        tenant_id: str,
        event_ids: Sequence[str],
        build: PlanBuilder,
        then: Callable[[AppendPlan], Any] | None = None,
    ) -> Future[Any]:
        """`append` without waiting: the future completes after the commit,
        with the plan or with `then(plan)` (run on the committing thread)."""
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

    def scans_natively(self) -> bool:
        """Whether `scan_ledger` checks rows in C (without the GIL), so that
        verify's workers can be threads."""
        ...

    def scan_ledger(self, tenant_id: str, start: int, end: int | None) -> LedgerScan | None:
        """`verifier.scan`'s per-row checks of seq in [start, end) done
        natively, or None where the verifier must scan in Python (no native
        scanner for this store, or a row it cannot read)."""
        ...

    def tree_hashes(
        self, tenant_id: str, keys: Iterable[tuple[int, int]], seqs: Sequence[int]
    ) -> tuple[dict[tuple[int, int], bytes], dict[int, bytes]]:
        """`nodes(keys)` and `leaf_hashes_at(seqs)` together, in as few
        round trips as the database allows (proofs are latency-bound)."""
        ...

    def leaf_hashes_at(self, tenant_id: str, seqs: Sequence[int]) -> dict[int, bytes]:
        """Stored leaf hashes of the given seqs (those present), in one read."""
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

    # -- API keys ------------------------------------------------------
    def insert_api_key(self, key: ApiKeyRecord) -> None:
        """Store a new key; Conflict if its id is taken."""
        ...

    def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        """The key with this id in any tenant (authentication starts here)."""
        ...

    def list_api_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        """The tenant's keys, revoked ones included, oldest first."""
        ...

    def revoke_api_key(self, tenant_id: str, key_id: str, revoked_at: int) -> bool:
        """Mark the tenant's key revoked; False if it is not there or already revoked."""
        ...

    def touch_api_key(self, key_id: str, used_at: int) -> None:
        """Record when a key was last used (best effort, may be coarse)."""
        ...

    # == Console (owned by the console work; see kimonaudit.console) =======
    # Users, sessions and saved searches of the admin console. Every method
    # is scoped to one tenant: a session is found by (tenant, token hash).
    def insert_console_user(self, user: ConsoleUser) -> None:
        """Store a new user; Conflict if the tenant already has its e-mail."""
        ...

    def get_console_user(self, tenant_id: str, user_id: str) -> ConsoleUser | None: ...
    def find_console_user(self, tenant_id: str, email: str) -> ConsoleUser | None:
        """The user with this (lower-cased) e-mail in the tenant."""
        ...

    def list_console_users(self, tenant_id: str) -> list[ConsoleUser]:
        """Oldest first, disabled users included."""
        ...

    def set_console_user_disabled(
        self, tenant_id: str, user_id: str, disabled_at: int | None
    ) -> bool: ...
    def set_console_password(self, tenant_id: str, user_id: str, password_hash: str) -> bool: ...
    def insert_console_session(self, session: ConsoleSession) -> None: ...
    def get_console_session(self, tenant_id: str, token_hash: bytes) -> ConsoleSession | None: ...
    def delete_console_session(self, tenant_id: str, token_hash: bytes) -> bool: ...
    def delete_console_sessions(self, tenant_id: str, user_id: str) -> int:
        """Sign a user out everywhere (when disabled or their password changes)."""
        ...

    def purge_console_sessions(self, tenant_id: str, now: int) -> int:
        """Delete the tenant's sessions that expired before `now`."""
        ...

    def insert_saved_search(self, search: SavedSearch) -> None:
        """Conflict if the user already has a search with this name."""
        ...

    def list_saved_searches(self, tenant_id: str, user_id: str) -> list[SavedSearch]:
        """The user's saved searches, by name."""
        ...

    def delete_saved_search(self, tenant_id: str, user_id: str, search_id: str) -> bool: ...

    # == end of console section ============================================


# == search, export and histogram (owned by the search work) ==================
# A posting driver: alternatives (field, mode, values) of which every match
# holds at least one term; mode "eq" (values), "range" (low, high inclusive)
# or "glob" (one GLOB pattern). Fields are kimonaudit.core.projection's F_*.
DriverSpec = tuple[int, str, tuple[str, ...]]
Driver = tuple[DriverSpec, ...]


@dataclass(frozen=True)
class SearchSql:
    """A compiled search (kimonaudit.search.compile_query) as a store needs it.

    `where`/`params` is the whole predicate over alias ``e`` (the ledger,
    with free text through the full-text index). When the query has free
    text, `text_match` is an FTS5 expression (SQLite) that every matching
    entry satisfies and `rest_where` the predicate without it.

    Entries not yet in the projection (at or above the index's high-water
    mark) are matched with `scan_where` (everything but free text) and the
    free-text phrases in `texts` ((words, negated) pairs) checked in Python
    against the entry's document. `drivers` name posting terms that narrow
    the indexed part; `seq_low`/`seq_high` bound it ([low, high)).
    """

    where: str
    params: tuple[object, ...]
    text_match: str | None = None
    rest_where: str = "1=1"
    rest_params: tuple[object, ...] = ()
    scan_where: str = "1=1"
    scan_params: tuple[object, ...] = ()
    texts: tuple[tuple[tuple[str, ...], bool], ...] = ()
    drivers: tuple[Driver, ...] = ()
    seq_low: int = 0
    seq_high: int | None = None


class SearchStore(Protocol):
    """What search, export and the histogram need beyond `Store`."""

    def search_page(
        self, tenant_id: str, sql: SearchSql, limit: int, before_seq: int | None = None
    ) -> list[EntryRow]:
        """The newest `limit` matches with seq < `before_seq`, newest first."""
        ...

    def iter_search(
        self, tenant_id: str, sql: SearchSql, after_seq: int = -1, before_seq: int | None = None
    ) -> Iterator[EntryRow]:
        """Every match with after_seq < seq < before_seq in seq order, read in
        keyset pages: no cursor, transaction or snapshot is held between
        pages, so a slow consumer pins nothing."""
        ...

    def histogram(
        self, tenant_id: str, sql: SearchSql, width_us: int, origin_us: int
    ) -> list[tuple[int, int]]:
        """(bucket, count) of matches, bucket = (recorded_at - origin) // width."""
        ...

    def count_matches(self, tenant_id: str, sql: SearchSql, before_seq: int | None = None) -> int:
        """How many entries with seq < `before_seq` match."""
        ...

    def seq_at(self, tenant_id: str, recorded_at: int) -> int | None:
        """The lowest seq recorded at or after `recorded_at` (µs), None if none
        is. recorded_at never decreases along seq, so this turns a time
        range into a seq range."""
        ...


# == streaming (owned by the streaming work; see kimonaudit.store.destinations_sql) ==
class DestinationStore(Protocol):
    """SIEM destinations, their delivery state and lease, and lag samples.
    Both stores implement it through their `*_destinations` mixin."""

    def insert_destination(self, dest: DestinationRecord, delivery: DeliveryState) -> None: ...
    def get_destination(self, tenant_id: str, destination_id: str) -> DestinationRecord | None: ...
    def list_destinations(self, tenant_id: str | None = None) -> list[DestinationRecord]: ...
    def update_destination(self, dest: DestinationRecord) -> bool: ...
    def update_destination_config(self, dest: DestinationRecord) -> bool: ...
    def set_destination_state(
        self, tenant_id: str, destination_id: str, state: str, reason: str | None, at: int
    ) -> bool: ...
    def delete_destination(self, tenant_id: str, destination_id: str) -> bool: ...
    def get_delivery(self, tenant_id: str, destination_id: str) -> DeliveryState | None: ...
    def retry_now(self, tenant_id: str, destination_id: str, reset_attempts: bool) -> bool: ...
    def acquire_lease(
        self, tenant_id: str, destination_id: str, owner: str, now: int, until: int
    ) -> bool: ...
    def release_lease(self, tenant_id: str, destination_id: str, owner: str) -> None: ...
    def save_delivery(self, state: DeliveryState, owner: str | None) -> bool: ...
    def checkpoints_between(
        self, tenant_id: str, above: int, upto: int
    ) -> list[CheckpointRecord]: ...
    def delivery_floor(self, tenant_id: str) -> int | None: ...
