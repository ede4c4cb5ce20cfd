"""Plans, retention periods and legal hold (issue 8).

`free` and `team` keep 12 months, `business` and `enterprise` 36. A tenant
may set its own retention, never below the 12-month floor that auditors
ask for (above its plan's length is allowed: that is how a customer keeps
records longer). A legal hold suspends purging. Every change is appended
to the tenant's own log as `audit.retention.changed` (security-relevant)
*before* it takes effect: a crash in between leaves a logged change that
did not happen (retrying repeats it), never an unlogged one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kimonaudit.errors import InvalidInput
from kimonaudit.store.retention import retention_store

if TYPE_CHECKING:
    from kimonaudit.results import Tenant
    from kimonaudit.service import AuditLog

PLANS: Mapping[str, int] = {"free": 12, "team": 12, "business": 36, "enterprise": 36}
FLOOR_MONTHS = 12
MAX_MONTHS = 1200  # a hundred years: a typo guard, not a policy
MAX_REASON = 500


@dataclass(frozen=True)
class RetentionSettings:
    tenant_id: str
    plan: str
    plan_months: int
    custom_months: int | None  # the tenant's own retention; None: the plan's
    legal_hold: bool

    @property
    def months(self) -> int:
        """The retention in force."""
        return self.custom_months if self.custom_months is not None else self.plan_months

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "plan": self.plan,
            "plan_months": self.plan_months,
            "custom_months": self.custom_months,
            "retention_months": self.months,
            "legal_hold": self.legal_hold,
        }


def check_plan(plan: str) -> str:
    if plan not in PLANS:
        raise InvalidInput(f"unknown plan {plan!r}; one of {', '.join(PLANS)}", field="plan")
    return plan


def check_months(months: object) -> int:
    if isinstance(months, bool) or not isinstance(months, int):
        raise InvalidInput("retention is a whole number of months", field="months")
    if months < FLOOR_MONTHS:
        raise InvalidInput(
            f"retention cannot be below {FLOOR_MONTHS} months (the floor on every plan), "
            f"got {months}",
            field="months",
        )
    if months > MAX_MONTHS:
        raise InvalidInput(f"retention is at most {MAX_MONTHS} months, got {months}", "months")
    return months


def _reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    reason = reason.strip()
    if len(reason) > MAX_REASON or any(ord(c) < 32 for c in reason):
        raise InvalidInput(f"a reason is at most {MAX_REASON} printable characters", "reason")
    return reason or None


def settings(log: AuditLog, tenant_id: str) -> RetentionSettings:
    t = log.get_tenant(tenant_id)
    custom = retention_store(log.store).retention_custom(tenant_id)
    plan_months = PLANS.get(t.plan, FLOOR_MONTHS)
    return RetentionSettings(t.id, t.plan, plan_months, custom, t.legal_hold)


def _changed(
    log: AuditLog,
    tenant_id: str,
    what: str,
    before: object,
    after: object,
    actor: Mapping[str, str] | None,
    reason: str | None = None,
) -> None:
    from kimonaudit.service import SYSTEM_ACTOR

    metadata: dict[str, Any] = {"setting": what, "before": before, "after": after}
    if reason:
        metadata["reason"] = reason
    log.append(
        tenant_id,
        [
            {
                "action": "audit.retention.changed",
                "actor": dict(actor or SYSTEM_ACTOR),
                "target": {"type": "tenant", "id": tenant_id},
                "metadata": metadata,
            }
        ],
    )


def set_plan(
    log: AuditLog, tenant_id: str, plan: str, *, actor: Mapping[str, str] | None = None
) -> Tenant:
    """Move the tenant to `plan`. A tenant's own retention, if set, stays."""
    check_plan(plan)
    now = settings(log, tenant_id)
    if plan != now.plan:
        after = now.custom_months if now.custom_months is not None else PLANS[plan]
        _changed(
            log,
            tenant_id,
            "plan",
            {"plan": now.plan, "retention_months": now.months},
            {"plan": plan, "retention_months": after},
            actor,
        )
        retention_store(log.store).set_retention(tenant_id, plan, now.custom_months, after)
    return log.get_tenant(tenant_id)


def set_retention(
    log: AuditLog,
    tenant_id: str,
    months: int | None,
    *,
    actor: Mapping[str, str] | None = None,
) -> Tenant:
    """Set the tenant's own retention in months (at least 12), or with None
    go back to the plan's."""
    if months is not None:
        check_months(months)
    now = settings(log, tenant_id)
    if months != now.custom_months:
        after = months if months is not None else now.plan_months
        _changed(
            log,
            tenant_id,
            "retention_months",
            {"retention_months": now.months, "custom": now.custom_months is not None},
            {"retention_months": after, "custom": months is not None},
            actor,
        )
        retention_store(log.store).set_retention(tenant_id, now.plan, months, after)
    return log.get_tenant(tenant_id)


def set_legal_hold(
    log: AuditLog,
    tenant_id: str,
    hold: bool,
    *,
    reason: str | None = None,
    actor: Mapping[str, str] | None = None,
) -> Tenant:
    """Put the tenant's log on legal hold (nothing is purged) or lift it."""
    why = _reason(reason)
    t = log.get_tenant(tenant_id)
    if bool(hold) != t.legal_hold:
        _changed(log, tenant_id, "legal_hold", t.legal_hold, bool(hold), actor, why)
        log.store.set_legal_hold(tenant_id, bool(hold))
    return log.get_tenant(tenant_id)
