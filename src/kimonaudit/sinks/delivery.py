"""The delivery engine: each destination's entries, in seq order, at least
once, across restarts and across several processes on one database.

Per destination the store keeps a cursor (`next_seq`: every entry below
it was delivered or did not match the filter; `cp_size`: every checkpoint
up to that tree size was delivered) and a lease. A pass:

1. takes the lease (a compare-and-set on the delivery row; it expires
   after `lease_s`, longer than any request's timeout, so at most one
   process sends a destination's batches at a time);
2. forms the next batch, or re-forms the *in-flight* one: before the first
   attempt the batch's range and message id are saved, so a retry, even
   after a crash or by another process, sends the very same events under
   the same ``webhook-id``;
3. checks the destination's host again (SSRF guard: DNS may have changed)
   and sends to the address it checked;
4. on success advances the cursor (only while still holding the lease);
   on failure schedules the next attempt on `SCHEDULE` with ±20% jitter,
   or as the receiver's Retry-After asks if that is later. HTTP 410 Gone
   disables the destination. When the schedule is exhausted (about 4.2
   days of retrying) the destination is paused with the last error as
   its reason; resuming it catches up from the cursor.

A batch holds up to `max_events` entries and `max_bytes` rendered bytes;
when fewer entries are waiting than `max_events`, the engine waits up to
`max_wait_ms` after the oldest one arrived to fill it. Checkpoints follow
the entries they cover: a checkpoint of tree size N goes out once every
entry below N has.

Entries purged by retention before they were delivered are skipped and
the gap is reported as the destination's last error; an in-flight batch
whose entries were purged is dropped (retention waits for destinations
that are within their retry window; see docs/streaming.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from kimonaudit.core.destination_records import DeliveryState, DestinationRecord
from kimonaudit.core.records import EntryRow
from kimonaudit.destinations import DELIVERY_ACTOR, Destinations
from kimonaudit.errors import AuditLogError
from kimonaudit.results import SignedCheckpoint
from kimonaudit.sinks import config as dconfig
from kimonaudit.sinks.events import StreamEvent, from_checkpoint, from_entry
from kimonaudit.sinks.formats import text_renderer
from kimonaudit.sinks.transports import Batch, Outcome, Target, Transport, open_transport

log = logging.getLogger(__name__)

# Seconds before attempt n+1 after n failures (n = 1, 2, ...): about 4.2
# days in all, then the destination is paused.
SCHEDULE: tuple[float, ...] = (
    5, 30, 120, 600, 1_800, 3_600, 7_200, 14_400, 28_800, 43_200, 86_400, 86_400, 86_400,
)  # fmt: skip
JITTER = 0.2
MAX_RETRY_AFTER_S = 86_400.0
LAG_SAMPLE_US = 60_000_000  # one lag sample per destination per minute
LAG_KEEP_US = 24 * 3600 * 1_000_000

TransportFactory = Callable[[str, Target, dict[str, Any], float], Transport]


def backoff(
    attempt: int, schedule: Sequence[float] = SCHEDULE, rng: random.Random | None = None
) -> float | None:
    """Seconds to wait after the `attempt`-th consecutive failure (1-based),
    jittered ±20%; None once the schedule is exhausted."""
    if attempt > len(schedule):
        return None
    base = schedule[attempt - 1]
    return base * (1 + JITTER * (2 * (rng or random).random() - 1))


@dataclass
class PassStats:
    batches: int = 0
    events: int = 0
    checkpoints: int = 0
    failures: int = 0


class Deliverer:
    """Delivers every active destination of a log; `run_once` is one pass,
    `run` loops until stopped. Safe to run in several processes at once."""

    def __init__(
        self,
        destinations: Destinations,
        *,
        owner: str | None = None,
        schedule: Sequence[float] = SCHEDULE,
        lease_s: float = 60.0,
        timeout_s: float = 10.0,
        time_budget_s: float = 5.0,
        workers: int = 4,
        transport_factory: TransportFactory = open_transport,
        cut_checkpoints: bool = False,
        checkpoint_interval_s: float = 1.0,
    ) -> None:
        if timeout_s * 2 >= lease_s:
            raise ValueError("the lease must outlast two request timeouts")
        self.dest = destinations
        self.log = destinations.log
        self.store: Any = destinations.store
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.schedule = tuple(schedule)
        self.lease_us = int(lease_s * 1_000_000)
        self.timeout_s = timeout_s
        self.budget_s = time_budget_s
        self.workers = workers
        self.open_transport = transport_factory
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="kimonaudit-delivery")
        self._last_sample: dict[tuple[str, str], int] = {}
        self.totals = PassStats()
        self._lock = threading.Lock()
        # Alone (`kimonaudit deliver`), nothing else cuts checkpoints.
        self.cut_checkpoints = cut_checkpoints
        self.checkpoint_interval_s = checkpoint_interval_s
        self._last_cut: dict[str, float] = {}

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for rec in self.store.list_destinations(None):
            with contextlib.suppress(AuditLogError):
                self.store.release_lease(rec.tenant_id, rec.destination_id, self.owner)

    # -- loop ----------------------------------------------------------------
    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        while not stop.is_set():
            try:
                busy = self.run_once()
            except Exception:  # keep delivering whatever one pass hit
                log.exception("delivery pass failed")
                busy = PassStats()
            if not busy.batches:
                stop.wait(interval)

    def run_once(self) -> PassStats:
        """One pass over every active destination (in parallel)."""
        recs = [r for r in self.store.list_destinations(None) if r.state == "active"]
        if self.cut_checkpoints:
            self._cut({r.tenant_id for r in recs})
        total = PassStats()
        for stats in self._pool.map(self._deliver_safely, recs):
            total.batches += stats.batches
            total.events += stats.events
            total.checkpoints += stats.checkpoints
            total.failures += stats.failures
        with self._lock:
            self.totals.batches += total.batches
            self.totals.events += total.events
            self.totals.checkpoints += total.checkpoints
            self.totals.failures += total.failures
        return total

    def _cut(self, tenants: set[str]) -> None:
        now = time.monotonic()
        for tid in sorted(tenants):
            if now - self._last_cut.get(tid, -1e9) < self.checkpoint_interval_s:
                continue
            latest = self.store.latest_checkpoint(tid)
            if latest is None or latest.size < self.store.tree_state(tid).size:
                self.log.checkpoint(tid)
                self._last_cut[tid] = now

    def _deliver_safely(self, rec: DestinationRecord) -> PassStats:
        try:
            return self.deliver(rec)
        except Exception:
            log.exception("delivering destination %s failed", rec.destination_id)
            return PassStats()

    # -- one destination -----------------------------------------------------
    def deliver(self, rec: DestinationRecord) -> PassStats:
        """Send `rec`'s due batches for up to the time budget."""
        stats = PassStats()
        tid, did = rec.tenant_id, rec.destination_id
        now = self.log.now_us()
        state = self.store.get_delivery(tid, did)
        if state is None or state.next_attempt_at > now:
            return stats
        if not self.store.acquire_lease(tid, did, self.owner, now, now + self.lease_us):
            return stats
        transport: Transport | None = None
        try:
            deadline = time.monotonic() + self.budget_s
            opened_for: tuple[str, bytes] | None = None
            while time.monotonic() < deadline:
                state = self.store.get_delivery(tid, did)
                current = self.store.get_destination(tid, did)
                if state is None or current is None or current.state != "active":
                    break
                # Settings are read again before each batch: a change (URL,
                # format, filter, secrets) applies from the next one.
                cfg = json.loads(current.config)
                if transport is not None and opened_for != (current.config, current.sealed):
                    transport.close()
                    transport = None
                now = self.log.now_us()
                if state.next_attempt_at > now:
                    break
                if not self.store.acquire_lease(tid, did, self.owner, now, now + self.lease_us):
                    break
                batch, state = self._batch(current, cfg, state, now)
                if batch is None:
                    break
                try:
                    address = self.dest.check_endpoint(current.kind, cfg["url"])
                except AuditLogError as exc:
                    outcome = Outcome(False, exc.message)
                else:
                    if transport is None:
                        target = Target(
                            did, tid, cfg["url"], urlsplit(cfg["url"]).hostname or "",
                            address, current.format, cfg["settings"],
                        )  # fmt: skip
                        transport = self.open_transport(
                            current.kind, target, self.dest.secrets(current), self.timeout_s
                        )
                        opened_for = (current.config, current.sealed)
                    if current.kind == "s3":
                        batch = replace(batch, covering=self._covering(tid, batch.end))
                    try:
                        outcome = transport.send(replace(batch, attempt=state.attempts + 1))
                    except Exception as exc:  # a transport bug must not stop the loop
                        log.exception("transport %s failed", current.kind)
                        outcome = Outcome(False, f"{type(exc).__name__}: {exc}"[:300])
                if outcome.ok:
                    if not self._succeeded(state, batch):
                        break
                    stats.batches += 1
                    stats.checkpoints += sum(1 for e in batch.events if e.is_checkpoint)
                    stats.events += sum(1 for e in batch.events if not e.is_checkpoint)
                else:
                    stats.failures += 1
                    self._failed(current, state, outcome)
                    break
            self._sample_lag(rec)
        finally:
            if transport is not None:
                transport.close()
            self.store.release_lease(tid, did, self.owner)
        return stats

    def _batch(
        self, rec: DestinationRecord, cfg: dict[str, Any], state: DeliveryState, now: int
    ) -> tuple[Batch | None, DeliveryState]:
        """The in-flight batch again, or the next one (saved as in flight)."""
        tree = self.store.tree_state(rec.tenant_id)
        if state.inflight:
            fl = json.loads(state.inflight)
            if fl["first"] >= tree.purged:
                # The saved batch again, as it was formed: its own format and
                # filter (a later change applies from the next batch), so its
                # bytes and id are those of every earlier attempt.
                fmt = fl.get("format", rec.format)
                fcfg = {**cfg, "filter": fl.get("filter", cfg["filter"])}
                render = text_renderer(fmt)
                again = list(self._events(rec, fcfg, fl["first"], fl["end"], fl["cp_high"],
                                           state))  # fmt: skip
                return (
                    Batch(fl["msg_id"], fl["first"], fl["end"], again,
                          [render(e) for e in again], fl["created_at"], format=fmt),
                    state,
                )  # fmt: skip
            # Retention purged (some of) the batch while the destination was
            # past its retry window: those bytes cannot be formed again. The
            # batch is dropped and the gap reported below, as for any entry
            # purged before delivery.
            state = replace(state, inflight=None)
        render = text_renderer(rec.format)
        first = state.next_seq
        if first < tree.purged:
            state = replace(
                state,
                next_seq=tree.purged,
                last_error=f"entries {first}-{tree.purged - 1} were purged before delivery",
                last_error_at=now,
            )
            self.store.save_delivery(state, self.owner)
            first = tree.purged
        batching = dconfig.Batching(**cfg["batch"])
        pending = tree.size - first
        latest = self.store.latest_checkpoint(rec.tenant_id)
        cp_waiting = latest is not None and latest.size > state.cp_size and latest.size <= first
        if pending <= 0 and not cp_waiting:
            return None, state
        if 0 < pending < batching.max_events and batching.max_wait_ms and not cp_waiting:
            oldest = self.store.get_entry(rec.tenant_id, first)
            if oldest is not None and now - oldest.recorded_at < batching.max_wait_ms * 1000:
                return None, state
        # Entries, cut by count and rendered size.
        events: list[StreamEvent] = []
        rendered: list[str] = []
        size = 0
        end = first
        scan_end = min(tree.size, first + max(batching.max_events * 4, 1_000))
        for row in self._rows(rec, cfg, first, scan_end):
            ev = from_entry(row)
            out = render(ev)
            n = len(out.encode())
            if events and (len(events) >= batching.max_events or size + n > batching.max_bytes):
                break
            if rec.kind == "datadog" and n > dconfig.DATADOG_MAX_EVENT_BYTES:
                log.warning("entry %s is larger than Datadog accepts; sent truncated", row.seq)
            events.append(ev)
            rendered.append(out)
            size += n
            end = row.seq + 1
        else:
            end = scan_end  # every entry up to the scan end was seen (matched or not)
        cps = self._checkpoints(rec.tenant_id, state.cp_size, end)
        cp_high = cps[-1].size if cps else state.cp_size
        for cp in cps:
            ev = from_checkpoint(cp)
            events.append(ev)
            rendered.append(render(ev))
        if not events:
            # Nothing matched the filter in the scanned range: move on.
            moved = replace(state, next_seq=end)
            self.store.save_delivery(moved, self.owner)
            return self._batch(rec, cfg, moved, now) if end < tree.size else (None, moved)
        msg_id = f"msg_{rec.destination_id}_{first}_{end}_{cp_high}"
        # Format and filter are saved with the batch: a retry re-forms exactly
        # these bytes even if the destination was changed meanwhile.
        inflight = {"first": first, "end": end, "cp_high": cp_high, "msg_id": msg_id,
                    "created_at": now, "format": rec.format,
                    "filter": cfg["filter"]}  # fmt: skip
        state = replace(state, inflight=json.dumps(inflight))
        if not self.store.save_delivery(state, self.owner):
            return None, state
        return Batch(msg_id, first, end, events, rendered, now, format=rec.format), state

    def _rows(
        self, rec: DestinationRecord, cfg: dict[str, Any], first: int, end: int
    ) -> Iterator[EntryRow]:
        if not cfg["filter"]:
            return iter(self.store.iter_entries(rec.tenant_id, first, end))
        from kimonaudit.search import compile_query

        compiled = compile_query(self.log, rec.tenant_id, cfg["filter"])
        return iter(
            self.store.iter_search(rec.tenant_id, compiled.sql, after_seq=first - 1, before_seq=end)
        )

    def _events(
        self, rec: DestinationRecord, cfg: dict[str, Any], first: int, end: int, cp_high: int,
        state: DeliveryState,
    ) -> Iterator[StreamEvent]:  # fmt: skip
        for row in self._rows(rec, cfg, first, end):
            yield from_entry(row)
        for cp in self._checkpoints(rec.tenant_id, state.cp_size, cp_high):
            yield from_checkpoint(cp)

    def _checkpoints(self, tenant_id: str, above: int, upto: int) -> list[SignedCheckpoint]:
        recs = self.store.checkpoints_between(tenant_id, above, upto)
        origin = self.log.origin(tenant_id)
        return [
            SignedCheckpoint(r.tenant_id, origin, r.size, r.root, r.note, r.issued_at) for r in recs
        ]

    def _covering(self, tenant_id: str, end: int) -> SignedCheckpoint | None:
        """The first checkpoint whose tree holds every seq below `end`
        (one is cut if none does yet)."""
        recs = self.store.checkpoints_between(tenant_id, end - 1, 1 << 62, 1)
        if not recs:
            self.log.checkpoint(tenant_id)
            recs = self.store.checkpoints_between(tenant_id, end - 1, 1 << 62, 1)
        if not recs:
            return None
        r = recs[0]
        return SignedCheckpoint(r.tenant_id, self.log.origin(tenant_id), r.size, r.root, r.note,
                                r.issued_at)  # fmt: skip

    def _succeeded(self, state: DeliveryState, batch: Batch) -> bool:
        fl = json.loads(state.inflight or "{}")
        entries = [e for e in batch.events if not e.is_checkpoint]
        now = self.log.now_us()
        done = replace(
            state,
            next_seq=batch.end,
            cp_size=max(state.cp_size, fl.get("cp_high", state.cp_size)),
            inflight=None,
            attempts=0,
            next_attempt_at=0,
            last_success_at=now,
            delivered_events=state.delivered_events + len(entries),
            delivered_checkpoints=state.delivered_checkpoints + len(batch.events) - len(entries),
            delivered_batches=state.delivered_batches + 1,
            last_delivered_at=entries[-1].time_us if entries else state.last_delivered_at,
        )
        if not self.store.save_delivery(done, self.owner):
            log.warning("lost the lease of %s; another process delivers it", state.destination_id)
            return False
        return True

    def _failed(self, rec: DestinationRecord, state: DeliveryState, outcome: Outcome) -> None:
        now = self.log.now_us()
        attempts = state.attempts + 1
        failed = replace(
            state,
            attempts=attempts,
            failed_attempts=state.failed_attempts + 1,
            last_error=outcome.error or "delivery failed",
            last_error_at=now,
        )
        if outcome.gone:
            self.store.save_delivery(replace(failed, next_attempt_at=0), self.owner)
            reason = f"the receiver answered 410 Gone: {outcome.error}"[:500]
            self.store.set_destination_state(
                rec.tenant_id, rec.destination_id, "disabled", reason, now
            )
            self.dest._entry(rec, "paused", DELIVERY_ACTOR, {"reason": reason, "state": "disabled"})
            return
        wait = None if outcome.give_up else backoff(attempts, self.schedule)
        if wait is None:
            self.store.save_delivery(replace(failed, next_attempt_at=0), self.owner)
            reason = (
                f"paused: retrying cannot help: {outcome.error}"
                if outcome.give_up
                else f"paused after {attempts} failed attempts: {outcome.error}"
            )[:500]
            self.store.set_destination_state(
                rec.tenant_id, rec.destination_id, "paused", reason, now
            )
            self.dest._entry(rec, "paused", DELIVERY_ACTOR, {"reason": reason})
            return
        if outcome.retry_after is not None:
            wait = max(wait, min(outcome.retry_after, MAX_RETRY_AFTER_S))
        self.store.save_delivery(replace(failed, next_attempt_at=now + int(wait * 1e6)), self.owner)

    def _sample_lag(self, rec: DestinationRecord) -> None:
        key = (rec.tenant_id, rec.destination_id)
        now = self.log.now_us()
        slot = now - now % LAG_SAMPLE_US
        if self._last_sample.get(key) == slot:
            return
        view = self.dest.view(rec)
        self.store.add_lag_sample(
            rec.tenant_id, rec.destination_id, slot, view.health.lag_events,
            view.health.lag_seconds, now - LAG_KEEP_US,
        )  # fmt: skip
        self._last_sample[key] = slot
