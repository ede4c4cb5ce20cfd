"""Scripted episodes that the random mix cannot promise: the life of
ticket 10482 (the README's "who viewed ticket 10482"), role changes in the
last week ("who changed roles last week"), and people joining and leaving
the team."""

from __future__ import annotations

from functools import partial

from kimonaudit.demo import security
from kimonaudit.demo.helpdesk import MACROS, US_PER_MINUTE, Script, TenantSim, Timed
from kimonaudit.demo.rhythm import US_PER_DAY, US_PER_HOUR
from kimonaudit.demo.work import apply_macro
from kimonaudit.demo.world import Person, make_person

_MACRO = {m[0]: m for m in MACROS}
EMAIL = {"id": "channel_email", "type": "system", "name": "Email channel"}
WEB = {"via": "web"}


def scripts(sim: TenantSim) -> list[Script]:
    """The episodes of one tenant that fall inside its history."""
    out: list[Script] = []
    if sim.p.anchor_ticket is not None:
        out += ticket_story(sim, sim.p.anchor_ticket)
    out += recent_role_changes(sim, 3 if sim.p.anchor_ticket is not None else 1)
    out += churn(sim)
    return [s for s in out if sim.start_us <= s[0] < sim.end_us]


def ticket_story(sim: TenantSim, tid: int) -> list[Script]:
    """Ticket `tid` arrives by email; an agent takes it and asks for
    details, a team lead routes it to Billing, a billing agent refunds; in
    the last week a reviewer and an admin look at it again."""
    t0 = sim.story_start_us
    sim.created.add(tid)
    target = {"type": "ticket", "id": str(tid)}
    agents = [p for p in sim.staff if p.type == "agent"]
    a, b, c, d = sim.rnd.sample(agents, 4)
    b.roles.add("team_lead")
    c.roles.add("billing_agent")
    sim.keep.update({a.id, b.id, c.id, d.id})

    def viewed(t: int, p: Person) -> list[Timed]:
        return sim.one(t, "ticket.viewed", p, target=target, metadata=WEB)

    def changed(t: int, p: Person, **fields: str) -> list[Timed]:
        tk = sim.ticket(tid)
        changes = [c for name, value in fields.items() if (c := sim.set_field(tk, name, value))]
        return sim.one(t, "ticket.field_changed", p, target=target, changes=changes, metadata=WEB)

    def arrives() -> list[Timed]:
        tk = sim.ticket(tid)
        tk.status, tk.priority = "new", "normal"
        meta = {
            "channel": "email",
            "priority": "normal",
            "subject": "Refund not received for order 88321",
        }
        t3 = t0 + 21 * US_PER_MINUTE
        return [
            *sim.one(t0, "ticket.created", EMAIL, target=target, metadata=meta),
            *viewed(t0 + 12 * US_PER_MINUTE, a),
            *changed(t0 + 14 * US_PER_MINUTE, a, assignee=a.id, status="open"),
            (t3, apply_macro(sim, t3, a, tid, *_MACRO["m_3"])),
        ]

    day1 = sim.weekday_on_or_after(sim.at_local(t0 + US_PER_DAY, 10, 5))

    def escalated() -> list[Timed]:
        return [
            *viewed(day1, a),
            *viewed(day1 + 25 * US_PER_MINUTE, b),
            *changed(day1 + 29 * US_PER_MINUTE, b, group="Billing", priority="high"),
        ]

    day2 = sim.weekday_on_or_after(sim.at_local(day1 + US_PER_DAY, 14, 10))

    def refunded() -> list[Timed]:
        t1 = day2 + 16 * US_PER_MINUTE
        return [*viewed(day2, c), (t1, apply_macro(sim, t1, c, tid, *_MACRO["m_5"]))]

    review = sim.weekday_on_or_before(sim.at_local(sim.end_us - 5 * US_PER_DAY, 11, 2))
    audit = sim.weekday_on_or_before(sim.at_local(sim.end_us - 2 * US_PER_DAY, 15, 47))
    return [
        (t0, 4, arrives),
        (day1, 3, escalated),
        (day2, 2, refunded),
        (review, 1, partial(viewed, review, d)),
        (audit, 1, lambda: viewed(audit, sim.admin(audit))),
    ]


def recent_role_changes(sim: TenantSim, count: int) -> list[Script]:
    """`count` role changes on weekdays within the last seven days."""
    days = []
    for k in range(2, 7):
        if sim.local(sim.at_local(sim.end_us - k * US_PER_DAY, 12))[0] < 5:
            days.append(k)
    out: list[Script] = []
    for k in sorted(sim.rnd.sample(days, min(count, len(days)))):
        hour, minute = sim.rnd.randrange(10, 16), sim.rnd.randrange(60)
        at = sim.at_local(sim.end_us - k * US_PER_DAY, hour, minute)
        out.append((at, 1, partial(security.role_change, sim, at)))
    return out


def churn(sim: TenantSim) -> list[Script]:
    """Hires (account, role, SSO group) and a leaver (the reverse), on
    weekday mornings at fixed points of the history."""
    span = sim.end_us - sim.start_us
    if len(sim.staff) > 20:
        plans = [(0.35, "hire"), (0.55, "leave"), (0.72, "hire")]
    else:
        plans = [(0.5, "hire")] if len(sim.staff) > 8 else []
    size = 3 if sim.p.sso else 2
    out: list[Script] = []
    for frac, kind in plans:
        at = sim.weekday_on_or_after(sim.at_local(sim.start_us + int(span * frac), 9, 30))
        if kind == "hire":
            names = {x.name for x in sim.staff}
            p = make_person(sim.rnd, sim.p, len(sim.staff) + 1, names, "agent")
            p.active_from = at + US_PER_HOUR
            sim.add_person(p)
            out.append((at, size, partial(_hire, sim, at, p)))
        else:
            stay = sim.keep | {"agent_42"}  # the docs' example agent stays
            pool = [x for x in sim.staff if x.type == "agent" and x.id not in stay]
            p = sim.rnd.choice([x for x in pool if x.active_from == 0])
            p.active_to = at
            out.append((at, size, partial(_leave, sim, at, p)))
    return out


def _hire(sim: TenantSim, at: int, p: Person) -> list[Timed]:
    admin = sim.admin(at)
    target = {"type": "user", "id": p.id}
    via = "scim" if sim.p.sso else "admin_ui"
    roles = {"field": "roles", "from": [], "to": sorted(p.roles)}
    out = [
        *sim.one(at, "user.created", admin, target=target, metadata={"role": "agent", "via": via}),
        *sim.one(
            at + 40_000_000,
            "role.assigned",
            admin,
            target=target,
            changes=[roles],
            metadata={"role": "agent"},
        ),
    ]
    if sim.p.sso:
        groups = {"field": "groups", "from": [], "to": sorted(p.groups)}
        out += sim.one(
            at + 3 * US_PER_MINUTE,
            "sso.group.member_added",
            security.SCIM,
            target=target,
            context=security.SCIM_CONTEXT,
            changes=[groups],
            metadata={"group": "helpdesk-agents", "idp": "saml"},
        )
    return out


def _leave(sim: TenantSim, at: int, p: Person) -> list[Timed]:
    admin = sim.admin(at)
    target = {"type": "user", "id": p.id}
    out: list[Timed] = []
    t = at
    if sim.p.sso:
        groups = {"field": "groups", "from": sorted(p.groups), "to": []}
        out += sim.one(
            t,
            "sso.group.member_removed",
            security.SCIM,
            target=target,
            context=security.SCIM_CONTEXT,
            changes=[groups],
            metadata={"group": "helpdesk-agents", "idp": "saml"},
        )
        t += 2 * US_PER_MINUTE
    roles = {"field": "roles", "from": sorted(p.roles), "to": []}
    p.roles.clear()
    p.groups.clear()
    out += sim.one(
        t,
        "role.revoked",
        admin,
        target=target,
        changes=[roles],
        metadata={"role": ", ".join(roles["from"])},
    )
    out += sim.one(
        t + US_PER_MINUTE,
        "user.suspended",
        admin,
        target=target,
        metadata={"reason": "left the company"},
    )
    return out
