"""Erasure that really unlinks (GDPR Art. 17; issue 8).

The actor hash in a leaf is HMAC(actor secret, tenant || 0 || actor id),
where the actor secret is 32 random bytes held only in the directory
(table ``actor_secrets``, found through a lookup key derived from the
tenant key). Erasing a person deletes that secret and blanks every
directory row naming them: their entries stay in the log and keep
verifying, but nobody, not even the holder of the deployment's keys, can
recompute which hash was theirs. See docs/integrity.md for what is and is
not unlinkable (entries written before migration 6 used the tenant key).

`ActorHashes` is the append path's per-process cache: one call per batch
(`for_tenant`), then a dict lookup per event.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from kimonaudit.core.pseudonym import ACTOR_SECRET_BYTES, actor_lookup, secret_actor_hash
from kimonaudit.errors import InvalidInput
from kimonaudit.store.retention import retention_store

if TYPE_CHECKING:
    from kimonaudit.service import AuditLog

# How often a process looks for erasures made by other processes.
CHECK_EVERY_SECONDS = 1.0
_MAX_CACHED = 200_000


class _SecretBatch:
    """New actors' secrets to be created in one transaction, and the
    outcome every thread that asked for one of them waits for."""

    def __init__(self) -> None:
        self.fresh: dict[str, bytes] = {}  # lookup -> the secret offered
        self.won: dict[str, bytes] | None = None  # lookup -> the secret stored
        self.error: BaseException | None = None

    def result(self, lookup: str) -> bytes:
        if self.error is not None:
            raise self.error
        assert self.won is not None
        return self.won[lookup]


class ActorHashes:
    """(tenant, actor id) -> leaf actor hash, cached per process.

    `for_tenant` returns the tenant's dict (actor id -> hash), emptied when
    the tenant's directory epoch moved (an erasure, here or in another
    process; checked at most once per CHECK_EVERY_SECONDS). `resolve` fills
    it on a miss, creating the actor's secret if they have none: the insert
    is a no-op when another process got there first, and both then read the
    same secret back.
    """

    def __init__(
        self, store: object, tenant_key: Callable[[str], bytes], now_us: Callable[[], int]
    ):
        self._store = retention_store(store)
        self._key = tenant_key
        self._now_us = now_us
        self._hashes: dict[str, dict[str, str]] = {}
        self._seen: dict[str, tuple[int, float]] = {}  # tenant -> (epoch, checked at)
        self._checking: dict[str, float] = {}  # tenant -> when a caller set out to check
        self._lock = threading.Lock()
        # New secrets in batches (_create_secret): the batch gathering per
        # tenant, and the tenants whose batch is being written.
        self._secret_turns = threading.Condition()
        self._forming: dict[str, _SecretBatch] = {}
        self._writing: set[str] = set()

    def for_tenant(self, tenant_id: str) -> dict[str, str]:
        cached = self._hashes.get(tenant_id)
        seen = self._seen.get(tenant_id)
        now = time.monotonic()
        if cached is not None and seen is not None and now - seen[1] < CHECK_EVERY_SECONDS:
            return cached
        epoch = self._store.directory_epoch(tenant_id)
        with self._lock:
            if cached is None or seen is None or seen[0] != epoch:
                cached = {}
                self._hashes[tenant_id] = cached
            self._seen[tenant_id] = (epoch, now)
            self._checking.pop(tenant_id, None)
        return cached

    def cached_for_tenant(self, tenant_id: str) -> dict[str, str] | None:
        """`for_tenant` if that needs no database read now, else None, and
        the caller should call `for_tenant`. While one caller is making the
        epoch check, others keep the cache (for at most CHECK_EVERY_SECONDS
        more) rather than all reading the same row."""
        cached = self._hashes.get(tenant_id)
        seen = self._seen.get(tenant_id)
        if cached is None or seen is None:
            return None
        now = time.monotonic()
        if now - seen[1] < CHECK_EVERY_SECONDS:
            return cached
        with self._lock:
            started = self._checking.get(tenant_id)
            if started is not None and now - started < CHECK_EVERY_SECONDS:
                return cached
            self._checking[tenant_id] = now
        return None

    def resolve(self, tenant_id: str, actor_id: str) -> str:
        """The actor's hash, creating their secret if they have none."""
        lookup = actor_lookup(self._key(tenant_id), actor_id)
        secret = self._store.actor_secret(tenant_id, lookup)
        if secret is None:
            secret = self._create_secret(tenant_id, lookup)
        h = secret_actor_hash(secret, tenant_id, actor_id)
        self._remember(tenant_id, {actor_id: h})
        return h

    def _remember(self, tenant_id: str, hashes: Mapping[str, str]) -> None:
        """Cache `hashes` (actor id -> hash), emptying a tenant's cache that
        would grow past _MAX_CACHED first."""
        with self._lock:
            cached = self._hashes.setdefault(tenant_id, {})
            if len(cached) + len(hashes) > _MAX_CACHED:
                cached.clear()
            cached.update(hashes)

    def _create_secret(self, tenant_id: str, lookup: str) -> bytes:
        """A new actor's secret, created together with those other threads
        need for the tenant meanwhile (a group commit): while one thread's
        transaction runs, the next batch gathers and one of its threads
        writes it once that transaction is done. One transaction each, a
        fresh server meeting a thousand new actors in its first seconds
        (1,500 single events/s) answered with p99 760-800 ms."""
        cond = self._secret_turns
        with cond:
            batch = self._forming.get(tenant_id)
            if batch is None:
                batch = self._forming[tenant_id] = _SecretBatch()
            batch.fresh.setdefault(lookup, os.urandom(ACTOR_SECRET_BYTES))
            while batch.won is None and batch.error is None:
                if tenant_id not in self._writing and self._forming.get(tenant_id) is batch:
                    del self._forming[tenant_id]  # later callers start the next batch
                    self._writing.add(tenant_id)
                    break
                cond.wait()
            else:
                return batch.result(lookup)
        try:
            batch.won = self._store_secrets(tenant_id, batch.fresh)
        except BaseException as exc:
            batch.error = exc
        with cond:
            self._writing.discard(tenant_id)
            cond.notify_all()
        return batch.result(lookup)

    def _store_secrets(self, tenant_id: str, fresh: dict[str, bytes]) -> dict[str, bytes]:
        """Store `fresh` (lookup -> secret) where the actor has none and
        return each lookup's secret as stored: another process's where it
        got there first (two processes meeting a new actor at once agree on
        it), the one offered where an erasure took it meanwhile."""
        self._store.create_actor_secrets(tenant_id, fresh, self._now_us())
        won = self._store.actor_secrets(tenant_id, list(fresh))
        return {lookup: won.get(lookup, secret) for lookup, secret in fresh.items()}

    def resolve_many(self, tenant_id: str, actor_ids: Iterable[str]) -> None:
        """`resolve` for several actors, into the cache: one read of the
        secrets they have and one transaction for those they lack, instead
        of a read and a transaction each."""
        key = self._key(tenant_id)
        actor_of = {actor_lookup(key, a): a for a in actor_ids}
        secrets = self._store.actor_secrets(tenant_id, list(actor_of))
        fresh = {lk: os.urandom(ACTOR_SECRET_BYTES) for lk in actor_of if lk not in secrets}
        if fresh:
            secrets.update(self._store_secrets(tenant_id, fresh))
        hashes = {a: secret_actor_hash(secrets[lk], tenant_id, a) for lk, a in actor_of.items()}
        self._remember(tenant_id, hashes)

    def peek(self, tenant_id: str, actor_id: str) -> str | None:
        """The actor's hash if they have a secret; never creates one."""
        lookup = actor_lookup(self._key(tenant_id), actor_id)
        secret = self._store.actor_secret(tenant_id, lookup)
        return None if secret is None else secret_actor_hash(secret, tenant_id, actor_id)

    def forget(self, tenant_id: str) -> None:
        """Drop the tenant's cached hashes (after an erasure here)."""
        with self._lock:
            self._hashes.pop(tenant_id, None)
            self._seen.pop(tenant_id, None)

    def lookup(self, tenant_id: str, actor_id: str) -> str:
        return actor_lookup(self._key(tenant_id), actor_id)


def erase_actor(
    log: AuditLog, tenant_id: str, actor_id: str, *, actor: Mapping[str, str] | None = None
) -> bool:
    """Destroy the actor's secret and directory rows, then append
    `actor.erased` (which names no one). Returns whether there was anything
    to erase; the entry is appended either way, as the request was made."""
    from kimonaudit.service import SYSTEM_ACTOR

    log.get_tenant(tenant_id)
    if not isinstance(actor_id, str) or not actor_id.strip() or len(actor_id) > 256:
        raise InvalidInput("an actor id is 1-256 characters", field="actor_id")
    store = retention_store(log.store)
    lookup = log.actor_hashes.lookup(tenant_id, actor_id)
    had_secret = store.actor_secret(tenant_id, lookup) is not None
    rows = store.erase_actor_identity(tenant_id, lookup, actor_id, log.now_us())
    log.actor_hashes.forget(tenant_id)
    log.forget_directory(tenant_id)
    found = had_secret or rows > 0
    event: dict[str, Any] = {
        "action": "actor.erased",
        "actor": dict(actor or SYSTEM_ACTOR),
        # Deliberately nothing about who was erased: no id, no hash.
        "target": {"type": "actor_directory", "id": tenant_id},
        "metadata": {"directory_rows_erased": rows, "found": found},
    }
    log.append(tenant_id, [event])
    return found
