"""One simulated helpdesk tenant: its staff, tickets and settings, and the
stream of audit events its day-to-day work produces, in time order."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from kimonaudit.core.timefmt import format_ts
from kimonaudit.demo import rhythm
from kimonaudit.demo.rhythm import US_PER_DAY, US_PER_HOUR, local_hour
from kimonaudit.demo.world import MOBILE_APPS, Person, Profile, make_staff

Event = dict[str, Any]
Timed = tuple[int, Event]
Activity = Callable[["TenantSim", int], list[Timed]]
# A scripted episode: it starts at `at`, yields exactly `size` events, and
# is built when the timeline reaches it, so it sees the state of that moment.
Script = tuple[int, int, Callable[[], list[Timed]]]

US_PER_SECOND = 1_000_000
US_PER_MINUTE = 60 * US_PER_SECOND
PRIORITIES = ("low", "normal", "high", "urgent")
TAGS = (
    "billing",
    "refund",
    "bug",
    "feature_request",
    "vip",
    "shipping",
    "invoice",
    "login_issue",
    "password_reset",
    "integration",
)
STATUS_NEXT: dict[str, tuple[str, ...]] = {
    "new": ("open",),
    "open": ("pending", "pending", "solved", "on-hold"),
    "pending": ("open", "solved"),
    "on-hold": ("open",),
    "solved": ("closed", "closed", "open"),
    "closed": (),
}
MACROS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("m_1", "Close and thank", (("status", "solved"), ("tags+", "thanked"))),
    ("m_2", "Escalate to Tier 2", (("group", "Tier 2"), ("priority", "high"))),
    ("m_3", "Ask for more details", (("status", "pending"), ("tags+", "awaiting_customer"))),
    ("m_4", "Take it", (("assignee", "$me"), ("status", "open"))),
    ("m_5", "Refund approved", (("group", "Billing"), ("tags+", "refund"), ("status", "solved"))),
    ("m_6", "Mark as spam", (("status", "closed"), ("tags+", "spam"))),
    ("m_7", "Known outage: link status page", (("tags+", "outage"), ("status", "pending"))),
    ("m_8", "Urgent: page on-call", (("priority", "urgent"), ("group", "Escalations"))),
)


@dataclass
class Ticket:
    status: str = "open"
    priority: str = "normal"
    assignee: str | None = None
    group: str = "Tier 1"
    tags: tuple[str, ...] = field(default_factory=tuple)


class TenantSim:
    """State of one tenant's helpdesk plus helpers every activity uses."""

    def __init__(self, profile: Profile, seed: int, start_us: int, end_us: int) -> None:
        self.p = profile
        # One stream per tenant: a tenant's history does not depend on the
        # size of the others.
        self.rnd = random.Random(f"kimonaudit-demo:{seed}:{profile.key}")
        self.start_us = start_us
        self.end_us = end_us
        self.staff: list[Person] = make_staff(self.rnd, profile)
        self._leads()
        self.tickets: dict[int, Ticket] = {}
        self.created: set[int] = set()
        per_us = profile.tickets_per_day / US_PER_DAY
        self.tickets_per_us = per_us
        self.mean_ticket_age = profile.tickets_per_day * 2.5  # in tickets: ~2.5 days
        self.first_ticket = 1001
        # When the anchor ticket (10482) arrives: 20 days before the end, on a
        # weekday morning. Ticket numbers are set so that it is the newest then.
        self.story_start_us = max(
            start_us, self.weekday_on_or_after(self.at_local(end_us - 20 * US_PER_DAY, 9, 40))
        )
        if profile.anchor_ticket is not None:
            elapsed = int((self.story_start_us - start_us) * per_us)
            self.first_ticket = max(1, profile.anchor_ticket - elapsed)
        self.keep: set[str] = set()  # ids the scripts rely on (no one leaves)
        self.workflows: dict[str, str] = {}
        self.counters: dict[str, int] = {}
        self.permissions: dict[tuple[str, str], bool] = {}
        self._cum: list[float] = list(itertools.accumulate(p.weight for p in self.staff))

    def add_person(self, p: Person) -> None:
        self.staff.append(p)
        self._cum = list(itertools.accumulate(x.weight for x in self.staff))

    def _leads(self) -> None:
        agents = [p for p in self.staff if p.type == "agent"]
        for p in self.rnd.sample(agents, max(1, len(agents) // 8)):
            p.roles.add("team_lead")

    # -- helpers -------------------------------------------------------------
    def local(self, us: int) -> tuple[int, int]:
        return local_hour(us, self.p.utc_offset_hours)

    def next_id(self, kind: str) -> int:
        n = self.counters.get(kind, 0) + 1
        self.counters[kind] = n
        return n

    def person(self, t: int, pool: Sequence[Person] | None = None) -> Person:
        """A weighted pick among staff active at `t` (busy agents act more)."""
        if pool is None:
            for _ in range(20):
                p = self.rnd.choices(self.staff, cum_weights=self._cum)[0]
                if p.active(t):
                    return p
            pool = self.staff
        active = [p for p in pool if p.active(t)] or list(pool) or self.staff
        return self.rnd.choice(active)

    def agent(self, t: int) -> Person:
        for _ in range(20):
            p = self.person(t)
            if p.type == "agent":
                return p
        return self.person(t)

    def admin(self, t: int) -> Person:
        return self.person(t, [p for p in self.staff if p.type == "admin"])

    def lead_or_admin(self, t: int) -> Person:
        return self.person(t, [p for p in self.staff if p.roles & {"admin", "team_lead"}])

    def context(self, p: Person, t: int, mobile: bool = False) -> dict[str, str]:
        weekday, hour = self.local(t)
        at_office = weekday < 5 and 8 <= hour < 18 and self.rnd.random() < 0.85
        return {
            "ip": p.ips[0] if at_office else p.ips[1],
            "user_agent": self.rnd.choice(MOBILE_APPS) if mobile else p.user_agent,
            "request_id": f"req_{self.rnd.getrandbits(48):012x}",
        }

    def event(
        self, t: int, action: str, actor: Person | dict[str, str] | None, **rest: Any
    ) -> Event:
        """An ingest event (docs/events.md) that happened at `t`. The helpdesk
        is the client, so the time it reports goes in `occurred_at`."""
        ev: Event = {"action": action, "occurred_at": format_ts(t)}
        if isinstance(actor, Person):
            ev["actor"] = actor.actor()
            if "context" not in rest:
                ev["context"] = self.context(actor, t, mobile=rest.pop("mobile", False))
        elif actor is not None:
            ev["actor"] = actor
        rest.pop("mobile", None)
        ev.update({k: v for k, v in rest.items() if v is not None})
        return ev

    def one(
        self, t: int, action: str, actor: Person | dict[str, str] | None, **rest: Any
    ) -> list[Timed]:
        """An activity of a single event."""
        return [(t, self.event(t, action, actor, **rest))]

    def later(self, t: int, lo_s: float, hi_s: float) -> int:
        """A moment `lo_s`..`hi_s` seconds after `t`, never past the end."""
        return min(self.end_us - 1, t + int(self.rnd.uniform(lo_s, hi_s) * US_PER_SECOND))

    def at_local(self, day_us: int, hour: int, minute: int = 0) -> int:
        """Some moment in the minute `hour:minute` local time on the local
        day containing `day_us` (people do not act on the second)."""
        off = self.p.utc_offset_hours * US_PER_HOUR
        midnight = (day_us + off) // US_PER_DAY * US_PER_DAY - off
        moment = self.rnd.randrange(US_PER_MINUTE)
        return midnight + hour * US_PER_HOUR + minute * US_PER_MINUTE + moment

    def weekday_on_or_after(self, us: int) -> int:
        while self.local(us)[0] >= 5:
            us += US_PER_DAY
        return us

    def weekday_on_or_before(self, us: int) -> int:
        while self.local(us)[0] >= 5:
            us -= US_PER_DAY
        return us

    # -- tickets -------------------------------------------------------------
    def newest_ticket(self, t: int) -> int:
        return self.first_ticket + int((t - self.start_us) * self.tickets_per_us)

    def pick_ticket(self, p: Person, t: int, reuse: float) -> int:
        """Mostly recent tickets; often the one the agent just had open."""
        newest = self.newest_ticket(t)
        last = p.last_ticket
        if last is not None and last <= newest and self.rnd.random() < reuse:
            return last
        age = int(self.rnd.expovariate(1.0 / self.mean_ticket_age))
        tid = max(self.first_ticket, newest - age)
        p.last_ticket = tid
        return tid

    def ticket(self, tid: int) -> Ticket:
        state = self.tickets.get(tid)
        if state is None:
            state = self.tickets[tid] = Ticket(priority=self.rnd.choice(PRIORITIES[:3]))
        return state

    def set_field(self, tk: Ticket, name: str, value: Any) -> dict[str, Any] | None:
        """Set one ticket field; the change record, or None if unchanged."""
        if name == "tags+":
            if value in tk.tags:
                return None
            before = list(tk.tags)
            tk.tags = (*tk.tags, value)
            return {"field": "tags", "from": before, "to": list(tk.tags)}
        before = getattr(tk, name)
        if before == value:
            return None
        setattr(tk, name, value)
        return {"field": name, "from": before, "to": value}

    # -- the timeline --------------------------------------------------------
    def timeline(
        self,
        n: int,
        working_mix: Sequence[tuple[Activity, float]],
        quiet_mix: Sequence[tuple[Activity, float]],
        scripts: Sequence[Script],
    ) -> Iterator[Timed]:
        """Exactly `n` events in time order: scripted episodes first claim
        their share, the rest follow the weekly rhythm."""
        rnd = self.rnd
        heap: list[tuple[int, int, Any]] = []
        tick = itertools.count()
        budget = n
        for at, size, make in sorted(scripts, key=lambda s: s[0]):
            if size <= budget:
                heapq.heappush(heap, (at, next(tick), (size, make)))
                budget -= size
        mixes = {}
        for key, mix in (("work", working_mix), ("quiet", quiet_mix)):
            acts = [a for a, w in mix if w > 0]
            mixes[key] = (acts, list(itertools.accumulate(w for _, w in mix if w > 0)))
        debt = 0

        def due(until: int) -> Iterator[Timed]:
            while heap and heap[0][0] <= until:
                at, _, item = heapq.heappop(heap)
                if isinstance(item, tuple):
                    size, make = item
                    made = make()
                    if len(made) != size:
                        raise AssertionError(f"a demo script made {len(made)} events, not {size}")
                    for t, ev in made:
                        t = min(max(t, at), self.end_us - 1)
                        heapq.heappush(heap, (t, next(tick), ev))
                else:
                    yield at, item

        for hour in rhythm.hours(rnd, budget, self.start_us, self.end_us, self.p.utc_offset_hours):
            if not hour.count:
                continue
            lo = max(hour.start_us, self.start_us)
            width = max(1, min(hour.start_us + US_PER_HOUR, self.end_us) - lo)
            acts, cum = mixes["work" if hour.working else "quiet"]
            for off in sorted(rnd.randrange(width) for _ in range(hour.count)):
                t = lo + off
                yield from due(t)
                if debt:
                    debt -= 1
                    continue
                if not budget:
                    continue
                made = rnd.choices(acts, cum_weights=cum)[0](self, t)[:budget]
                budget -= len(made)
                debt += len(made) - 1
                yield made[0]
                for later_t, ev in made[1:]:
                    heapq.heappush(heap, (later_t, next(tick), ev))
        yield from due(2**62)
