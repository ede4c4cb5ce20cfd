"""AuditLog: the one facade every adapter (CLI, HTTP API, console, jobs)
calls. It orchestrates the pure core and a store; it holds no SQL and
formats nothing for humans."""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from kimonaudit import ids
from kimonaudit.core.events import Event, validate_batch
from kimonaudit.core.ipaddr import ip_to_bytes
from kimonaudit.core.leaf import payload_bytes, payload_commitment
from kimonaudit.core.ledger import leaf_of_row, plan_append
from kimonaudit.core.merkle import verify_consistency, verify_inclusion
from kimonaudit.core.note import Checkpoint, open_checkpoint, sign_checkpoint
from kimonaudit.core.pseudonym import actor_hash, tenant_actor_key
from kimonaudit.core.records import (
    ActorRecord,
    ActorRow,
    AppendPlan,
    CheckpointRecord,
    EntryRow,
    Prepared,
    Receipt,
    TenantRecord,
    TreeState,
)
from kimonaudit.core.searchtext import search_text
from kimonaudit.core.timefmt import to_us
from kimonaudit.errors import ConfigError, InvalidInput, NotFound, VerificationError
from kimonaudit.keys import KeyRing
from kimonaudit.results import (
    ConsistencyProof,
    InclusionProof,
    SignedCheckpoint,
    Tenant,
    VerifyReport,
)
from kimonaudit.store.base import Store
from kimonaudit.treeread import TreeReader
from kimonaudit.verifier import Progress, verify_tenant

Clock = Callable[[], datetime]

PLANS: dict[str, int] = {"free": 12, "team": 12, "business": 36, "enterprise": 36}
MAX_BATCH = 1_000


def system_clock() -> datetime:
    return datetime.now(UTC)


class AuditLog:
    """A tenant-scoped, tamper-evident audit log over one store."""

    def __init__(self, store: Store, keys: KeyRing, clock: Clock | None = None) -> None:
        self.store = store
        self.keys = keys
        self._clock = clock or system_clock
        self._actor_keys: dict[str, bytes] = {}
        # (tenant, actor hash) -> what the directory holds, so an append only
        # writes a directory row when something about the actor changed.
        self._directory_cache: dict[tuple[str, str], ActorRow] = {}
        self._cache_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------
    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now_us(self) -> int:
        now = self._clock()
        if now.tzinfo is None:
            raise ConfigError("the clock must return timezone-aware datetimes")
        return to_us(now)

    # -- tenants -----------------------------------------------------------
    def create_tenant(self, name: str, plan: str = "free", tenant_id: str | None = None) -> Tenant:
        if plan not in PLANS:
            raise InvalidInput(f"unknown plan {plan!r}; one of {', '.join(PLANS)}", field="plan")
        name = name.strip()
        if not name or len(name) > 200 or any(ord(c) < 32 for c in name):
            raise InvalidInput("a tenant name is 1-200 printable characters", field="name")
        rec = TenantRecord(tenant_id or ids.tenant_id(), name, plan, self.now_us(), PLANS[plan])
        self.store.insert_tenant(rec)
        return _tenant(rec)

    def get_tenant(self, tenant_id: str) -> Tenant:
        rec = self.store.get_tenant(tenant_id)
        if rec is None:
            raise NotFound(f"no tenant {tenant_id!r}")
        return _tenant(rec)

    def list_tenants(self) -> list[Tenant]:
        return [_tenant(r) for r in self.store.list_tenants()]

    def origin(self, tenant_id: str) -> str:
        return f"{self.keys.name}/tenants/{tenant_id}"

    def actor_key(self, tenant_id: str) -> bytes:
        key = self._actor_keys.get(tenant_id)
        if key is None:
            key = tenant_actor_key(self.keys.actor_secret, tenant_id)
            self._actor_keys[tenant_id] = key
        return key

    def actor_hash(self, tenant_id: str, actor_id: str) -> str:
        return actor_hash(self.actor_key(tenant_id), actor_id)

    # -- append ------------------------------------------------------------
    def append(self, tenant_id: str, events: Sequence[Mapping[str, Any] | Event]) -> list[Receipt]:
        """Append a batch atomically: all events or, on any invalid one, none.

        Returns one receipt per event, in order, after the commit. An event
        whose `id` is already in the log returns its original receipt.
        """
        if len(events) > MAX_BATCH:
            raise InvalidInput(f"at most {MAX_BATCH} events per batch, got {len(events)}", "events")
        if all(isinstance(e, Event) for e in events):
            validated: list[Event] = list(events)  # type: ignore[arg-type]
        else:
            validated = validate_batch(list(events))
        return self.append_validated(tenant_id, validated)

    def append_validated(self, tenant_id: str, events: Sequence[Event]) -> list[Receipt]:
        if not events:
            return []
        prepared, actors = self._prepare(tenant_id, events)
        now_us = self.now_us

        def build(state: TreeState, existing: Mapping[str, Receipt]) -> AppendPlan:
            plan = plan_append(state, prepared, existing, now_us())
            plan.actors = actors
            return plan

        plan = self.store.append(tenant_id, [p.event_id for p in prepared], build)
        self._remember_actors(tenant_id, actors)
        return plan.receipts

    def _prepare(
        self, tenant_id: str, events: Sequence[Event]
    ) -> tuple[list[Prepared], list[ActorRow]]:
        key = self.actor_key(tenant_id)
        cache = self._directory_cache
        prepared: list[Prepared] = []
        actors: dict[str, ActorRow] = {}
        urandom = os.urandom
        for ev in events:
            payload = payload_bytes(ev)
            salt = urandom(32)
            a = ev.actor
            a_hash = a_type = None
            if a is not None:
                a_hash = actor_hash(key, a.id)
                a_type = a.type
                row = ActorRow(a_hash, a.id, a.type, a.name, a.email)
                if cache.get((tenant_id, a_hash)) != row:
                    actors[a_hash] = row
            t = ev.target
            ip = ev.context.get("ip")
            prepared.append(
                Prepared(
                    ev.id or ids.uuid7(),
                    ev.action,
                    ev.info.category,
                    int(ev.severity),
                    ev.info.security,
                    a_hash,
                    a_type,
                    t.type if t else None,
                    t.id if t else None,
                    ev.outcome,
                    ev.occurred_at,
                    ip_to_bytes(ip) if isinstance(ip, str) else None,
                    payload,
                    salt,
                    payload_commitment(salt, payload),
                    search_text(
                        action=ev.action,
                        target_type=t.type if t else None,
                        target_id=t.id if t else None,
                        actor_type=a_type,
                        outcome=ev.outcome,
                        context=ev.context,
                        changes=[(c.field, c.before, c.after) for c in ev.changes],
                        metadata=ev.metadata,
                    ),
                )
            )
        return prepared, list(actors.values())

    def _remember_actors(self, tenant_id: str, actors: Iterable[ActorRow]) -> None:
        with self._cache_lock:
            if len(self._directory_cache) > 100_000:
                self._directory_cache.clear()
            for a in actors:
                self._directory_cache[(tenant_id, a.actor_hash)] = a

    # -- reading -----------------------------------------------------------
    def get_entry(self, tenant_id: str, seq: int) -> EntryRow:
        row = self.store.get_entry(tenant_id, seq)
        if row is None:
            raise NotFound(f"no entry {seq} in tenant {tenant_id}")
        return row

    def get_entry_by_id(self, tenant_id: str, event_id: str) -> EntryRow:
        row = self.store.get_entry_by_event_id(tenant_id, event_id)
        if row is None:
            raise NotFound(f"no event {event_id!r}")
        return row

    def resolve_actor(self, tenant_id: str, a_hash: str) -> ActorRecord | None:
        return self.store.get_actor(tenant_id, a_hash)

    def erase_actor(self, tenant_id: str, actor_id: str) -> bool:
        """GDPR Art. 17: drop the actor's directory row (id, name, email).
        The log keeps only the keyed hash, so it stays intact and verifiable."""
        self.get_tenant(tenant_id)
        h = self.actor_hash(tenant_id, actor_id)
        with self._cache_lock:
            self._directory_cache.pop((tenant_id, h), None)
        return self.store.erase_actor(tenant_id, h, self.now_us())

    def redact(self, tenant_id: str, seq: int) -> bool:
        """Delete one entry's payload and salt (a legal request). Its leaf
        keeps the payload commitment, so the tree and every proof stand."""
        self.get_entry(tenant_id, seq)
        return self.store.redact(tenant_id, seq)

    # -- checkpoints and proofs --------------------------------------------
    def checkpoint(self, tenant_id: str) -> SignedCheckpoint:
        """The newest signed checkpoint, cutting a new one if entries arrived
        since the last."""
        state = self.store.tree_state(tenant_id)
        latest = self.store.latest_checkpoint(tenant_id)
        if latest is not None and latest.size == state.size:
            return self._signed(latest)
        if latest is not None and latest.size > state.size:
            raise VerificationError(
                f"tenant {tenant_id}: the log has {state.size} entries but a checkpoint "
                f"for {latest.size} was issued; entries were removed (run `kimonaudit verify`)"
            )
        cp = Checkpoint(self.origin(tenant_id), state.size, state.tree.root())
        note = sign_checkpoint(cp, [self.keys.active])
        rec = CheckpointRecord(
            tenant_id, cp.size, cp.root_hash, note, self.now_us(), self.keys.active.key_id
        )
        self.store.add_checkpoint(rec)
        return self._signed(self.store.get_checkpoint(tenant_id, cp.size) or rec)

    def latest_checkpoint(self, tenant_id: str) -> SignedCheckpoint | None:
        rec = self.store.latest_checkpoint(tenant_id)
        return None if rec is None else self._signed(rec)

    def list_checkpoints(self, tenant_id: str) -> list[SignedCheckpoint]:
        return [self._signed(r) for r in self.store.list_checkpoints(tenant_id)]

    def _signed(self, rec: CheckpointRecord) -> SignedCheckpoint:
        return SignedCheckpoint(
            rec.tenant_id, self.origin(rec.tenant_id), rec.size, rec.root, rec.note, rec.issued_at
        )

    def prove_inclusion(self, tenant_id: str, seq: int, size: int | None = None) -> InclusionProof:
        """Inclusion proof of entry `seq` against the newest checkpoint (cut
        one if none covers it yet), or against the checkpoint of `size`."""
        row = self.get_entry(tenant_id, seq)
        if size is None:
            cp = self.latest_checkpoint(tenant_id)
            if cp is None or cp.size <= seq:
                cp = self.checkpoint(tenant_id)
        else:
            rec = self.store.get_checkpoint(tenant_id, size)
            if rec is None:
                raise NotFound(f"no checkpoint at tree size {size} in tenant {tenant_id}")
            if seq >= size:
                raise InvalidInput(f"entry {seq} is not in a tree of size {size}", field="seq")
            cp = self._signed(rec)
        reader = TreeReader(self.store, tenant_id)
        proof = reader.inclusion_proof(seq, cp.size)
        leaf = leaf_of_row(row)
        # Cheap self-check: a proof that fails here means the stored tree is
        # damaged, and saying so beats serving a proof that cannot verify.
        try:
            verify_inclusion(row.leaf_hash, seq, cp.size, proof, cp.root)
        except VerificationError as exc:
            raise VerificationError(
                f"tenant {tenant_id}: entry {seq} does not prove against checkpoint "
                f"{cp.size} ({exc.message}); run `kimonaudit verify`"
            ) from exc
        return InclusionProof(seq, cp.size, leaf, row.leaf_hash, cp.root, tuple(proof), cp.note)

    def prove_consistency(self, tenant_id: str, old_size: int, new_size: int) -> ConsistencyProof:
        state = self.store.tree_state(tenant_id)
        if not 0 <= old_size <= new_size:
            raise InvalidInput("need 0 <= from <= to", field="from")
        if new_size > state.size:
            raise InvalidInput(
                f"the tree has {state.size} entries; cannot prove up to {new_size}", field="to"
            )
        reader = TreeReader(self.store, tenant_id)
        old_root = reader.root(old_size)
        new_root = reader.root(new_size)
        proof = reader.consistency_proof(old_size, new_size) if 0 < old_size < new_size else []
        verify_consistency(old_size, new_size, old_root, new_root, proof)
        return ConsistencyProof(old_size, new_size, old_root, new_root, tuple(proof))

    # -- verification ------------------------------------------------------
    def verify(
        self, tenant_id: str, against: str | None = None, progress: Progress | None = None
    ) -> VerifyReport:
        self.get_tenant(tenant_id)
        return verify_tenant(
            self.store,
            tenant_id,
            self.origin(tenant_id),
            self.keys.verifiers,
            against=against,
            progress=progress,
        )

    def verify_checkpoint_note(self, note: str) -> Checkpoint:
        cp, _ = open_checkpoint(note, self.keys.verifiers)
        return cp

    # -- cursors -----------------------------------------------------------
    def sign_token(self, purpose: str, data: bytes) -> bytes:
        """A MAC for opaque tokens (search cursors) handed to clients."""
        key = hmac.new(self.keys.actor_secret, b"kimonaudit/token/" + purpose.encode(), "sha256")
        return hmac.new(key.digest(), data, hashlib.sha256).digest()[:16]


def _tenant(r: TenantRecord) -> Tenant:
    return Tenant(r.id, r.name, r.plan, r.created_at, r.retention_months, r.legal_hold)

