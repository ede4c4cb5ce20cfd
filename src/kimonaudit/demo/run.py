"""Drive the simulation: create the demo tenants, play each tenant's
timeline through `AuditLog.append` with the simulated clock set to the
moment each batch is shipped, and cut a checkpoint per simulated day."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kimonaudit.core.timefmt import format_ts, to_us
from kimonaudit.demo import security, work
from kimonaudit.demo.clock import SimClock
from kimonaudit.demo.helpdesk import US_PER_SECOND, Activity, Event, TenantSim, Timed
from kimonaudit.demo.rhythm import US_PER_DAY, US_PER_HOUR
from kimonaudit.demo.scripts import scripts
from kimonaudit.demo.world import PROFILES, Profile
from kimonaudit.errors import ConfigError, InvalidInput
from kimonaudit.service import MAX_BATCH, AuditLog

DEFAULT_EVENTS = 200_000
DEFAULT_MONTHS = 14
DEFAULT_SEED = 10482
MIN_EVENTS = 1_000
US_PER_MONTH = 30 * US_PER_DAY + US_PER_DAY * 44 // 100  # 365.25 / 12 days


def flush_seconds_for(events: int, span_us: int) -> int:
    """How long a tenant's simulated helpdesk buffers events before shipping
    them: about as long as 15 of its events take on average, between a
    minute and four hours.

    Every entry of one append shares its `recorded_at` (the ledger stamps a
    batch at once), so this is the resolution of `recorded_at`; each event
    keeps its exact time in `occurred_at`. An append costs around a
    millisecond however small it is, so this trades resolution for speed:
    at the default size Acme Support ships hourly (about 7,000 appends for
    its 150,000 events); ten times the events give ten times finer times.
    """
    per_hour = events / max(1, span_us / US_PER_HOUR)
    return max(60, min(4 * 3600, round(15 / max(per_hour, 1e-9) * 3600)))


Progress = Callable[[int, int], None]


def _mix(p: Profile, quiet: bool) -> list[tuple[Activity, float]]:
    """What one event slot turns into, by weight. Out of hours the API
    (integrations run around the clock) and attackers make up more of it."""
    return [
        (work.view, 30 if quiet else 50),
        (work.change, 8 if quiet else 14),
        (work.macro, 3 if quiet else 5),
        (work.create, 2),
        (work.api_call, 45 if quiet else 11),
        (work.merge, 0.2 if quiet else 0.4),
        (work.delete_spam, 0.05),
        (security.login, 3 if quiet else 5),
        (security.logout, 1 if quiet else 2),
        (security.mistyped_password, 0.3 if quiet else 0.6),
        (security.failed_burst, 0.5 if quiet else 0.2),
        (security.export, 0.15 if quiet else 0.4),
        (security.workflow, 0.05 if quiet else 0.35),
        (security.macro_edit, 0.05 if quiet else 0.2),
        (security.role_change, 0.01 if quiet else 0.08),
        (security.permission, 0.005 if quiet else 0.04),
        (security.sso_group, (0.02 if quiet else 0.1) if p.sso else 0),
        (security.denied, 0.1 if quiet else 0.3),
        (security.audit_search, 0.03 if quiet else 0.15),
        (security.rare_admin, 0.01 if quiet else 0.05),
    ]


@dataclass(frozen=True)
class DemoTenant:
    id: str
    name: str
    plan: str
    domain: str
    events: int
    actions: dict[str, int]
    api_key: str  # an admin key, shown once: only its hash is stored
    flush_seconds: int  # the longest a batch waited: the resolution of recorded_at

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "plan": self.plan,
            "domain": self.domain,
            "events": self.events,
            "actions": dict(sorted(self.actions.items())),
            "api_key": self.api_key,
            "flush_seconds": self.flush_seconds,
        }


@dataclass(frozen=True)
class DemoSummary:
    tenants: tuple[DemoTenant, ...]
    start_us: int
    end_us: int
    seed: int
    appends: int  # batches appended
    checkpoints: int
    seconds: float

    @property
    def events(self) -> int:
        return sum(t.events for t in self.tenants)

    @property
    def actions(self) -> dict[str, int]:
        total: Counter[str] = Counter()
        for t in self.tenants:
            total.update(t.actions)
        return dict(total.most_common())

    def to_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "start": format_ts(self.start_us),
            "end": format_ts(self.end_us),
            "seed": self.seed,
            "appends": self.appends,
            "checkpoints": self.checkpoints,
            "seconds": round(self.seconds, 3),
            "tenants": [t.to_json() for t in self.tenants],
            "actions": self.actions,
        }


def demo_tenant_names(log: AuditLog) -> list[str]:
    """Names of tenants a demo run made (``Acme Support``, ``Acme Support (2)``)."""
    bases = tuple(p.name for p in PROFILES)
    return [
        t.name
        for t in log.list_tenants()
        if t.name.startswith(bases) and (t.name in bases or t.name.endswith(")"))
    ]


def split(total: int, shares: Sequence[float]) -> list[int]:
    parts = [int(total * s / sum(shares)) for s in shares]
    parts[0] += total - sum(parts)
    return parts


def simulate(
    log: AuditLog,
    clock: SimClock,
    *,
    events: int = DEFAULT_EVENTS,
    months: int = DEFAULT_MONTHS,
    seed: int = DEFAULT_SEED,
    end: datetime | None = None,
    flush_seconds: int | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> DemoSummary:
    """Write `events` events of helpdesk history spanning `months` months up
    to `end` (default: now) into three new tenants, through `log.append`.

    `log` must have been opened with ``clock=clock``. The same seed, size
    and end give the same history (event ids and salts aside). Events are
    shipped in batches of at most 1,000 spanning at most `flush_seconds`
    (default: per tenant, `flush_seconds_for`).
    """
    if events < MIN_EVENTS:
        raise InvalidInput(
            f"the demo needs at least {MIN_EVENTS} events, got {events}", field="events"
        )
    if not 1 <= months <= 120:
        raise InvalidInput(f"months must be 1-120, got {months}", field="months")
    began = time.perf_counter()
    end_us = to_us(end or datetime.now(UTC))
    start_us = end_us - months * US_PER_MONTH
    clock.set_us(start_us)
    if log.now_us() != start_us:
        raise ConfigError("simulate() needs the log opened with clock=<the same SimClock>")
    existing = demo_tenant_names(log)
    if existing and not force:
        raise InvalidInput(
            f"this database already holds demo tenants ({', '.join(sorted(existing))}); "
            "use --force to add another set, or choose another --db"
        )
    suffix = f" ({len(existing) // len(PROFILES) + 1})" if existing else ""
    sims = [TenantSim(p, seed, start_us, end_us) for p in PROFILES]
    tenants = [log.create_tenant(p.name + suffix, plan=p.plan) for p in PROFILES]
    shipper = _Shipper(log, clock, events, end_us, seed, progress)
    results = []
    for sim, tenant, n in zip(
        sims, tenants, split(events, [p.share for p in PROFILES]), strict=True
    ):
        stream = sim.timeline(n, _mix(sim.p, quiet=False), _mix(sim.p, quiet=True), scripts(sim))
        flush = flush_seconds or flush_seconds_for(n, end_us - start_us)
        actions = shipper.ship(tenant.id, stream, flush * US_PER_SECOND)
        # An admin key for trying the API, made "now" by one of the tenant's
        # admins (which logs `auth.api_token.created`), then a last checkpoint.
        admin = sim.admin(end_us - 1).actor()
        _, key = log.create_api_key(tenant.id, "demo admin", ["admin"], actor=admin)
        actions["auth.api_token.created"] += 1
        log.checkpoint(tenant.id)
        shipper.checkpoints += 1
        results.append(
            DemoTenant(
                tenant.id,
                tenant.name,
                tenant.plan,
                sim.p.domain,
                sum(actions.values()),
                dict(actions),
                key,
                flush,
            )
        )
    return DemoSummary(
        tuple(results),
        start_us,
        end_us,
        seed,
        shipper.appends,
        shipper.checkpoints,
        time.perf_counter() - began,
    )


class _Shipper:
    """Plays the helpdesk's audit client: buffers events and ships a batch
    when the oldest has waited `flush_us` or the batch is full, with the
    clock set to the moment of shipping; checkpoints once a simulated day."""

    def __init__(
        self,
        log: AuditLog,
        clock: SimClock,
        total: int,
        end_us: int,
        seed: int,
        progress: Progress | None,
    ) -> None:
        self.log, self.clock, self.total, self.end_us = log, clock, total, end_us
        self.progress = progress
        self.rnd = random.Random(f"kimonaudit-demo:{seed}:shipping")
        self.done = self.appends = self.checkpoints = 0

    def ship(self, tenant_id: str, stream: Iterable[Timed], flush_us: int) -> Counter[str]:
        actions: Counter[str] = Counter()
        batch: list[Event] = []
        first = last = 0
        day = None
        for t, ev in stream:
            if batch and (t - first > flush_us or len(batch) >= MAX_BATCH):
                day = self._send(tenant_id, batch, last, day, actions)
                batch = []
            if not batch:
                first = t
            batch.append(ev)
            last = t
        if batch:
            self._send(tenant_id, batch, last, day, actions)
        self.clock.set_us(self.end_us)
        return actions

    def _send(
        self, tenant_id: str, batch: list[Event], last: int, day: int | None, actions: Counter[str]
    ) -> int:
        # Shipped a moment after the newest event in it.
        delay = int(self.rnd.uniform(0.05, 1.5) * US_PER_SECOND)
        self.clock.set_us(min(self.end_us, last + delay))
        self.log.append(tenant_id, batch)
        self.appends += 1
        actions.update(ev["action"] for ev in batch)
        self.done += len(batch)
        if self.progress is not None:
            self.progress(self.done, self.total)
        today = last // US_PER_DAY
        if day is not None and today != day:
            self.log.checkpoint(tenant_id)
            self.checkpoints += 1
        return today
