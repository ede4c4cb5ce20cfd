"""What retention, erasure and redaction need from a store beyond `Store`
(issue 8). Both stores implement it through a mixin
(sqlite_retention.py, postgres_retention.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, cast

from kimonaudit.core.purged import PrefixProof


class RetentionStore(Protocol):
    # -- plans and retention
    def set_retention(
        self, tenant_id: str, plan: str, custom: int | None, effective: int
    ) -> None: ...
    def retention_custom(self, tenant_id: str) -> int | None: ...

    # -- actor secrets
    def actor_secret(self, tenant_id: str, lookup: str) -> bytes | None: ...
    def actor_secrets(self, tenant_id: str, lookups: Sequence[str]) -> dict[str, bytes]: ...
    def create_actor_secrets(
        self, tenant_id: str, fresh: Mapping[str, bytes], now: int
    ) -> None: ...
    def actor_hashes_of(self, tenant_id: str, actor_id: str) -> list[str]: ...
    def erase_actor_identity(
        self, tenant_id: str, lookup: str, actor_id: str, erased_at: int
    ) -> int: ...
    def directory_epoch(self, tenant_id: str) -> int: ...

    # -- redaction reasons
    def add_redaction(self, tenant_id: str, seq: int, reason: str, redacted_at: int) -> None: ...
    def get_redaction(self, tenant_id: str, seq: int) -> tuple[str, int] | None: ...


def retention_store(store: object) -> RetentionStore:
    return cast(RetentionStore, store)


def hashes_for_search(store: object, tenant_id: str, actor_id: str) -> list[str]:
    """What `actor:<id>` matches: the hashes the directory links to the id
    (none after erasure). Never recomputed from a key (kimonaudit.erasure)."""
    return retention_store(store).actor_hashes_of(tenant_id, actor_id)


class PurgeStore(Protocol):
    """The purge's store methods (both mixins)."""

    def purge_state(
        self, tenant_id: str
    ) -> tuple[int, dict[tuple[int, int], bytes], list[PrefixProof]]: ...
    def begin_purge(
        self,
        tenant_id: str,
        upto: int,
        nodes: Sequence[tuple[int, int, bytes]],
        proofs: Sequence[PrefixProof],
    ) -> None: ...
    def delete_purged(self, tenant_id: str, upto: int, batch: int) -> int: ...
    def delete_purged_nodes(
        self,
        tenant_id: str,
        upto: int,
        keep: Sequence[tuple[int, int]],
        batch: int,
        since: int = 0,
    ) -> int: ...
    def retention_stats(self, tenant_id: str) -> tuple[int | None, int, int]: ...


def purge_store(store: object) -> PurgeStore:
    return cast(PurgeStore, store)
