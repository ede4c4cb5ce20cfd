"""AuditLog: the one facade every adapter (CLI, HTTP API, console, jobs)
calls. It orchestrates the pure core and a store; it holds no SQL and
formats nothing for humans."""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

from kimonaudit import apikeys, ids, retention
from kimonaudit.apikeys import ApiKeyRecord
from kimonaudit.bundle import BundleInfo
from kimonaudit.core.events import Actor, Event, validate_batch
from kimonaudit.core.ipaddr import ip_to_bytes
from kimonaudit.core.leaf import (
    PAYLOAD_COMMITMENT_PREFIX,
    json_string,
    leaf_after_id,
    leaf_head_start,
    leaf_tail_around,
    payload_bytes,
)
from kimonaudit.core.ledger import LeafParts, leaf_of_row, plan_append
from kimonaudit.core.merkle import verify_consistency, verify_inclusion
from kimonaudit.core.note import Checkpoint, open_checkpoint, sign_checkpoint
from kimonaudit.core.pseudonym import tenant_actor_key
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
from kimonaudit.core.timefmt import to_us
from kimonaudit.erasure import ActorHashes
from kimonaudit.errors import (
    AuthError,
    ConfigError,
    InvalidInput,
    NotFound,
    StoreError,
    VerificationError,
)
from kimonaudit.export import Export
from kimonaudit.export import export as export_entries
from kimonaudit.keys import KeyRing
from kimonaudit.purge import RetentionReport, TenantRetention
from kimonaudit.results import (
    ConsistencyProof,
    InclusionProof,
    SignedCheckpoint,
    Tenant,
    VerifyReport,
)
from kimonaudit.retention import PLANS, RetentionSettings
from kimonaudit.search import Histogram, SearchPage
from kimonaudit.search import histogram as count_by_interval
from kimonaudit.search import search as search_page
from kimonaudit.store.base import Store
from kimonaudit.store.native import native
from kimonaudit.store.retention import retention_store
from kimonaudit.treeread import TreeReader
from kimonaudit.verifier import Progress, verify_tenant

Clock = Callable[[], datetime]
# One actor of a batch being prepared: hash, type, and the leaf starts
# (kimonaudit.core.leaf.leaf_head_start) by action, with their category.
_BatchActor = tuple[str | None, str | None, dict[str, tuple[str, bytes]]]
# RFC 8785 string escaping, as kimonaudit.core.leaf uses it.
_json_string: Callable[[str], str] = json.encoder.encode_basestring

MAX_BATCH = 1_000
# `_prepare`'s loop in C where the optional extension was built: the same
# values (tests/test_native.py compares them), without about six microseconds
# of interpreter time per event that appends otherwise spend holding the GIL.
# Tests switch it off to run the Python loop.
NATIVE_PREPARE = True
_native_prepare = getattr(native, "prepare", None)
# IP address text -> its 16 bytes, kept across batches by the native loop.
_ip_bytes_seen: dict[str, bytes] = {}
# Who created or revoked an API key when no key did it (the CLI).
SYSTEM_ACTOR: Mapping[str, str] = {"id": "kimonaudit-cli", "type": "system"}
# last_used_at is written at most this often per key, so authentication
# stays a read.
_TOUCH_EVERY_US = 60_000_000


def system_clock() -> datetime:
    return datetime.now(UTC)


class _NeedsIO(Exception):
    """submit_validated(cached_only=True) would have to read the database."""


def _no_io(tenant_id: str, actor_id: str) -> str:
    raise _NeedsIO


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
        self._key_touched: dict[str, int] = {}
        # (tenant, actor id) -> actor hash under the actor's own secret
        # (kimonaudit.erasure): a dict lookup per event on the hot path.
        self.actor_hashes = ActorHashes(store, self.actor_key, self.now_us)

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
        """The hash under which `actor_id`'s entries are written; NotFound
        if the directory holds no secret for them (never seen, or erased:
        then nobody can compute it any more)."""
        h = self.actor_hashes.peek(tenant_id, actor_id)
        if h is None:
            raise NotFound(f"no actor {actor_id!r} in the directory of tenant {tenant_id}")
        return h

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
        """`append` for events already validated (`validate_batch`,
        `kimonaudit.core.decode`): the receipts, after the commit."""
        if not events:
            return []
        future = self.submit_validated(tenant_id, events)
        assert future is not None
        return future.result()

    def submit_validated(
        self, tenant_id: str, events: Sequence[Event], *, cached_only: bool = False
    ) -> Future[list[Receipt]] | None:
        """Start appending validated `events` and return at once: the future
        gives their receipts after the commit. Everything but the commit
        happens on the calling thread.

        With `cached_only`, return None instead of reading the database
        (an actor this process has not met lately, or the directory's epoch
        due for its check): an event loop appends a small body inline that
        way and hands the rest to a thread."""
        if not events:
            nothing: Future[list[Receipt]] = Future()
            nothing.set_result([])
            return nothing
        try:
            prepared, parts, actors = self._prepare(tenant_id, events, cached_only)
        except _NeedsIO:
            return None
        now_us = self.now_us

        def build(state: TreeState, existing: Mapping[str, EntryRow]) -> AppendPlan:
            plan = plan_append(state, prepared, existing, now_us(), parts)
            plan.actors = actors
            return plan

        # Ids the server just made cannot be in the log yet: only the
        # client's own ids need the idempotency lookup.
        client_ids = [ev.id for ev in events if ev.id is not None]

        def committed(plan: AppendPlan) -> list[Receipt]:
            self._remember_actors(tenant_id, actors)
            return plan.receipts

        receipts: Future[list[Receipt]] = self.store.append_future(
            tenant_id, client_ids, build, committed
        )
        return receipts

    def _prepare(
        self, tenant_id: str, events: Sequence[Event], cached_only: bool
    ) -> tuple[list[Prepared], LeafParts, list[ActorRow]]:
        """Everything that needs no lock, done on the caller's thread so it
        overlaps with the writer committing someone else's batch: payload
        commitments, actor hashes, and each leaf but its seq and time.
        `cached_only`: raise _NeedsIO rather than read the database."""
        resolve: Callable[[str, str], str]
        if cached_only:
            cached = self.actor_hashes.cached_for_tenant(tenant_id)
            if cached is None:
                raise _NeedsIO
            hashes, resolve = cached, _no_io
        else:
            hashes = self.actor_hashes.for_tenant(tenant_id)
            resolve = self._batch_resolver(events, hashes)
        prepared: list[Prepared] = []
        heads: list[bytes] = []
        tails: list[bytes] = []
        actors: dict[str, ActorRow] = {}
        # One random read per batch rather than one per event.
        salts = os.urandom(32 * len(events))
        new_ids = ids.uuid7_batch(sum(1 for ev in events if ev.id is None))
        next_id = iter(new_ids).__next__
        # Per-batch caches. A helpdesk batch repeats a few actors, actions
        # and targets many times, and validation hands out one shared Actor
        # or Target object per distinct value, so lookups go by the object's
        # identity (the events keep every object alive meanwhile): per actor
        # its hash, type and the leaf starts by action. The leaf tails'
        # parts around the target id go by severity and target type.
        by_actor: dict[int, _BatchActor] = {}
        arounds: dict[tuple[int, str | None], tuple[bytes, bytes]] = {}
        by_value: dict[tuple[str, str, str | None, str | None], str] = {}
        afters: dict[str, bytes] = {}
        ips: dict[str, bytes] = {}
        if _native_prepare is not None and NATIVE_PREPARE:

            def actor_of(a: Actor | None) -> tuple[str | None, str | None]:
                a_hash, a_type, _ = self._batch_actor(
                    tenant_id, a, hashes, by_value, actors, resolve
                )
                return a_hash, a_type

            if len(_ip_bytes_seen) > 10_000:
                _ip_bytes_seen.clear()
            done = _native_prepare(
                list(events),
                salts,
                new_ids,
                json_string(tenant_id),
                (actor_of, _ip_bytes, payload_bytes),
                _ip_bytes_seen,
                Prepared,
            )
            if done is not None:
                return done[0], LeafParts(done[1], done[2]), list(actors.values())
        sha256 = hashlib.sha256
        hexlify = binascii.hexlify
        escape = _json_string
        prefix = PAYLOAD_COMMITMENT_PREFIX
        make = tuple.__new__
        for n, ev in enumerate(events):
            payload = ev._payload
            if payload is None:
                payload = payload_bytes(ev)
            salt = salts[32 * n : 32 * n + 32]
            a = ev.actor
            per_actor = by_actor.get(id(a))
            if per_actor is None:
                per_actor = by_actor[id(a)] = self._batch_actor(
                    tenant_id, a, hashes, by_value, actors, resolve
                )
            a_hash, a_type, starts = per_actor
            action = ev.action
            info = ev.info
            category = info.category
            start = starts.get(action)
            if start is None or start[0] != category:
                start = starts[action] = (
                    category,
                    leaf_head_start(action, a_hash, a_type, category),
                )
            t = ev.target
            severity = int(ev.severity)
            target_type = None if t is None else t.type
            around = arounds.get((severity, target_type))
            if around is None:
                around = arounds[(severity, target_type)] = leaf_tail_around(
                    severity, target_type, tenant_id
                )
            target_id = None if t is None else t.id
            ip = ev.context.get("ip")
            if isinstance(ip, str):
                ip_b = ips.get(ip)
                if ip_b is None:
                    ip_b = ips[ip] = _ip_bytes(ip)
            else:
                ip_b = None
            outcome = ev.outcome
            after = afters.get(outcome)
            if after is None:
                after = afters[outcome] = leaf_after_id(outcome)
            # payload_commitment(salt, payload), inline: the salt is 32
            # bytes by construction.
            commitment = sha256(b"%b%b%b" % (prefix, salt, payload)).digest()
            event_id = ev.id or next_id()
            # leaf_head(...), inline.
            heads.append(
                b'%b%b%b%b","recorded_at":"'
                % (
                    start[1],
                    escape(event_id).encode("utf-8", "surrogatepass"),
                    after,
                    hexlify(commitment),
                )
            )
            # leaf_tail(...), inline: target ids mostly differ, so the
            # parts around the id are what is cached.
            tails.append(
                b"%b%b%b"
                % (
                    around[0],
                    b"null"
                    if target_id is None
                    else escape(target_id).encode("utf-8", "surrogatepass"),
                    around[1],
                )
            )
            prepared.append(
                # Prepared(...) without its Python-level __new__: this runs
                # once per event.
                make(
                    Prepared,
                    (
                        event_id,
                        action,
                        category,
                        severity,
                        info.security,
                        a_hash,
                        a_type,
                        target_type,
                        target_id,
                        outcome,
                        ev.occurred_at,
                        ip_b,
                        payload,
                        salt,
                        commitment,
                    ),
                )
            )
        return prepared, LeafParts(heads, tails), list(actors.values())

    def _batch_resolver(
        self, events: Sequence[Event], hashes: Mapping[str, str]
    ) -> Callable[[str, str], str]:
        """`ActorHashes.resolve` for one batch: at the batch's first actor
        missing from `hashes`, every actor of the batch missing from it is
        resolved at once. One at a time, each new actor was a read and a
        fsync'd transaction: a new tenant's first batch of 1,000 helpdesk
        events (364 actors) took 218 ms on SQLite and 341 ms on PostgreSQL,
        against about 20 ms once its actors were known."""
        first = True

        def resolve(tenant_id: str, actor_id: str) -> str:
            nonlocal first
            if first:
                first = False
                new = {ev.actor.id for ev in events if ev.actor is not None} - hashes.keys()
                if len(new) > 1:
                    self.actor_hashes.resolve_many(tenant_id, new)
                    found = hashes.get(actor_id)  # absent if an erasure emptied the cache
                    if found is not None:
                        return found
            return self.actor_hashes.resolve(tenant_id, actor_id)

        return resolve

    def _batch_actor(
        self,
        tenant_id: str,
        a: Actor | None,
        hashes: Mapping[str, str],
        by_value: dict[tuple[str, str, str | None, str | None], str],
        actors: dict[str, ActorRow],
        resolve: Callable[[str, str], str],
    ) -> _BatchActor:
        """(hash, type, leaf starts by action) of one actor object of a
        batch; `actors` collects the directory rows that changed."""
        if a is None:
            return None, None, {}
        key = (a.id, a.type, a.name, a.email)
        a_hash = by_value.get(key)
        if a_hash is None:
            a_hash = hashes.get(a.id) or resolve(tenant_id, a.id)
            by_value[key] = a_hash
            row = ActorRow(a_hash, a.id, a.type, a.name, a.email)
            if self._directory_cache.get((tenant_id, a_hash)) != row:
                actors[a_hash] = row
        return a_hash, a.type, {}

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

    def erase_actor(
        self, tenant_id: str, actor_id: str, *, actor: Mapping[str, str] | None = None
    ) -> bool:
        """GDPR Art. 17: destroy the actor's secret and directory rows (id,
        name, email) and append `actor.erased`. The log stays intact and
        verifiable; nobody can tell any more which entries were theirs.
        See kimonaudit.erasure."""
        from kimonaudit import erasure

        return erasure.erase_actor(self, tenant_id, actor_id, actor=actor)

    def forget_directory(self, tenant_id: str) -> None:
        """Drop what this process cached about the tenant's directory."""
        with self._cache_lock:
            for k in [k for k in self._directory_cache if k[0] == tenant_id]:
                del self._directory_cache[k]

    def redact(
        self,
        tenant_id: str,
        seq: int,
        reason: str = "",
        *,
        actor: Mapping[str, str] | None = None,
    ) -> bool:
        """Delete one entry's payload and salt (a legal request), keeping
        the reason, and append `audit_log.redacted`. Its leaf keeps the
        payload commitment, so the tree and every proof stand. False if it
        was already redacted. See kimonaudit.redaction."""
        from kimonaudit import redaction

        return redaction.redact(self, tenant_id, seq, reason, actor=actor)

    def redaction(self, tenant_id: str, seq: int) -> tuple[str, int] | None:
        """(reason, redacted_at) of a redacted entry; None if not redacted
        (or redacted before reasons were kept)."""
        return retention_store(self.store).get_redaction(tenant_id, seq)

    def export_bundle(self, tenant_id: str, query: str = "") -> tuple[bytes, BundleInfo]:
        """A verifiable archive of the entries matching `query` (all when
        empty): see kimonaudit.bundle and docs/bundles.md. Not audited by
        itself: adapters record it as audit_log.exported."""
        from kimonaudit import bundle

        return bundle.build(self, tenant_id, query)

    # == retention purge (issue 8; see kimonaudit.purge) ======================
    def run_retention(
        self,
        now: datetime | None = None,
        *,
        dry_run: bool = False,
        tenant_id: str | None = None,
    ) -> RetentionReport:
        """Purge every entry older than its tenant's retention (tenants on
        legal hold are skipped), leaving the log provable; each purge appends
        `audit_log.purged`. `now` defaults to the log's clock."""
        from kimonaudit import purge

        return purge.run_retention(self, now, dry_run=dry_run, tenant_id=tenant_id)

    def retention_status(self, tenant_id: str | None = None) -> list[TenantRetention]:
        """Per tenant: plan, retention, oldest entry, next purge, hold, space used."""
        from kimonaudit import purge

        return purge.status(self, tenant_id)

    # == retention, legal hold (issue 8; see kimonaudit.retention) ==========
    def retention_settings(self, tenant_id: str) -> RetentionSettings:
        return retention.settings(self, tenant_id)

    def set_plan(
        self, tenant_id: str, plan: str, *, actor: Mapping[str, str] | None = None
    ) -> Tenant:
        """Change the tenant's plan; appends `audit.retention.changed`."""
        return retention.set_plan(self, tenant_id, plan, actor=actor)

    def set_retention(
        self, tenant_id: str, months: int | None, *, actor: Mapping[str, str] | None = None
    ) -> Tenant:
        """Set the tenant's own retention (>= 12 months; None: the plan's)."""
        return retention.set_retention(self, tenant_id, months, actor=actor)

    def set_legal_hold(
        self,
        tenant_id: str,
        hold: bool,
        *,
        reason: str | None = None,
        actor: Mapping[str, str] | None = None,
    ) -> Tenant:
        """Put the tenant on legal hold (no purging) or lift it."""
        return retention.set_legal_hold(self, tenant_id, hold, reason=reason, actor=actor)

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
        signed: dict[int, bytes] = {}
        for name, size in (("from", old_size), ("to", new_size)):
            if 0 < size < state.purged:
                # Below the purge point only a signed checkpoint's size can be
                # proven: the purge kept the hashes its proofs need and
                # nothing else of the prefix (kimonaudit.core.purged).
                rec = self.store.get_checkpoint(tenant_id, size)
                if rec is None:
                    raise InvalidInput(
                        f"entries before {state.purged} were purged by retention and no "
                        f"checkpoint was signed at size {size}: inside the purged prefix, "
                        "proofs are kept only for the sizes of signed checkpoints; give one "
                        f"of those, or a size >= {state.purged}",
                        field=name,
                    )
                signed[size] = rec.root
        try:
            old_root, new_root, proof = TreeReader(self.store, tenant_id).consistency(
                old_size, new_size
            )
            for size, root in ((old_size, old_root), (new_size, new_root)):
                if size in signed and signed[size] != root:
                    raise VerificationError(
                        f"the hashes kept for checkpoint {size} give another root than it signed"
                    )
            verify_consistency(old_size, new_size, old_root, new_root, proof)
        except (StoreError, VerificationError) as exc:
            if not signed:
                raise
            # Self-check, as for inclusion proofs: serving a proof that cannot
            # verify would only move the failure to the client.
            raise VerificationError(
                f"tenant {tenant_id}: no consistency proof from {old_size} to {new_size} can be "
                f"served from what the purge at {state.purged} kept ({exc.message}); run "
                "`kimonaudit verify`"
            ) from exc
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

    def verify_index(self, tenant_id: str) -> tuple[int, list[str]]:
        """(entries checked, problems): the search projection compared with
        the ledger, so a deleted or altered index row cannot quietly hide an
        entry from search. A store without a separate projection has nothing
        to compare: (0, [])."""
        self.get_tenant(tenant_id)
        check = getattr(self.store, "check_index", None)
        return (0, []) if check is None else check(tenant_id)

    def reindex(self, progress: Progress | None = None) -> int:
        """Rebuild the search projection from the ledger (every tenant) and
        wait for it; returns the entries indexed."""
        rebuild = getattr(self.store, "rebuild_index", None)
        return 0 if rebuild is None else int(rebuild(progress))

    def verify_checkpoint_note(self, note: str) -> Checkpoint:
        cp, _ = open_checkpoint(note, self.keys.verifiers)
        return cp

    # -- cursors -----------------------------------------------------------
    def sign_token(self, purpose: str, data: bytes) -> bytes:
        """A MAC for opaque tokens (search cursors) handed to clients."""
        key = hmac.new(self.keys.actor_secret, b"kimonaudit/token/" + purpose.encode(), "sha256")
        return hmac.new(key.digest(), data, hashlib.sha256).digest()[:16]

    # -- checkpoint lookup (HTTP API) ----------------------------------------
    def get_checkpoint(self, tenant_id: str, size: int) -> SignedCheckpoint:
        """The checkpoint issued at tree size `size`; NotFound if none was."""
        rec = self.store.get_checkpoint(tenant_id, size)
        if rec is None:
            raise NotFound(f"no checkpoint at tree size {size} in tenant {tenant_id}")
        return self._signed(rec)

    # == search, histogram, export (owned by the search work; see kimonaudit.search) ==
    def search(
        self, tenant_id: str, q: str = "", limit: int = 50, cursor: str | None = None
    ) -> SearchPage:
        """One page of the tenant's entries matching query `q`, newest first;
        pass `page.next_cursor` back for the next. Not audited by itself:
        adapters record their use with kimonaudit.search.record_access."""
        return search_page(self, tenant_id, q, limit, cursor)

    def histogram(self, tenant_id: str, q: str = "", interval: str = "day") -> Histogram:
        """Entries matching `q` counted per UTC hour, day, week or month."""
        return count_by_interval(self, tenant_id, q, interval)

    def export(self, tenant_id: str, q: str = "", fmt: str = "csv") -> Export:
        """A streamed CSV or NDJSON export of the entries matching `q`
        (oldest first): iterate it for bytes chunks."""
        return export_entries(self, tenant_id, q, fmt)

    # == API keys (owned by the HTTP API work; see kimonaudit.apikeys) =====
    def create_api_key(
        self,
        tenant_id: str,
        name: str,
        scopes: Iterable[str],
        *,
        actor: Mapping[str, str] | None = None,
    ) -> tuple[ApiKeyRecord, str]:
        """Create a key; returns its record and the key text, which exists
        nowhere else afterwards (only the secret's SHA-256 is stored).
        Appends `auth.api_token.created` to the tenant's log."""
        self.get_tenant(tenant_id)
        name = apikeys.check_name(name)
        held = apikeys.normalize_scopes(scopes)
        key_id, secret, text = apikeys.generate()
        rec = ApiKeyRecord(
            key_id, tenant_id, name, held, apikeys.hash_secret(secret), self.now_us()
        )
        # The entry is written first: a crash in between leaves a logged key
        # that never worked, never a working key the log does not mention.
        self.append(tenant_id, [_key_event("created", rec, actor)])
        self.store.insert_api_key(rec)
        return rec, text

    def list_api_keys(self, tenant_id: str) -> list[ApiKeyRecord]:
        self.get_tenant(tenant_id)
        return self.store.list_api_keys(tenant_id)

    def get_api_key(self, tenant_id: str, key_id: str) -> ApiKeyRecord:
        if not apikeys.is_key_id(key_id):
            # Not echoed: it may be a whole key, secret included, pasted by mistake.
            raise NotFound("no such API key: give the 12-character key id (after kak_)")
        rec = self.store.get_api_key(key_id)
        if rec is None or rec.tenant_id != tenant_id:
            raise NotFound(f"no API key {key_id!r} in tenant {tenant_id}")
        return rec

    def revoke_api_key(
        self, tenant_id: str, key_id: str, *, actor: Mapping[str, str] | None = None
    ) -> ApiKeyRecord:
        """Revoke a key (idempotent) and append `auth.api_token.revoked`."""
        rec = self.get_api_key(tenant_id, key_id)
        # Revoked first, logged second: the safe order if the process dies in
        # between. A retry appends the entry then; its fixed id keeps it single.
        if rec.revoked_at is None:
            self.store.revoke_api_key(tenant_id, key_id, self.now_us())
        self.append(tenant_id, [_key_event("revoked", rec, actor)])
        return self.get_api_key(tenant_id, key_id)

    def authenticate(self, key_text: str) -> tuple[str, tuple[str, ...]]:
        """(tenant id, scopes) of a valid, unrevoked key; AuthError otherwise,
        with one message for every failure so a caller learns nothing."""
        key_id, secret = apikeys.parse(key_text)
        rec = self.store.get_api_key(key_id)
        matches = apikeys.secret_matches(secret, None if rec is None else rec.secret_hash)
        if rec is None or not matches or rec.revoked_at is not None:
            raise AuthError("invalid or revoked API key")
        self._touch_key(rec.key_id)
        return rec.tenant_id, rec.scopes

    def _touch_key(self, key_id: str) -> None:
        now = self.now_us()
        if now - self._key_touched.get(key_id, 0) < _TOUCH_EVERY_US:
            return
        self._key_touched[key_id] = now
        try:
            self.store.touch_api_key(key_id, now)
        except Exception:
            logging.getLogger(__name__).debug("could not record API key use", exc_info=True)


@functools.lru_cache(maxsize=65_536)
def _ip_bytes(ip: str) -> bytes:
    return ip_to_bytes(ip)


def _key_event(verb: str, rec: ApiKeyRecord, actor: Mapping[str, str] | None) -> dict[str, Any]:
    return {
        # A fixed id per key and verb makes a retried create or revoke a no-op.
        "id": f"api-key-{rec.key_id}-{verb}",
        "action": f"auth.api_token.{verb}",
        "actor": dict(actor or SYSTEM_ACTOR),
        "target": {"type": "api_key", "id": rec.key_id},
        "metadata": {"name": rec.name, "prefix": rec.prefix, "scopes": list(rec.scopes)},
    }


def _tenant(r: TenantRecord) -> Tenant:
    return Tenant(r.id, r.name, r.plan, r.created_at, r.retention_months, r.legal_hold)
