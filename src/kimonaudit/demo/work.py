"""Everyday helpdesk work: viewing and changing tickets, macros, new
tickets, merges, and the API traffic of integrations."""

from __future__ import annotations

import random
from typing import Any

from kimonaudit.demo.helpdesk import (
    MACROS,
    PRIORITIES,
    STATUS_NEXT,
    TAGS,
    TenantSim,
    Ticket,
    Timed,
)
from kimonaudit.demo.world import TICKET_GROUPS, Person

FIELDS = ("status", "assignee", "priority", "group", "tags")
FIELD_WEIGHTS = (40, 25, 12, 10, 13)
CHANNELS = ("email", "web_form", "phone", "chat")
CHANNEL_ACTORS = {
    "email": {"id": "channel_email", "type": "system", "name": "Email channel"},
    "web_form": {"id": "channel_web_form", "type": "system", "name": "Web form"},
}
ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "/api/v2/tickets/{id}"),
    ("GET", "/api/v2/tickets"),
    ("PUT", "/api/v2/tickets/{id}"),
    ("POST", "/api/v2/tickets"),
    ("GET", "/api/v2/users/{id}"),
    ("GET", "/api/v2/search"),
    ("POST", "/api/v2/tickets/{id}/comments"),
    ("GET", "/api/v2/macros"),
    ("GET", "/api/v2/views/{id}/tickets"),
)
ROUTE_WEIGHTS = (40, 12, 12, 5, 8, 10, 8, 3, 2)


def view(sim: TenantSim, t: int) -> list[Timed]:
    """An agent opens a ticket, usually a recent one."""
    p = sim.person(t)
    target = {"type": "ticket", "id": str(sim.pick_ticket(p, t, reuse=0.3))}
    mobile = sim.rnd.random() < 0.06
    meta = {"via": "mobile" if mobile else "web"}
    return sim.one(t, "ticket.viewed", p, target=target, mobile=mobile, metadata=meta)


def _one_change(sim: TenantSim, tid: int, who: str) -> dict[str, Any] | None:
    rnd = sim.rnd
    tk = sim.ticket(tid)
    name = rnd.choices(FIELDS, FIELD_WEIGHTS)[0]
    if name == "status" and STATUS_NEXT[tk.status]:
        return sim.set_field(tk, "status", rnd.choice(STATUS_NEXT[tk.status]))
    if name == "assignee":
        others = [p.id for p in sim.staff if p.type == "agent" and p.id != tk.assignee]
        to = who if rnd.random() < 0.5 or not others else rnd.choice(others)
        return sim.set_field(tk, "assignee", to)
    if name == "priority":
        return sim.set_field(
            tk, "priority", rnd.choice([x for x in PRIORITIES if x != tk.priority])
        )
    if name == "group":
        return sim.set_field(tk, "group", rnd.choice([g for g in TICKET_GROUPS if g != tk.group]))
    if tk.tags and rnd.random() < 0.3:
        before = list(tk.tags)
        gone = rnd.choice(before)
        tk.tags = tuple(x for x in tk.tags if x != gone)
        return {"field": "tags", "from": before, "to": list(tk.tags)}
    return sim.set_field(tk, "tags+", rnd.choice(TAGS))


def change(sim: TenantSim, t: int) -> list[Timed]:
    """One to three fields of a ticket the agent is working on."""
    p = sim.person(t)
    tid = sim.pick_ticket(p, t, reuse=0.7)
    want = sim.rnd.choices((1, 2, 3), (75, 20, 5))[0]
    changes: list[dict[str, Any]] = []
    for _ in range(want + 4):  # a pick can be a no-op (a closed ticket's status)
        c = _one_change(sim, tid, p.id)
        if c is not None and all(c["field"] != x["field"] for x in changes):
            changes.append(c)
            if len(changes) == want:
                break
    if not changes:
        return view(sim, t)
    ev = sim.event(
        t,
        "ticket.field_changed",
        p,
        target={"type": "ticket", "id": str(tid)},
        changes=changes,
        metadata={"via": "web"},
    )
    return [(t, ev)]


def macro(sim: TenantSim, t: int) -> list[Timed]:
    """A macro, recorded with the fields it changed."""
    p = sim.person(t)
    tid = sim.pick_ticket(p, t, reuse=0.6)
    mid, title, sets = sim.rnd.choices(MACROS, (14, 10, 16, 12, 5, 4, 3, 2))[0]
    return [(t, apply_macro(sim, t, p, tid, mid, title, sets))]


def apply_macro(
    sim: TenantSim,
    t: int,
    p: Person,
    tid: int,
    mid: str,
    title: str,
    sets: tuple[tuple[str, str], ...],
) -> dict[str, Any]:
    tk = sim.ticket(tid)
    changes = []
    for name, value in sets:
        c = sim.set_field(tk, name, p.id if value == "$me" else value)
        if c is not None:
            changes.append(c)
    return sim.event(
        t,
        "macro.applied",
        p,
        target={"type": "ticket", "id": str(tid)},
        changes=changes or None,
        metadata={"macro_id": mid, "macro_title": title, "via": "web"},
    )


def create(sim: TenantSim, t: int) -> list[Timed]:
    """A new ticket, by email or web form (the channel is the actor) or by
    an agent on the phone or in chat."""
    tid = sim.newest_ticket(t) + 1
    if tid in sim.created:
        return view(sim, t)
    sim.created.add(tid)
    sim.tickets[tid] = tk = Ticket(status="new", priority=sim.rnd.choice(PRIORITIES))
    channel = sim.rnd.choices(CHANNELS, (55, 25, 12, 8))[0]
    target = {"type": "ticket", "id": str(tid)}
    meta = {"channel": channel, "priority": tk.priority}
    if channel in CHANNEL_ACTORS:
        ev = sim.event(t, "ticket.created", CHANNEL_ACTORS[channel], target=target, metadata=meta)
    else:
        p = sim.agent(t)
        p.last_ticket = tid
        ev = sim.event(t, "ticket.created", p, target=target, metadata=meta)
    return [(t, ev)]


def merge(sim: TenantSim, t: int) -> list[Timed]:
    """A duplicate is merged into an older ticket and closed."""
    p = sim.agent(t)
    tid = sim.pick_ticket(p, t, reuse=0.5)
    into = max(sim.first_ticket, tid - sim.rnd.randrange(1, 40))
    if into == tid:
        return view(sim, t)
    tk = sim.ticket(tid)
    before = tk.status
    tk.status = "closed"
    ev = sim.event(
        t,
        "ticket.merged",
        p,
        target={"type": "ticket", "id": str(tid)},
        changes=[{"field": "status", "from": before, "to": "closed"}],
        metadata={"merged_into": str(into), "via": "web"},
    )
    return [(t, ev)]


def delete_spam(sim: TenantSim, t: int) -> list[Timed]:
    """Spam is deleted by a team lead or an admin."""
    p = sim.lead_or_admin(t)
    tid = sim.pick_ticket(p, t, reuse=0.2)
    target = {"type": "ticket", "id": str(tid)}
    return sim.one(t, "ticket.deleted", p, target=target, metadata={"reason": "spam"})


def _status(rnd: random.Random, method: str, route: str) -> int:
    roll = rnd.random()
    if roll < 0.02:
        return 429
    if roll < 0.025:
        return 401
    if roll < 0.032:
        return rnd.choice((500, 502, 503))
    if roll < 0.06 and "{id}" in route:
        return 404
    if roll < 0.075 and method != "GET":
        return 422
    return 201 if method == "POST" else 200


def _outcome(status: int) -> str:
    if status < 400:
        return "success"
    if status in (401, 403):
        return "denied"
    return "error" if status >= 500 else "failure"


def api_call(sim: TenantSim, t: int) -> list[Timed]:
    """An integration's API request: method, route, status and duration."""
    rnd = sim.rnd
    clients = sim.p.api_clients
    c = rnd.choices(clients, [x.weight for x in clients])[0]
    method, route = rnd.choices(ROUTES, ROUTE_WEIGHTS)[0]
    status = _status(rnd, method, route)
    if status >= 500:
        duration = rnd.randrange(1_500, 30_000)  # timeouts upstream
    elif status == 429:
        duration = rnd.randrange(1, 6)  # refused before any work
    else:
        duration = max(3, int(rnd.lognormvariate(3.7, 0.6)))  # median ~40 ms
    target = None
    if route.startswith("/api/v2/tickets/{id}"):
        age = int(rnd.expovariate(1 / sim.mean_ticket_age))
        target = {"type": "ticket", "id": str(max(sim.first_ticket, sim.newest_ticket(t) - age))}
    elif route == "/api/v2/users/{id}":
        target = {"type": "user", "id": rnd.choice(sim.staff).id}
    elif route == "/api/v2/views/{id}/tickets":
        target = {"type": "view", "id": f"view_{rnd.randrange(1, 12)}"}
    actor = {"id": c.id, "type": "api_client", "name": c.name}
    ctx = {"ip": c.ip, "user_agent": c.user_agent, "request_id": f"req_{rnd.getrandbits(48):012x}"}
    meta = {"method": method, "route": route, "status": status, "duration_ms": duration}
    return sim.one(
        t, "api.request", actor, target=target, context=ctx, outcome=_outcome(status), metadata=meta
    )
