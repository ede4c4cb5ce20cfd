"""`kimonaudit destinations …` and `kimonaudit deliver`: SIEM streaming
from the command line. Thin: each command parses, calls one
`kimonaudit.destinations` / `kimonaudit.sinks` function, renders."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Any

import click

from kimonaudit.core.destination_records import FORMATS, KINDS
from kimonaudit.destinations import Destination, Destinations
from kimonaudit.errors import InvalidInput
from kimonaudit.sinks import settings as sink_settings


def _allow_option(f: Any) -> Any:
    s = sink_settings.DESTINATION_ALLOWLIST
    return click.option(
        "--destination-allowlist", "allowlist", envvar=s.env, default=s.default, help=s.help
    )(f)


def _dests(obj: Any, allowlist: str) -> Destinations:
    return sink_settings.destinations(obj.log(), allowlist)


def _pairs(items: tuple[str, ...], what: str, secret: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidInput(f"expected KEY=VALUE, got {item if not secret else key!r}", what)
        if secret and value.startswith("@"):
            value = Path(value[1:]).read_text(encoding="utf-8").strip()
        elif not secret and value in ("true", "false"):
            out[key] = value == "true"
            continue
        elif not secret and value.isdigit():
            out[key] = int(value)
            continue
        out[key] = value
    return out


def _show(d: Destination) -> None:
    j = d.to_json()
    h = j["health"]
    click.echo(
        f"{j['id']}  {j['name']}  {j['kind']}/{j['format']}  {j['state']}  "
        f"status={h['status']} lag={h['lag_events']} events/{h['lag_seconds']}s "
        f"delivered={h['delivered_events']}"
    )


@click.group()
def destinations() -> None:
    """SIEM destinations of a tenant: webhook, splunk_hec, syslog, datadog, s3."""


@destinations.command("add")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.option("--name", required=True, help="A name for people, e.g. splunk-prod.")
@click.option("--kind", type=click.Choice(KINDS), required=True)
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="Default: the kind's first.")
@click.option("--url", help="Receiver URL (tcp:// or tls:// for syslog).")
@click.option("--filter", "filter_", default="", help="Search query, e.g. is:security.")
@click.option("--setting", "settings", multiple=True, help="KEY=VALUE, repeatable.")
@click.option("--secret", "secrets", multiple=True, help="KEY=VALUE or KEY=@file, repeatable.")
@click.option("--max-events", type=int, help="Entries per batch at most.")
@click.option("--max-bytes", type=int, help="Rendered bytes per batch at most.")
@click.option("--max-wait-ms", type=int, help="How long to wait to fill a batch.")
@click.option("--start", default="now", show_default=True, help="now, beginning or a seq.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_allow_option
@click.pass_obj
def add(
    obj: Any,
    tenant_id: str,
    name: str,
    kind: str,
    fmt: str | None,
    url: str | None,
    filter_: str,
    settings: tuple[str, ...],
    secrets: tuple[str, ...],
    max_events: int | None,
    max_bytes: int | None,
    max_wait_ms: int | None,
    start: str,
    as_json: bool,
    allowlist: str,
) -> None:
    """Add a destination; a generated signing secret is printed once."""
    batch = {
        k: v
        for k, v in (("max_events", max_events), ("max_bytes", max_bytes),
                     ("max_wait_ms", max_wait_ms))
        if v is not None
    }  # fmt: skip
    dest, generated = _dests(obj, allowlist).create(
        tenant_id,
        name=name,
        kind=kind,
        format=fmt,
        url=url,
        settings=_pairs(settings, "setting"),
        secrets=_pairs(secrets, "secret", secret=True),
        batch=batch or None,
        filter=filter_,
        start=int(start) if start.isdigit() else start,
    )
    if as_json:
        click.echo(json.dumps({**dest.to_json(), "secrets": generated}, indent=2))
        return
    _show(dest)
    for key, value in generated.items():
        click.echo(f"{key} (shown once, store it now): {value}")


@destinations.command("update")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.argument("destination_id")
@click.option("--name", help="A new name.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), help="A format the kind allows.")
@click.option("--url", help="A new receiver URL (checked by the SSRF guard again).")
@click.option("--filter", "filter_", help='A new search query; "" delivers everything.')
@click.option("--setting", "settings", multiple=True, help="KEY=VALUE to set, repeatable.")
@click.option("--unset-setting", "unset_settings", multiple=True, help="KEY to remove, repeatable.")
@click.option("--secret", "secrets", multiple=True,
              help="KEY=VALUE or KEY=@file to replace, repeatable (never printed).")  # fmt: skip
@click.option("--unset-secret", "unset_secrets", multiple=True,
              help="KEY of an optional secret to remove, repeatable.")  # fmt: skip
@click.option("--new-signing-secret", is_flag=True,
              help="Webhooks: a generated signing secret replaces it, printed once.")  # fmt: skip
@click.option("--max-events", type=int, help="Entries per batch at most.")
@click.option("--max-bytes", type=int, help="Rendered bytes per batch at most.")
@click.option("--max-wait-ms", type=int, help="How long to wait to fill a batch.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_allow_option
@click.pass_obj
def update(
    obj: Any,
    tenant_id: str,
    destination_id: str,
    name: str | None,
    fmt: str | None,
    url: str | None,
    filter_: str | None,
    settings: tuple[str, ...],
    unset_settings: tuple[str, ...],
    secrets: tuple[str, ...],
    unset_secrets: tuple[str, ...],
    new_signing_secret: bool,
    max_events: int | None,
    max_bytes: int | None,
    max_wait_ms: int | None,
    as_json: bool,
    allowlist: str,
) -> None:
    """Change a destination's settings; only the options given change.

    Applies from the next batch (a batch saved for retry is sent as it was
    formed). The change is logged as audit_stream.updated, naming the
    fields, never a secret.
    """
    batch = {
        k: v
        for k, v in (("max_events", max_events), ("max_bytes", max_bytes),
                     ("max_wait_ms", max_wait_ms))
        if v is not None
    }  # fmt: skip
    new_settings: dict[str, Any] = {**_pairs(settings, "setting"), **dict.fromkeys(unset_settings)}
    new_secrets: dict[str, Any] = {
        **_pairs(secrets, "secret", secret=True),
        **dict.fromkeys(unset_secrets),
    }
    dest, changed, generated = _dests(obj, allowlist).update(
        tenant_id,
        destination_id,
        name=name,
        format=fmt,
        url=url,
        filter=filter_,
        batch=batch or None,
        settings=new_settings or None,
        secrets=new_secrets or None,
        new_signing_secret=new_signing_secret,
    )
    if as_json:
        click.echo(json.dumps({**dest.to_json(), "changed": changed, "secrets": generated},
                              indent=2))  # fmt: skip
        return
    _show(dest)
    click.echo(f"changed: {', '.join(changed)}" if changed else "nothing changed")
    for key, value in generated.items():
        click.echo(f"{key} (shown once, store it now): {value}")


@destinations.command("list")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def list_(obj: Any, tenant_id: str, as_json: bool) -> None:
    """List a tenant's destinations with their health."""
    found = sink_settings.destinations(obj.log()).list(tenant_id)
    if as_json:
        click.echo(json.dumps({"destinations": [d.to_json() for d in found]}, indent=2))
        return
    for d in found:
        _show(d)
    if not found:
        click.echo("no destinations")


@destinations.command("show")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.argument("destination_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (always JSON here).")
@click.pass_obj
def show(obj: Any, tenant_id: str, destination_id: str, as_json: bool) -> None:
    """Settings and health of one destination, as JSON (never secrets)."""
    del as_json  # accepted like everywhere else: the output is JSON either way
    click.echo(
        json.dumps(
            sink_settings.destinations(obj.log()).get(tenant_id, destination_id).to_json(), indent=2
        )
    )


@destinations.command("test")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.argument("destination_id")
@_allow_option
@click.pass_obj
def test(obj: Any, tenant_id: str, destination_id: str, allowlist: str) -> None:
    """Send the newest signed checkpoint once (moves no cursor)."""
    from kimonaudit.sinks.job import send_test

    outcome = send_test(_dests(obj, allowlist), tenant_id, destination_id)
    if not outcome.ok:
        raise click.ClickException(f"test delivery failed: {outcome.error}")
    click.echo("test delivery accepted")


@destinations.command("pause")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.option("--reason", default="paused by an administrator", show_default=True)
@click.argument("destination_id")
@click.pass_obj
def pause(obj: Any, tenant_id: str, reason: str, destination_id: str) -> None:
    """Stop delivering (entries wait behind the cursor)."""
    _show(sink_settings.destinations(obj.log()).pause(tenant_id, destination_id, reason))


@destinations.command("resume")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.argument("destination_id")
@click.pass_obj
def resume(obj: Any, tenant_id: str, destination_id: str) -> None:
    """Deliver again, catching up in order."""
    _show(sink_settings.destinations(obj.log()).resume(tenant_id, destination_id))


@destinations.command("rotate-secret")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.option("--overlap-seconds", default=86_400, show_default=True, type=int)
@click.argument("destination_id")
@click.pass_obj
def rotate_secret(obj: Any, tenant_id: str, overlap_seconds: int, destination_id: str) -> None:
    """New webhook signing secret (printed once); the old one signs too
    during the overlap."""
    new = sink_settings.destinations(obj.log()).rotate_secret(
        tenant_id, destination_id, overlap_seconds
    )
    click.echo(f"signing_secret (shown once, store it now): {new}")


@destinations.command("delete")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.argument("destination_id")
@click.pass_obj
def delete(obj: Any, tenant_id: str, destination_id: str) -> None:
    """Remove a destination and its delivery state."""
    sink_settings.destinations(obj.log()).delete(tenant_id, destination_id)
    click.echo(f"deleted {destination_id}")


@click.command()
@click.option("--once", is_flag=True, help="One pass over the due destinations, then exit.")
@click.option(
    "--interval",
    type=click.FloatRange(0.01),
    envvar=sink_settings.DELIVERY_INTERVAL.env,
    default=float(sink_settings.DELIVERY_INTERVAL.default),
    show_default=True,
    help=sink_settings.DELIVERY_INTERVAL.help,
)
@click.option("--lease-seconds", type=click.FloatRange(1), default=60.0, show_default=True,
              help="How long a destination stays with this process without renewal.")  # fmt: skip
@click.option("--timeout", type=click.FloatRange(0.1), default=10.0, show_default=True,
              help="Seconds per request to a receiver.")  # fmt: skip
@click.option("--checkpoint/--no-checkpoint", default=True, show_default=True,
              help="Cut a checkpoint for tenants with new entries once a second, so "
              "checkpoints flow without `serve`.")  # fmt: skip
@_allow_option
@click.pass_obj
def deliver(
    obj: Any,
    once: bool,
    interval: float,
    lease_seconds: float,
    timeout: float,
    checkpoint: bool,
    allowlist: str,
) -> None:
    """Deliver to every active destination (what `serve` also runs), alone.

    Several processes may run at once, on one PostgreSQL: a lease gives
    each destination to one of them at a time. Stop with Ctrl-C or SIGTERM.
    """
    from kimonaudit.sinks.delivery import Deliverer

    d = Deliverer(
        _dests(obj, allowlist),
        lease_s=lease_seconds,
        timeout_s=min(timeout, lease_seconds / 2.5),
        cut_checkpoints=checkpoint,
    )
    try:
        if once:
            stats = d.run_once()
            click.echo(f"delivered {stats.events} entries and {stats.checkpoints} checkpoints "
                       f"in {stats.batches} batches; {stats.failures} failed attempts")  # fmt: skip
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            d.run(stop, interval)
        except KeyboardInterrupt:
            stop.set()
    finally:
        d.close()
