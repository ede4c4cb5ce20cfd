"""The retention purge (issue 8): removes every entry older than its
tenant's retention, leaving the log provable.

Per tenant, unless on legal hold:

1. the cut-off is `now` minus the retention in calendar months; the purge
   point P is the first seq recorded at or after it (never past what an
   active SIEM destination has yet to deliver);
2. in one transaction the store keeps the compact range of [0, P) (O(log n)
   hashes, kimonaudit.core.purged), for every checkpoint issued below P the
   O(log n) hashes its fresh consistency proofs need (`kept_nodes`), the
   consistency proofs from those checkpoints issued since the last purge
   (and from the previous purge point) to P, and moves `tree_state.purged`
   to P;
3. the rows go in small transactions (ingest continues between them): on
   PostgreSQL whole monthly partitions are dropped first where every row
   is purged, then the rest row by row; stored subtree hashes inside the
   prefix go too, except those kept in step 2;
4. `audit_log.purged` is appended with the cut-off, the count and P.

`verify` then reports [0, P) as purged by policy; every retained entry
still proves inclusion and every checkpoint, before or after P, still
proves consistent (docs/integrity.md).
"""

from __future__ import annotations

import calendar
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from kimonaudit.core.merkle import CompactRange, verify_consistency
from kimonaudit.core.note import Checkpoint
from kimonaudit.core.purged import (
    PrefixProof,
    checkpoint_nodes,
    kept_nodes,
    prefix_nodes,
    prefix_range,
    proof_within,
    roots_before,
)
from kimonaudit.core.timefmt import format_ts, from_us, to_us
from kimonaudit.errors import AuditLogError, Conflict, InvalidProof, NotFound, StoreError
from kimonaudit.results import Problem
from kimonaudit.store.retention import purge_store
from kimonaudit.treeread import TreeReader

if TYPE_CHECKING:
    from kimonaudit.service import AuditLog

log = logging.getLogger("kimonaudit.retention")

PURGE_ACTOR: Mapping[str, str] = {"id": "kimonaudit-retention", "type": "system"}
BATCH = 1_000  # rows per delete transaction: short enough that appends barely wait
# Free pages handed back per step on SQLite: moving 1,000 took about 50 ms
# of the write lock (measured), 256 about a quarter of that.
RECLAIM_PAGES = 256


def months_before(now_us: int, months: int) -> int:
    """`now_us` moved back `months` calendar months (the day clamped to the
    month's length), in µs."""
    d = from_us(now_us)
    total = d.year * 12 + (d.month - 1) - months
    year, month = divmod(total, 12)
    month += 1
    day = min(d.day, calendar.monthrange(year, month)[1])
    return to_us(d.replace(year=year, month=month, day=day))


def months_after(us: int, months: int) -> int:
    return months_before(us, -months)


@dataclass(frozen=True)
class TenantPurge:
    tenant_id: str
    plan: str
    retention_months: int
    legal_hold: bool
    cutoff: int  # µs: entries recorded before this are expired
    purged_before: int  # the purge point before this run
    purge_point: int  # first retained seq after this run (or what it would be)
    rows_deleted: int = 0
    partitions_dropped: tuple[str, ...] = ()
    seconds: float = 0.0
    skipped: str | None = None  # why nothing was purged ("legal hold", ...)

    @property
    def purged(self) -> int:
        """Entries this run removed (or would remove)."""
        return self.purge_point - self.purged_before

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "plan": self.plan,
            "retention_months": self.retention_months,
            "legal_hold": self.legal_hold,
            "cutoff": format_ts(self.cutoff),
            "purged": self.purged,
            "first_retained_seq": self.purge_point,
            "rows_deleted": self.rows_deleted,
            "partitions_dropped": list(self.partitions_dropped),
            "seconds": round(self.seconds, 3),
            "skipped": self.skipped,
        }


@dataclass(frozen=True)
class RetentionReport:
    now: int
    dry_run: bool
    tenants: tuple[TenantPurge, ...] = field(default=())

    @property
    def purged(self) -> int:
        return sum(t.purged for t in self.tenants)

    def to_json(self) -> dict[str, Any]:
        return {
            "now": format_ts(self.now),
            "dry_run": self.dry_run,
            "purged": self.purged,
            "tenants": [t.to_json() for t in self.tenants],
        }


def _purge_point(audit: AuditLog, tenant_id: str, cutoff: int, size: int) -> int:
    store: Any = audit.store
    at = store.seq_at(tenant_id, cutoff)
    point = size if at is None else int(at)
    floor = getattr(store, "delivery_floor", None)
    if callable(floor):  # an active SIEM destination still needs these (docs/streaming.md)
        held = floor(tenant_id)
        if held is not None:
            point = min(point, int(held))
    return point


def plan(audit: AuditLog, tenant_id: str, now_us: int) -> TenantPurge:
    from kimonaudit.retention import settings

    s = settings(audit, tenant_id)
    cutoff = months_before(now_us, s.months)
    state = audit.store.tree_state(tenant_id)
    base = TenantPurge(
        tenant_id, s.plan, s.months, s.legal_hold, cutoff, state.purged, state.purged
    )
    if s.legal_hold:
        return _with(base, skipped="legal hold")
    point = _purge_point(audit, tenant_id, cutoff, state.size)
    if point <= state.purged:
        return _with(base, skipped="nothing has expired")
    return _with(base, purge_point=point)


def _with(p: TenantPurge, **kw: Any) -> TenantPurge:
    from dataclasses import replace

    return replace(p, **kw)


def purge_tenant(
    audit: AuditLog, tenant_id: str, now_us: int, *, dry_run: bool = False, batch: int = BATCH
) -> TenantPurge:
    started = time.perf_counter()
    p = plan(audit, tenant_id, now_us)
    store = purge_store(audit.store)
    if dry_run:
        return p
    upto, cur = p.purge_point, p.purged_before
    signed = sorted({c.size for c in audit.store.list_checkpoints(tenant_id)})
    if upto > cur:
        reader = TreeReader(audit.store, tenant_id)
        got = _kept_hashes(reader, tenant_id, upto, cur, [m for m in signed if m < upto])
        nodes = [(lvl, idx, h) for (lvl, idx), h in sorted(got.items())]
        proofs = []
        sizes = sorted({m for m in signed if cur < m < upto} | ({cur} if cur else set()))
        for m in sizes:
            old_root, _, proof = reader.consistency(m, upto)
            proofs.append(PrefixProof(m, upto, old_root, tuple(proof)))
        try:
            store.begin_purge(tenant_id, upto, nodes, proofs)
        except Conflict:  # another process purged this tenant meanwhile
            return _with(p, purge_point=cur, skipped="purged meanwhile by another process")
    dropped: tuple[str, ...] = ()
    drop = getattr(audit.store, "drop_purged_partitions", None)
    if callable(drop) and upto > cur:
        dropped = tuple(drop(p.cutoff))
    deleted = 0
    purged_now = audit.store.tree_state(tenant_id).purged
    # No waiting for the search indexer: it never reads below the purge
    # point once it is set, the stores take out of the projection whatever
    # it already holds there, and a batch it had in flight can only leave
    # postings for rows that are gone, which search ignores (it reads the
    # ledger row) and `verify --index` does not count (it starts at the
    # purge point). Waiting for a busy indexer used to stop the purge before
    # it recorded itself.
    while True:  # also finishes a purge that an earlier run left half done
        n = store.delete_purged(tenant_id, purged_now, batch)
        deleted += n
        if n < batch:
            break
    reclaim = getattr(audit.store, "reclaim_space", None)
    if callable(reclaim) and deleted:
        while reclaim(RECLAIM_PAGES) >= RECLAIM_PAGES:  # SQLite: in small steps
            pass
    if upto <= cur and purged_now and recorded_purge(audit.store, tenant_id, purged_now) is False:
        # An earlier run moved the purge point and stopped before recording
        # it: record it now, so the log says what happened.
        cur, upto = 0, purged_now
    if upto > cur:
        keep = kept_nodes(upto, [m for m in signed if m < upto])
        store.delete_purged_nodes(tenant_id, upto, keep, batch, since=cur)
        audit.append(
            tenant_id,
            [
                {
                    "id": purge_record_id(tenant_id, upto),
                    "action": "audit_log.purged",
                    "actor": dict(PURGE_ACTOR),
                    "target": {"type": "audit_log", "id": tenant_id},
                    "metadata": {
                        "cutoff": format_ts(p.cutoff),
                        "retention_months": p.retention_months,
                        "purged": upto - cur,
                        "first_retained_seq": upto,
                        "partitions_dropped": list(dropped),
                    },
                }
            ],
        )
    return _with(
        p,
        rows_deleted=deleted,
        partitions_dropped=dropped,
        seconds=time.perf_counter() - started,
    )


def _kept_hashes(
    reader: TreeReader, tenant_id: str, upto: int, since: int, sizes: list[int]
) -> dict[tuple[int, int], bytes]:
    """The hashes a purge up to `upto` adds to what the purge up to `since`
    kept (kimonaudit.core.purged.kept_nodes): the compact range of the
    prefix, and for each checkpoint size below it the nodes its consistency
    proofs need. Some are folded from nodes that earlier purge kept; if
    those cannot be read (damaged, or purged by a version that did not keep
    them), that checkpoint is left out rather than the purge stopped:
    `verify` reports it, and it is still checked through the kept proofs."""
    try:
        return reader.node_hashes(kept_nodes(upto, sizes, since))
    except StoreError:
        pass
    # Without the compact range nothing is provable: let that raise.
    got = reader.node_hashes(kept_nodes(upto, [], since))
    for m in sizes:
        try:
            got.update(reader.node_hashes(kept_nodes(upto, [m], since)))
        except StoreError as exc:
            log.warning(
                "tenant %s: checkpoint %d predates purge point %d and its kept hashes cannot "
                "be read (%s); it can no longer be served a consistency proof",
                tenant_id,
                m,
                upto,
                exc.message,
            )
    return got


def run_retention(
    audit: AuditLog,
    now: datetime | None = None,
    *,
    dry_run: bool = False,
    tenant_id: str | None = None,
    batch: int = BATCH,
) -> RetentionReport:
    now_us = audit.now_us() if now is None else to_us(now)
    tenants = [audit.get_tenant(tenant_id)] if tenant_id else audit.list_tenants()
    done = []
    for t in tenants:
        try:
            done.append(purge_tenant(audit, t.id, now_us, dry_run=dry_run, batch=batch))
        except AuditLogError as exc:
            log.error("retention purge of tenant %s failed: %s", t.id, exc.message)
            raise
    return RetentionReport(now_us, dry_run, tuple(done))


# -- status --------------------------------------------------------------------------
@dataclass(frozen=True)
class TenantRetention:
    tenant_id: str
    name: str
    plan: str
    retention_months: int
    legal_hold: bool
    purged: int  # entries removed by retention so far (the purge point)
    entries: int
    bytes: int
    oldest: int | None  # recorded_at of the oldest retained entry
    next_purge: int | None  # when that entry expires (None: on hold, or empty)

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "name": self.name,
            "plan": self.plan,
            "retention_months": self.retention_months,
            "legal_hold": self.legal_hold,
            "purged": self.purged,
            "entries": self.entries,
            "bytes": self.bytes,
            "oldest_entry": None if self.oldest is None else format_ts(self.oldest),
            "next_purge": None if self.next_purge is None else format_ts(self.next_purge),
        }


def status(audit: AuditLog, tenant_id: str | None = None) -> list[TenantRetention]:
    out = []
    tenants = [audit.get_tenant(tenant_id)] if tenant_id else audit.list_tenants()
    store = purge_store(audit.store)
    for t in tenants:
        oldest, n, size = store.retention_stats(t.id)
        purged = audit.store.tree_state(t.id).purged
        nxt = None
        if oldest is not None and not t.legal_hold:
            nxt = months_after(oldest, t.retention_months)
        out.append(
            TenantRetention(
                t.id, t.name, t.plan, t.retention_months, t.legal_hold, purged, n, size, oldest, nxt
            )
        )
    return out


def purge_record_id(tenant_id: str, purge_point: int) -> str:
    """The event id of the `audit_log.purged` entry recording a purge up to
    `purge_point`: fixed, so a retry appends it once and verify finds it."""
    return f"purge-{tenant_id}-{purge_point}"


def recorded_purge(store: object, tenant_id: str, purge_point: int) -> bool | None:
    """Whether an `audit_log.purged` entry records this purge point (None:
    its payload was redacted, so it cannot say)."""
    import json

    s: Any = store
    row = s.get_entry_by_event_id(tenant_id, purge_record_id(tenant_id, purge_point))
    if row is None or row.action != "audit_log.purged" or row.seq < purge_point:
        return False
    if row.payload is None:
        return None
    meta = json.loads(row.payload).get("metadata", {})
    return bool(meta.get("first_retained_seq") == purge_point)


# -- verification after a purge --------------------------------------------------------
def stored_prefix(audit: AuditLog, tenant_id: str) -> CompactRange:
    purged, nodes, _ = purge_store(audit.store).purge_state(tenant_id)
    try:
        return prefix_range(purged, nodes)
    except KeyError:
        raise NotFound(
            f"tenant {tenant_id}: the compact range of the purged prefix is incomplete"
        ) from None


def check_purged_prefix(
    store: object,
    tenant_id: str,
    checkpoints: Mapping[int, Checkpoint],
    add: Callable[[Problem], None],
) -> CompactRange:
    """For `verify`: the compact range the rebuild starts from, after
    checking every checkpoint at or below the purge point through the kept
    proofs. Problems go to `add`."""
    purged, nodes, proofs = purge_store(store).purge_state(tenant_id)
    keys = prefix_nodes(purged)
    lacking = [k for k in keys if k not in nodes]
    if lacking:
        add(
            Problem(
                None,
                "purge",
                f"the compact range of the purged prefix [0, {purged}) lacks {len(lacking)} of "
                f"its {len(keys)} hashes: retained entries cannot be tied to the checkpoints",
            )
        )
        return CompactRange(purged, [bytes(32)] * len(keys))
    prefix = prefix_range(purged, nodes)
    if recorded_purge(store, tenant_id, purged) is False:
        add(
            Problem(
                None,
                "purge",
                f"entries [0, {purged}) are gone as purged, but no audit_log.purged entry "
                "records a purge up to there: more (or less) was removed than any recorded purge",
            )
        )
    try:
        roots = roots_before(prefix, proofs)
    except InvalidProof as exc:
        add(Problem(None, "purge", f"the proofs kept for checkpoints before the purge: {exc}"))
        roots = {prefix.size: prefix.root()}
    for size, cp in sorted(checkpoints.items()):
        if 0 < size <= purged and roots.get(size) != cp.root_hash:
            add(
                Problem(
                    None,
                    "checkpoint",
                    f"checkpoint {size}, issued before the purge at {purged}, does not prove "
                    "consistent with what the purge kept",
                )
            )
    _check_kept_for_checkpoints(store, tenant_id, prefix, nodes, checkpoints, add)
    return prefix


def _check_kept_for_checkpoints(
    store: object,
    tenant_id: str,
    prefix: CompactRange,
    prefix_hashes: Mapping[tuple[int, int], bytes],
    checkpoints: Mapping[int, Checkpoint],
    add: Callable[[Problem], None],
) -> None:
    """Each checkpoint below the purge point must still get a fresh proof
    (`prove --from M`): the hashes kept for it must give its signed root and
    prove it consistent with the prefix's root, which the rebuild binds to
    every later checkpoint. A changed or lost kept hash shows here, not only
    when someone asks for that proof."""
    purged = prefix.size
    sizes = sorted(s for s in checkpoints if 0 < s < purged)
    if not sizes:
        return
    s: Any = store
    wanted = {k for m in sizes for k in checkpoint_nodes(m, purged)}
    stored, _ = s.tree_hashes(tenant_id, wanted, [])
    have = {**stored, **prefix_hashes}
    for m in sizes:
        try:
            old_root, _, proof = proof_within(m, purged, have)
        except KeyError:
            add(
                Problem(
                    None,
                    "purge",
                    f"checkpoint {m}, issued before the purge at {purged}: some of the hashes "
                    f"kept for its proofs are gone, so `prove --from {m}` cannot be served",
                )
            )
            continue
        root = checkpoints[m].root_hash
        try:
            if old_root != root:
                raise InvalidProof(
                    f"they give the root {old_root.hex()[:16]}..., not the signed one"
                )
            verify_consistency(m, purged, root, prefix.root(), proof)
        except InvalidProof as exc:
            add(
                Problem(
                    None,
                    "purge",
                    f"checkpoint {m}, issued before the purge at {purged}: the hashes kept for "
                    f"its proofs do not prove it ({exc})",
                )
            )
