"""CLI commands of issue 8: plans, retention, legal hold, purge, redaction
and verifiable archives. `register` adds them to the `kimonaudit` group
(cli.py calls it); like every command there, each parses, makes one
facade call and renders, and errors reach `kimonaudit.cli.main`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from kimonaudit.core.timefmt import format_ts
from kimonaudit.retention import PLANS

if TYPE_CHECKING:
    from kimonaudit.cli import Ctx
    from kimonaudit.service import AuditLog

EXIT_BAD = 1


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _months(t: Any) -> str:
    return f"{t.retention_months} months"


# -- tenants set-plan ----------------------------------------------------------
@click.command("set-plan")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.argument("plan", type=click.Choice(list(PLANS)))
@click.pass_obj
def set_plan(obj: Ctx, tenant_id: str, plan: str) -> None:
    """Move a tenant to PLAN (free and team keep 12 months, business and
    enterprise 36). Recorded in its log as audit.retention.changed."""
    t = obj.log().set_plan(tenant_id, plan)
    click.echo(f"tenant {t.id}: plan {t.plan}, retention {_months(t)}")


# -- retention -------------------------------------------------------------------
@click.group()
def retention() -> None:
    """Retention per tenant: settings, legal hold, purge and status."""


@retention.command("set")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.option(
    "--months",
    type=click.IntRange(1),
    help="Keep entries this many months (at least 12; above the plan's length is allowed).",
)
@click.option("--plan-default", is_flag=True, help="Go back to the plan's retention.")
@click.pass_obj
def retention_set(obj: Ctx, tenant_id: str, months: int | None, plan_default: bool) -> None:
    """Set a tenant's own retention. Recorded as audit.retention.changed."""
    if (months is None) == (not plan_default):
        raise click.UsageError("give either --months N or --plan-default")
    t = obj.log().set_retention(tenant_id, None if plan_default else months)
    click.echo(f"tenant {t.id}: retention {_months(t)} (plan {t.plan})")


@retention.command("hold")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.option("--on/--off", "hold", required=True, help="Put on legal hold, or lift it.")
@click.option("--reason", help="Why (kept in the log entry), e.g. a case number.")
@click.pass_obj
def retention_hold(obj: Ctx, tenant_id: str, hold: bool, reason: str | None) -> None:
    """Legal hold: while on, nothing of the tenant is purged. Recorded as
    audit.retention.changed."""
    t = obj.log().set_legal_hold(tenant_id, hold, reason=reason)
    click.echo(f"tenant {t.id}: legal hold {'on' if t.legal_hold else 'off'}")


@retention.command("run")
@click.option("--dry-run", is_flag=True, help="Say what would be purged; change nothing.")
@click.option("--tenant", "tenant_id", help="Only this tenant (default: every tenant).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.pass_obj
def retention_run(obj: Ctx, dry_run: bool, tenant_id: str | None, as_json: bool) -> None:
    """Purge every entry older than its tenant's retention (tenants on legal
    hold are skipped). The log stays provable; each purge is recorded as
    audit_log.purged. `kimonaudit serve` runs this daily."""
    report = obj.log().run_retention(dry_run=dry_run, tenant_id=tenant_id)
    if as_json:
        _emit_json(report.to_json())
        return
    verb = "would purge" if dry_run else "purged"
    for t in report.tenants:
        if t.skipped:
            click.echo(f"{t.tenant_id}: nothing to purge ({t.skipped})")
        else:
            click.echo(
                f"{t.tenant_id}: {verb} {t.purged:,} entries recorded before "
                f"{format_ts(t.cutoff)} ({t.retention_months} months); first retained seq "
                f"{t.purge_point}"
                + (
                    f"; {len(t.partitions_dropped)} partitions dropped"
                    if t.partitions_dropped
                    else ""
                )
            )
    click.echo(f"{verb} {report.purged:,} entries in total")


@retention.command("status")
@click.option("--tenant", "tenant_id", help="Only this tenant (default: every tenant).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def retention_status(obj: Ctx, tenant_id: str | None, as_json: bool) -> None:
    """Per tenant: plan, retention, oldest entry, next purge, legal hold and
    space used."""
    rows = obj.log().retention_status(tenant_id)
    if as_json:
        _emit_json([r.to_json() for r in rows])
        return
    for r in rows:
        oldest = format_ts(r.oldest)[:19] + "Z" if r.oldest is not None else "none"
        nxt = format_ts(r.next_purge)[:19] + "Z" if r.next_purge is not None else "none"
        click.echo(
            f"{r.tenant_id} ({r.name}): plan {r.plan}, retention {r.retention_months} months, "
            f"oldest entry {oldest}, next purge {nxt}, legal hold "
            f"{'on' if r.legal_hold else 'off'}, {r.entries:,} entries "
            f"({r.bytes / 1e6:,.1f} MB), {r.purged:,} purged so far"
        )


# -- redact ------------------------------------------------------------------------
@click.command()
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.option("--seq", type=click.IntRange(0), required=True, help="The entry to redact.")
@click.option("--reason", required=True, help="Why (kept, and written to the log).")
@click.pass_obj
def redact(obj: Ctx, tenant_id: str, seq: int, reason: str) -> None:
    """Delete one entry's payload and salt on a legal request. Its header,
    leaf, proofs and checkpoints stand; `verify` counts it as redacted. The
    redaction is recorded as audit_log.redacted with the reason."""
    done = obj.log().redact(tenant_id, seq, reason)
    click.echo(f"redacted entry {seq}" if done else f"entry {seq} was already redacted")


# -- verifiable archives -----------------------------------------------------------
def export_bundle(log: AuditLog, tenant_id: str, query: str, path: str, record: Any) -> None:
    """`kimonaudit export --bundle FILE`: write atomically, then record the
    export as audit_log.exported (format "bundle")."""
    data, info = log.export_bundle(tenant_id, query)
    target = Path(path)
    partial = target.with_name(target.name + ".part")
    try:
        partial.write_bytes(data)
        partial.replace(target)
    finally:
        if partial.exists():
            partial.unlink()
    record(log, tenant_id, "audit_log.exported", info.query, info.entries, format="bundle")
    click.echo(
        f"bundle of {info.entries} entries ({info.mode} mode, checkpoint at tree size "
        f"{info.tree_size}) written to {target} ({info.bytes:,} bytes)",
        err=True,
    )


@click.command("verify-bundle")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--vkey",
    "vkeys",
    multiple=True,
    help="Trusted verifier key (signed-note form, from `kimonaudit keys show`); repeatable. "
    "Without it the keys inside the bundle are used, which proves integrity but not origin.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
def verify_bundle(file: str, vkeys: tuple[str, ...], as_json: bool) -> None:
    """Check a bundle offline (no database): its signatures, every leaf,
    payload and proof. Exits 0 when intact, 1 when anything was changed."""
    from kimonaudit.core.bundle import verify_bundle as check

    report = check(Path(file).read_bytes(), list(vkeys) or None)
    if as_json:
        _emit_json(report.to_json())
    elif report.ok:
        click.echo(
            f"ok {report.origin}: {report.entries} entries ({report.redacted} redacted) prove "
            f"into the signed checkpoint at tree size {report.tree_size} ({report.mode} mode)"
        )
        if report.key_source == "bundle":
            click.echo(
                "note: checked against the key inside the bundle; pass --vkey with the key you "
                "trust to check who signed it",
                err=True,
            )
    else:
        click.echo(f"FAILED {file}: {report.problems[0]}")
    if not report.ok:
        sys.exit(EXIT_BAD)


def register(cli: click.Group, tenants: click.Group) -> None:
    tenants.add_command(set_plan)
    cli.add_command(retention)
    cli.add_command(redact)
    cli.add_command(verify_bundle)
