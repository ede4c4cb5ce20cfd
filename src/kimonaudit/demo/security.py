"""Security-relevant activity: sign-ins and failed-login bursts, exports,
workflow and macro edits, and the occasional role, permission and SSO
group change."""

from __future__ import annotations

from typing import Any

from kimonaudit.demo.helpdesk import TenantSim, Timed
from kimonaudit.demo.world import ATTACKER_AGENTS, EXTRA_ROLES, Person

SCIM = {"id": "scim_provisioning", "type": "system", "name": "SCIM provisioning"}
SCIM_CONTEXT = {"ip": "198.51.100.250", "user_agent": "scim-client/2.0"}
MACRO_TITLES = ("Shipping delay apology", "Password reset steps", "Invoice copy attached")
SSO_GROUPS = ("helpdesk-tier2", "helpdesk-billing", "helpdesk-emea", "helpdesk-night-shift")
GUESSED_USERS = ("admin", "root", "support", "test", "helpdesk", "info", "administrator")
WORKFLOW_NAMES = (
    "Auto-close solved tickets after 4 days",
    "Route billing emails to Billing",
    "Escalate VIP customers",
    "Notify on-call for urgent tickets",
    "Tag refund requests",
    "Reopen on customer reply",
    "SLA breach warning",
    "Assign Spanish tickets to the LATAM team",
    "Auto-reply outside business hours",
)
PERMISSIONS = (
    "export_tickets",
    "delete_tickets",
    "manage_macros",
    "view_audit_log",
    "manage_users",
    "edit_workflows",
)
AUDIT_QUERIES = (
    "action:export.*",
    "is:security created:>-7d",
    "action:role.* created:>-30d",
    "action:auth.login.failed",
    "target:ticket:10482",
    "category:sso",
)


def _login_method(sim: TenantSim, p: Person) -> dict[str, Any]:
    if sim.p.sso:
        return {"method": "saml"}
    return {"method": "password", "mfa": p.mfa}


def login(sim: TenantSim, t: int) -> list[Timed]:
    p = sim.person(t)
    return sim.one(t, "auth.login.succeeded", p, metadata=_login_method(sim, p))


def logout(sim: TenantSim, t: int) -> list[Timed]:
    return sim.one(t, "auth.logout", sim.person(t), metadata={"reason": "user"})


def mistyped_password(sim: TenantSim, t: int) -> list[Timed]:
    """One failure, then the right password a few seconds later."""
    p = sim.person(t)
    ctx = sim.context(p, t)
    fail = sim.event(
        t,
        "auth.login.failed",
        p,
        context=ctx,
        outcome="failure",
        metadata={"method": "password", "reason": "bad_password"},
    )
    t2 = sim.later(t, 8, 60)
    ok = sim.event(
        t2,
        "auth.login.succeeded",
        p,
        context={**ctx, "request_id": _rid(sim)},
        metadata=_login_method(sim, p),
    )
    return [(t, fail), (t2, ok)]


def _rid(sim: TenantSim) -> str:
    return f"req_{sim.rnd.getrandbits(48):012x}"


def failed_burst(sim: TenantSim, t: int) -> list[Timed]:
    """Several failed sign-ins within minutes from one address: an agent
    locked out of their account, or someone guessing passwords."""
    return _locked_out(sim, t) if sim.rnd.random() < 0.35 else _guessing(sim, t)


def _locked_out(sim: TenantSim, t: int) -> list[Timed]:
    """Three to five failures; on a password tenant often a reset and a
    successful sign-in after them."""
    rnd = sim.rnd
    p = sim.person(t)
    ctx = sim.context(p, t)
    method = "saml" if sim.p.sso else "password"
    out: list[Timed] = []
    k = rnd.randrange(3, 6)
    for i in range(k):
        reason = "account_locked" if i == k - 1 and k == 5 else "bad_password"
        if sim.p.sso:
            reason = "mfa_rejected"
        meta = {"method": method, "reason": reason}
        ev = sim.event(
            t,
            "auth.login.failed",
            p,
            context={**ctx, "request_id": _rid(sim)},
            outcome="failure",
            metadata=meta,
        )
        out.append((t, ev))
        t = sim.later(t, 10, 75)
    if not sim.p.sso and rnd.random() < 0.6:
        ev = sim.event(
            t,
            "auth.password.changed",
            p,
            context={**ctx, "request_id": _rid(sim)},
            metadata={"via": "reset_link"},
        )
        out.append((t, ev))
        t = sim.later(t, 20, 120)
        ev = sim.event(
            t,
            "auth.login.succeeded",
            p,
            context={**ctx, "request_id": _rid(sim)},
            metadata=_login_method(sim, p),
        )
        out.append((t, ev))
    return out


def _guessing(sim: TenantSim, t: int) -> list[Timed]:
    """Five to fourteen failures seconds apart from one outside address,
    against a real account or made-up user names."""
    rnd = sim.rnd
    ip = f"203.0.113.{rnd.randrange(1, 255)}"
    ua = rnd.choice(ATTACKER_AGENTS)
    victim = rnd.choice(sim.staff) if rnd.random() < 0.4 else None
    out: list[Timed] = []
    for _ in range(rnd.randrange(5, 15)):
        ctx = {"ip": ip, "user_agent": ua, "request_id": _rid(sim)}
        meta: dict[str, Any] = {"method": "password", "reason": "bad_password"}
        if victim is None:
            user = rnd.choice(GUESSED_USERS)
            if rnd.random() < 0.5:
                user = f"{user}@{sim.p.domain}"
            meta.update(reason="unknown_user", username=user)
        ev = sim.event(
            t, "auth.login.failed", victim, context=ctx, outcome="failure", metadata=meta
        )
        out.append((t, ev))
        t = sim.later(t, 2, 30)
    return out


def export(sim: TenantSim, t: int) -> list[Timed]:
    """An export is requested, then downloaded once it is ready."""
    rnd = sim.rnd
    p = sim.lead_or_admin(t)
    target = {"type": "export", "id": f"exp_{sim.next_id('export')}"}
    fmt = rnd.choice(("csv", "csv", "json"))
    dataset = rnd.choices(
        ("tickets", "users", "satisfaction_ratings", "organizations"), (60, 15, 15, 10)
    )[0]
    rows = rnd.randrange(50, 40_000)
    ctx = sim.context(p, t)
    req = sim.event(
        t,
        "export.requested",
        p,
        target=target,
        context=ctx,
        metadata={
            "format": fmt,
            "dataset": dataset,
            "filter": rnd.choice(("updated>=30d", "created>=7d", "all")),
        },
    )
    t2 = sim.later(t, 40, 20 * 60)
    got = sim.event(
        t2,
        "export.downloaded",
        p,
        target=target,
        context={**ctx, "request_id": _rid(sim)},
        metadata={
            "format": fmt,
            "dataset": dataset,
            "rows": rows,
            "bytes": rows * rnd.randrange(180, 900),
        },
    )
    return [(t, req), (t2, got)]


def workflow(sim: TenantSim, t: int) -> list[Timed]:
    """An admin creates, edits or removes an automation."""
    rnd = sim.rnd
    p = sim.admin(t)
    wfs = sim.workflows
    kind = rnd.choices(("created", "updated", "deleted"), (25, 65, 10))[0]
    if len(wfs) < 3:
        kind = "created"
    if kind == "created":
        wid = f"wf_{sim.next_id('workflow')}"
        wfs[wid] = rnd.choice(WORKFLOW_NAMES)
    else:
        wid = rnd.choice(sorted(wfs))
    target = {"type": "workflow", "id": wid}
    if kind != "updated":
        name = wfs.pop(wid) if kind == "deleted" else wfs[wid]
        return sim.one(t, f"workflow.{kind}", p, target=target, metadata={"name": name})
    what = rnd.choice(("conditions", "actions", "active", "position"))
    before: Any
    after: Any
    if what == "active":
        before = rnd.random() < 0.8
        after = not before
    elif what == "position":
        before = rnd.randrange(1, 12)
        after = max(1, before + rnd.choice((-2, -1, 1, 2)))
    elif what == "conditions":
        hours = rnd.choice((24, 48, 72, 96))
        before = [{"field": "status", "is": "solved"}, {"field": "hours_since_solved", "gt": hours}]
        after = [before[0], {"field": "hours_since_solved", "gt": hours + rnd.choice((-24, 24))}]
    else:
        before = [{"set": "group", "to": "Tier 1"}]
        group = rnd.choice(("Tier 2", "Billing", "Escalations"))
        after = [{"set": "group", "to": group}, {"notify": "group"}]
    change = {"field": what, "from": before, "to": after}
    return sim.one(
        t, "workflow.updated", p, target=target, changes=[change], metadata={"name": wfs[wid]}
    )


def macro_edit(sim: TenantSim, t: int) -> list[Timed]:
    p = sim.lead_or_admin(t)
    if sim.rnd.random() < 0.3:
        target = {"type": "macro", "id": f"m_{100 + sim.next_id('macro')}"}
        title = sim.rnd.choice(MACRO_TITLES)
        return sim.one(t, "macro.created", p, target=target, metadata={"title": title})
    target = {"type": "macro", "id": f"m_{sim.rnd.randrange(1, 9)}"}
    change = {"field": "body", "from": "(previous text)", "to": "(new text)"}
    return sim.one(t, "macro.updated", p, target=target, changes=[change])


def role_change(sim: TenantSim, t: int, actor: Person | None = None) -> list[Timed]:
    """An admin grants a role, or takes one away."""
    rnd = sim.rnd
    admin = actor or sim.admin(t)
    extra = set(EXTRA_ROLES)
    staff = [p for p in sim.staff if p.active(t) and p is not admin and p.type == "agent"]
    holders = [p for p in staff if p.roles & extra]
    before: list[str]
    if holders and rnd.random() < 0.4:
        p = rnd.choice(holders)
        role = rnd.choice(sorted(p.roles & extra))
        before = sorted(p.roles)
        p.roles.discard(role)
        action = "role.revoked"
    else:
        p = rnd.choice(staff or sim.staff)
        role = rnd.choice([r for r in EXTRA_ROLES if r not in p.roles] or ["team_lead"])
        before = sorted(p.roles)
        p.roles.add(role)
        action = "role.assigned"
    change = {"field": "roles", "from": before, "to": sorted(p.roles)}
    return sim.one(
        t,
        action,
        admin,
        target={"type": "user", "id": p.id},
        changes=[change],
        metadata={"role": role},
    )


def permission(sim: TenantSim, t: int) -> list[Timed]:
    """An admin toggles one permission of a role."""
    rnd = sim.rnd
    role = rnd.choice(("agent", *EXTRA_ROLES))
    perm = rnd.choice(PERMISSIONS)
    before = sim.permissions.get((role, perm), role == "team_lead")
    sim.permissions[(role, perm)] = not before
    change = {"field": f"permissions.{perm}", "from": before, "to": not before}
    return sim.one(
        t, "permission.updated", sim.admin(t), target={"type": "role", "id": role}, changes=[change]
    )


def sso_group(sim: TenantSim, t: int) -> list[Timed]:
    """The identity provider (SCIM) adds someone to a group or removes them."""
    p = sim.person(t)
    group = sim.rnd.choice(SSO_GROUPS)
    before = sorted(p.groups)
    if group in p.groups:
        p.groups.discard(group)
        action = "sso.group.member_removed"
    else:
        p.groups.add(group)
        action = "sso.group.member_added"
    change = {"field": "groups", "from": before, "to": sorted(p.groups)}
    return sim.one(
        t,
        action,
        SCIM,
        target={"type": "user", "id": p.id},
        context={**SCIM_CONTEXT, "request_id": _rid(sim)},
        changes=[change],
        metadata={"group": group, "idp": "saml"},
    )


def denied(sim: TenantSim, t: int) -> list[Timed]:
    """An agent opens an admin page and is turned away."""
    page = sim.rnd.choice(("/admin/roles", "/admin/exports", "/admin/audit-log", "/admin/sso"))
    return sim.one(
        t,
        "authz.denied",
        sim.agent(t),
        target={"type": "page", "id": page},
        outcome="denied",
        metadata={"required": "admin"},
    )


def audit_search(sim: TenantSim, t: int) -> list[Timed]:
    """An admin searches the audit log itself."""
    query = sim.rnd.choice(AUDIT_QUERIES)
    return sim.one(t, "audit_log.searched", sim.admin(t), metadata={"query": query})


def rare_admin(sim: TenantSim, t: int) -> list[Timed]:
    """MFA turned on, an API token made, a tag removed."""
    rnd = sim.rnd
    kind = rnd.choice(("mfa", "token", "tag"))
    if kind == "mfa" and not sim.p.sso:
        p = sim.person(t)
        p.mfa = True
        return sim.one(t, "auth.mfa.enabled", p, metadata={"factor": "totp"})
    p = sim.admin(t)
    if kind == "token":
        target = {"type": "api_token", "id": f"tok_{sim.next_id('token')}"}
        meta = {
            "name": rnd.choice(sim.p.api_clients).name,
            "scopes": ["tickets:read", "tickets:write"],
        }
        return sim.one(t, "auth.api_token.created", p, target=target, metadata=meta)
    tag = rnd.choice(("legacy", "q3_campaign", "old_billing", "test"))
    return sim.one(t, "tag.deleted", p, target={"type": "tag", "id": tag})
