"""The `kimonaudit` command. Each command parses its options, makes one
facade call and renders the result; errors become one line and an exit
code in `main`, never a traceback."""

from __future__ import annotations

import io
import json
import os
import re
import sys
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column, Table

from kimonaudit import keys as keyfile
from kimonaudit import settings
from kimonaudit.api import settings as api_settings
from kimonaudit.api.settings import ApiSettings
from kimonaudit.apikeys import SCOPES
from kimonaudit.collector import tune_for_throughput
from kimonaudit.core.timefmt import format_ts
from kimonaudit.errors import (
    AuditLogError,
    Conflict,
    InvalidInput,
    NotFound,
    VerificationError,
)
from kimonaudit.results import VerifyReport
from kimonaudit.service import PLANS, AuditLog

# Exit codes: 0 ok, 1 verification found a problem, 2 usage or input error,
# 3 other failure (database, configuration).
EXIT_BAD = 1
EXIT_USAGE = 2
EXIT_FAILURE = 3

err = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)


class Ctx:
    def __init__(self, db: str, key_file: str, name: str) -> None:
        self.db = db
        self.key_file = key_file
        self.name = name
        self._log: AuditLog | None = None

    def log(self, create: bool = False) -> AuditLog:
        """The audit log. Only commands that create things pass `create`:
        the others refuse a SQLite file or key file that does not exist
        (exit 2) instead of leaving an empty one behind."""
        if self._log is None:
            import kimonaudit

            if not self.db.startswith(("sqlite:", "postgresql://", "postgres://")):
                from kimonaudit.store import open_store

                open_store(self.db)  # raises ConfigError naming the URL, before any file is made
            missing = self.missing_files()
            if missing and not create:
                raise InvalidInput(
                    f"{' and '.join(missing)}; run this where they are, point --db / "
                    "KIMONAUDIT_DATABASE_URL and --key-file / KIMONAUDIT_SIGNING_KEY_FILE at "
                    "them, or create them with `kimonaudit tenants create NAME` or "
                    "`kimonaudit demo`"
                )
            self._log = kimonaudit.open(self.db, key_file=self.key_file, name=self.name)
            for what in missing:
                click.echo(what.replace("no ", "created ", 1), err=True)
        return self._log

    def missing_files(self) -> list[str]:
        """'no database file at /abs/path', 'no key file at ...' for each
        file this deployment needs that does not exist yet."""
        out = []
        path = sqlite_file(self.db)
        if path is not None and not path.exists():
            out.append(f"no database file at {path}")
        key = Path(self.key_file).absolute()
        if not key.exists():
            out.append(f"no key file at {key}")
        return out

    def close(self) -> None:
        if self._log is not None:
            self._log.close()


def sqlite_file(url: str) -> Path | None:
    """The absolute path of a SQLite URL's file (None for other databases)."""
    if not url.startswith("sqlite:"):
        return None
    from kimonaudit.store.sqlite import sqlite_path

    path = sqlite_path(url)
    return None if path == ":memory:" else Path(path).absolute()


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@contextmanager
def progress_bar(label: str, total: int | None, plain: bool = False) -> Iterator[Any]:
    """A Rich progress bar on stderr. When stderr is not a terminal it is
    silent, so pipes and logs stay clean; with `plain`, it prints a line
    every 10% instead (for long jobs whose progress a log should show)."""
    if not err.is_terminal:
        step = [10]

        def line(done: int, total_now: int | None = None) -> None:
            whole = total_now if total_now is not None else total
            if not plain or not whole:
                return
            pct = done * 100 // whole
            if pct >= step[0]:
                click.echo(f"{label}: {done:,} of {whole:,} ({pct}%)", err=True)
                step[0] = pct // 10 * 10 + 10

        yield line
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)

        def update(done: int, total_now: int | None = None) -> None:
            bar.update(task, completed=done, total=total_now if total_now is not None else total)

        yield update


def fitted_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], keep: Collection[str] = ()
) -> Table:
    """A table that fits the terminal (80 columns too): the `keep` columns
    (ids, actions, numbers people copy) are never cut or wrapped; the others
    wrap, or shrink and fold, to make room."""
    columns = [
        Column(
            h,
            no_wrap=True,
            min_width=max([len(h), *(len(r[i]) for r in rows)]),
        )
        if h in keep
        else Column(h, overflow="fold")
        for i, h in enumerate(headers)
    ]
    table = Table(*columns, box=box.SIMPLE_HEAD, pad_edge=False)
    for r in rows:
        table.add_row(*r)
    return table


def _when(us: int) -> str:
    """A time for a table cell, to the minute (--json gives it exactly)."""
    return format_ts(us).replace("T", " ")[:16]


def _setting(flag: str, setting: settings.Setting, kind: Any = str) -> Any:
    """A click option read from a declared Setting: flag, env var, default, help."""
    cast = (
        int if isinstance(kind, click.types.IntParamType)
        else float if isinstance(kind, click.types.FloatParamType)
        else kind
    )  # fmt: skip
    return click.option(
        flag,
        envvar=setting.env,
        default=cast(setting.default),
        type=kind,
        show_default=True,
        help=setting.help,
    )


class Group(click.Group):
    """Command lists show each command's first sentence whole, wrapped to the
    terminal, never cut short with '...'."""

    group_class = type  # subgroups are Groups too

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(
    cls=Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@_setting("--db", settings.DATABASE_URL)
@_setting("--key-file", settings.KEY_FILE)
@_setting("--name", settings.DEPLOYMENT_NAME)
@click.version_option(package_name="kimonaudit")
@click.pass_context
def cli(ctx: click.Context, db: str, key_file: str, name: str) -> None:
    """KimonAudit: a tamper-evident, multi-tenant audit log.

    Entries are append-only, server-timestamped, and committed to a
    per-tenant RFC 6962 Merkle tree with signed C2SP checkpoints, so
    `kimonaudit verify` detects any edited, deleted, reordered or
    inserted entry.
    """
    state = Ctx(db, key_file, name)
    ctx.obj = state
    ctx.call_on_close(state.close)


# -- tenants -----------------------------------------------------------------
@cli.group()
def tenants() -> None:
    """Create and list tenants."""


@tenants.command("create")
@click.argument("name")
@click.option(
    "--plan",
    type=click.Choice(list(PLANS)),
    default="free",
    show_default=True,
    help="Plan: free and team keep 12 months, business and enterprise 36.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def tenants_create(obj: Ctx, name: str, plan: str, as_json: bool) -> None:
    """Create a tenant and print its id and a new admin API key (shown once).
    Creates the database and key file if they do not exist yet, and says where."""
    log = obj.log(create=True)
    t = log.create_tenant(name, plan=plan)
    key, text = log.create_api_key(t.id, "admin", ["admin"])
    if as_json:
        _emit_json({**t.to_json(), "api_key": {**key.to_json(), "key": text}})
    else:
        months = t.retention_months
        click.echo(f"tenant {t.id} ({t.name}, plan {t.plan}, retention {months} months)")
        _show_new_key(text)


@tenants.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def tenants_list(obj: Ctx, as_json: bool) -> None:
    """List tenants with their tree sizes."""
    log = obj.log()
    rows = [(t, log.store.tree_state(t.id).size) for t in log.list_tenants()]
    if as_json:
        _emit_json([{**t.to_json(), "tree_size": n} for t, n in rows])
        return
    out.print(
        fitted_table(
            ("id", "name", "plan", "retention", "entries", "created"),
            [
                (
                    t.id,
                    t.name,
                    t.plan,
                    f"{t.retention_months} months",
                    f"{n:,}",
                    _when(t.created_at),
                )
                for t, n in rows
            ],
            keep=("id", "entries"),
        )
    )


# -- ingest ------------------------------------------------------------------
@cli.command()
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.option(
    "--batch-size",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Events per atomic append.",
)
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary.")
@click.pass_obj
def ingest(obj: Ctx, tenant_id: str, batch_size: int, file: Any, as_json: bool) -> None:
    """Append events from an NDJSON FILE (one event per line, UTF-8; - for stdin).

    The file is streamed twice. First every line is checked: if any line is
    bad, the problems are listed with their line numbers and byte offsets,
    nothing is appended, and the exit status is 2. Then the events are
    appended in batches of --batch-size as they are read, each batch atomic.
    Standard input is spooled to a temporary file for the second pass.
    Events whose id is already in the log are counted, not appended twice.
    """
    log = obj.log()
    log.get_tenant(tenant_id)
    tune_for_throughput()
    with _open_binary(file) as stream:
        summary = _ingest(log, tenant_id, stream, batch_size)
    if as_json:
        _emit_json(summary)
    else:
        click.echo(
            f"appended {plural(summary['appended'], 'event')} to {tenant_id} "
            f"({summary['duplicates']:,} already present); tree size {summary['tree_size']:,}"
        )


@contextmanager
def _open_binary(path: str) -> Iterator[Any]:
    """The file at `path` (or stdin for -) opened for reading bytes."""
    if path == "-":
        stdin = sys.stdin
        yield getattr(stdin, "buffer", None) or io.BytesIO(stdin.read().encode("utf-8"))
        return
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InvalidInput(f"{path}: {exc.strerror or exc}") from None
    with stream:
        yield stream


def _ingest(log: AuditLog, tenant_id: str, file: Any, batch_size: int) -> dict[str, Any]:
    from kimonaudit.ingest import ingest_stream, size_of

    size = size_of(file)
    # One bar over both passes, by bytes read: checking is the first half.
    with progress_bar("checking, then appending", None if size is None else 2 * size) as update:
        summary = ingest_stream(
            log,
            tenant_id,
            file,
            batch_size,
            checking=lambda done, _: update(done),
            appending=lambda done, _: update(done if size is None else size + done),
        )
    return summary


# -- checkpoints, proofs, keys -------------------------------------------------
@cli.command()
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def checkpoint(obj: Ctx, tenant_id: str, as_json: bool) -> None:
    """Print the newest signed checkpoint (C2SP signed note), cutting one if
    entries arrived since the last. Save it somewhere else: `verify --against`
    uses it to detect truncation."""
    log = obj.log()
    log.get_tenant(tenant_id)
    cp = log.checkpoint(tenant_id)
    if as_json:
        _emit_json(cp.to_json())
    else:
        click.echo(cp.note, nl=False)


@cli.command()
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.option("--seq", type=click.IntRange(0), help="Inclusion proof of this entry.")
@click.option(
    "--size",
    type=click.IntRange(1),
    help="With --seq: prove against the checkpoint of this tree size.",
)
@click.option("--from", "old", type=click.IntRange(0), help="Consistency proof from this size.")
@click.option("--to", "new", type=click.IntRange(0), help="Consistency proof to this size.")
@click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable output (the proof is always JSON)."
)
@click.pass_obj
def prove(
    obj: Ctx,
    tenant_id: str,
    seq: int | None,
    size: int | None,
    old: int | None,
    new: int | None,
    as_json: bool,
) -> None:
    """Print an inclusion proof (--seq) or a consistency proof (--from, --to)
    as JSON; hashes are base64. After a retention purge, --from/--to below the
    purge point must be the size of a checkpoint signed before it."""
    del as_json  # accepted like everywhere else: the output is JSON either way
    inclusion = seq is not None and old is None and new is None
    consistency = seq is None and size is None and old is not None and new is not None
    if not (inclusion or consistency):
        raise click.UsageError("give either --seq N [--size M] or --from M --to N")
    log = obj.log()
    log.get_tenant(tenant_id)
    if inclusion:
        _emit_json(log.prove_inclusion(tenant_id, seq, size).to_json())  # type: ignore[arg-type]
    else:
        _emit_json(log.prove_consistency(tenant_id, old, new).to_json())  # type: ignore[arg-type]


@cli.command()
@click.option("--tenant", "tenant_id", help="Verify one tenant (default: every tenant).")
@click.option(
    "--against",
    type=click.Path(exists=True, dir_okay=False),
    help="A checkpoint saved earlier (signed note): the log must still contain it.",
)
@click.option(
    "--index",
    "check_index",
    is_flag=True,
    help="Also compare the search index with the ledger (slower).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.pass_obj
def verify(
    obj: Ctx, tenant_id: str | None, against: str | None, check_index: bool, as_json: bool
) -> None:
    """Recompute every leaf and the tree, and check every signed checkpoint.

    Exits 0 when intact, 1 when anything is wrong: the report names the
    first bad sequence number, exactly which entries are tampered,
    inserted, reordered or missing, and which checkpoints no longer match
    and why (docs/integrity.md). With --index, also that the search index
    matches the ledger, so no index row hides an entry from search.
    """
    log = obj.log()
    note = _read_text(against, "a signed checkpoint") if against else None
    if note is not None and tenant_id is None:
        tenant_id = log.verify_checkpoint_note(note).origin.rsplit("/", 1)[-1]
    ids = [tenant_id] if tenant_id else [t.id for t in log.list_tenants()]
    reports = []
    for tid in ids:
        expected = log.store.tree_state(tid).size
        with progress_bar(f"verifying {tid}", expected) as update:
            reports.append(log.verify(tid, against=note, progress=update))
    index = {tid: log.verify_index(tid) for tid in ids} if check_index else {}
    if as_json:
        docs = [r.to_json() for r in reports]
        for doc, r in zip(docs, reports, strict=True):
            if r.tenant_id in index:
                checked, problems = index[r.tenant_id]
                doc["index"] = {"checked": checked, "ok": not problems, "problems": problems[:100]}
        _emit_json(docs)
    else:
        for r in reports:
            click.echo("\n".join(verify_lines(r)))
        for tid, (checked, problems) in index.items():
            if not problems:
                entries = plural(checked, "entry", "entries")
                click.echo(f"ok {tid}: search index matches the ledger ({entries})")
                continue
            click.echo(f"FAILED {tid}: search index differs from the ledger")
            click.echo("\n".join(f"  - {p}" for p in problems[:TEXT_PROBLEMS]))
            if len(problems) > TEXT_PROBLEMS:
                click.echo(f"  … and {len(problems) - TEXT_PROBLEMS:,} more problems")
    index_ok = all(not problems for _, problems in index.values())
    if not all(r.ok for r in reports) or not index_ok:
        sys.exit(EXIT_BAD)


@cli.command()
@click.pass_obj
def reindex(obj: Ctx) -> None:
    """Rebuild the search index from the ledger (after an upgrade, or when
    `verify --index` finds a difference). Search keeps working meanwhile:
    entries not yet re-indexed are matched from the ledger."""
    log = obj.log()
    with progress_bar("reindexing", None) as update:
        n = log.reindex(progress=update)
    click.echo(f"reindexed {plural(n, 'entry', 'entries')}")


def _read_text(path: str, what: str) -> str:
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start]
        raise InvalidInput(
            f"{path} is not {what}: it is not UTF-8 text (byte {exc.start} is {bad:#04x})"
        ) from None


TEXT_PROBLEMS = 20  # problems listed in the text report (--json lists up to 100)


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 event', '2 events' (`many` for irregular plurals)."""
    return f"{n:,} {word if n == 1 else many or word + 's'}"


def verify_lines(r: VerifyReport) -> list[str]:
    """The text form of one tenant's verify report."""
    return r.lines(TEXT_PROBLEMS)


@cli.group()
def keys() -> None:
    """Show, generate and rotate the deployment signing key."""


@keys.command("show")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def keys_show(obj: Ctx, as_json: bool) -> None:
    """Print the verifier key (signed-note vkey form) and retired keys."""
    if not Path(obj.key_file).exists():
        raise InvalidInput(
            f"no key file at {Path(obj.key_file).absolute()}; create one with "
            "`kimonaudit keys generate`, or point --key-file at yours"
        )
    ring = keyfile.load(obj.key_file)
    vkeys = ring.verifier_keys()
    if as_json:
        _emit_json({"name": ring.name, "active": vkeys[0], "retired": vkeys[1:]})
    else:
        click.echo(vkeys[0])
        for v in vkeys[1:]:
            click.echo(f"{v} (retired)")


@keys.command("generate")
@click.option(
    "--force",
    is_flag=True,
    help="Replace an existing key file (old checkpoints will no longer verify with it).",
)
@click.pass_obj
def keys_generate(obj: Ctx, force: bool) -> None:
    """Create a new key file (mode 0600) and print its verifier key."""
    ring = keyfile.generate(obj.key_file, name=obj.name, force=force)
    click.echo(f"created key file at {Path(obj.key_file).absolute()}", err=True)
    click.echo(ring.verifier_keys()[0])


@keys.command("rotate")
@click.pass_obj
def keys_rotate(obj: Ctx) -> None:
    """Start signing with a new key; the old public key is kept so earlier
    checkpoints still verify."""
    if not Path(obj.key_file).exists():
        raise InvalidInput(
            f"no key file at {Path(obj.key_file).absolute()}; there is nothing to rotate "
            "(create one with `kimonaudit keys generate`, or point --key-file at yours)"
        )
    ring = keyfile.rotate(obj.key_file)
    click.echo(ring.verifier_keys()[0])


# -- the directory -------------------------------------------------------------
@cli.group()
def actors() -> None:
    """The actor directory (display names behind keyed hashes)."""


@actors.command("erase")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.argument("actor_id")
@click.pass_obj
def actors_erase(obj: Ctx, tenant_id: str, actor_id: str) -> None:
    """Erase a person (GDPR Article 17 erasure).

    Their secret and directory rows go, so nobody can tell any more which
    entries were theirs; the log still verifies. Recorded as actor.erased
    (which names no one)."""
    found = obj.log().erase_actor(tenant_id, actor_id)
    click.echo("erased" if found else "no directory entry for that actor (nothing to erase)")


# == HTTP server and API keys (owned by the HTTP API work) ======================
def _show_new_key(text: str) -> None:
    click.echo(f"API key (shown once, store it now; only its hash is kept): {text}")


@cli.command()
@_setting("--host", api_settings.HOST)
@_setting("--port", api_settings.PORT, click.IntRange(0, 65535))
@_setting("--rate-limit", api_settings.RATE_LIMIT, click.FloatRange(0))
@_setting("--checkpoint-interval", api_settings.CHECKPOINT_INTERVAL, click.FloatRange(0.05))
@_setting("--wait-timeout", api_settings.WAIT_TIMEOUT, click.FloatRange(0.1))
@_setting("--forwarded-allow-ips", api_settings.FORWARDED_ALLOW_IPS)
@_setting("--metrics-dir", api_settings.METRICS_DIR)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="Log one line per request: method, route template, status, time "
    "(never query strings, headers or client addresses).",
)
@click.pass_obj
def serve(
    obj: Ctx,
    host: str,
    port: int,
    rate_limit: float,
    checkpoint_interval: float,
    wait_timeout: float,
    forwarded_allow_ips: str,
    metrics_dir: str,
    access_log: bool,
) -> None:
    """Run the HTTP API (uvicorn) with background checkpointing.

    Checkpoints are cut for each tenant with new entries about once per
    --checkpoint-interval. Stop with Ctrl-C or SIGTERM: requests in flight
    finish and every acknowledged event is already committed.
    """
    if metrics_dir:
        # Read by prometheus_client when it is first imported (just below).
        os.makedirs(metrics_dir, exist_ok=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from kimonaudit.api.serve import run

    settings = ApiSettings(
        rate_limit=rate_limit, checkpoint_interval=checkpoint_interval, wait_timeout=wait_timeout
    )
    run(
        obj.log(create=True),
        host=host,
        port=port,
        settings=settings,
        access_log=access_log,
        forwarded_allow_ips=forwarded_allow_ips,
    )


@cli.group()
def apikeys() -> None:
    """Create, list and revoke tenant API keys (scopes: events:write,
    events:read, admin)."""


@apikeys.command("create")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.option("--name", "key_name", required=True, help="What the key is for, e.g. helpdesk-prod.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(list(SCOPES)),
    default=["events:write"],
    show_default=True,
    help="Repeat for several scopes.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def apikeys_create(
    obj: Ctx, tenant_id: str, key_name: str, scopes: tuple[str, ...], as_json: bool
) -> None:
    """Create an API key and print it (shown once)."""
    key, text = obj.log().create_api_key(tenant_id, key_name, scopes)
    if as_json:
        _emit_json({**key.to_json(), "key": text})
    else:
        click.echo(f"key {key.key_id} ({key.name}; {' '.join(key.scopes)}) for tenant {tenant_id}")
        _show_new_key(text)


@apikeys.command("list")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def apikeys_list(obj: Ctx, tenant_id: str, as_json: bool) -> None:
    """List a tenant's API keys (ids and names, never secrets)."""
    keys_ = obj.log().list_api_keys(tenant_id)
    if as_json:
        _emit_json([k.to_json() for k in keys_])
        return
    rows = [
        (
            k.prefix,
            k.name,
            " ".join(k.scopes),
            _when(k.created_at),
            _when(k.last_used_at) if k.last_used_at else "-",
            _when(k.revoked_at) if k.revoked_at else "-",
        )
        for k in keys_
    ]
    headers = ("id", "name", "scopes", "created", "last used", "revoked")
    out.print(fitted_table(headers, rows, keep=("id",)))


@apikeys.command("revoke")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.argument("key_id")
@click.pass_obj
def apikeys_revoke(obj: Ctx, tenant_id: str, key_id: str) -> None:
    """Revoke KEY_ID (the 12 characters after kak_). A running server stops
    accepting it within a few seconds."""
    key_id = key_id.removeprefix("kak_")
    log = obj.log()
    log.get_tenant(tenant_id)
    key = log.revoke_api_key(tenant_id, key_id)
    click.echo(f"revoked {key.prefix} ({key.name})")


# -- demo ----------------------------------------------------------------------
@cli.command()
@click.option(
    "--events",
    default=200_000,
    show_default=True,
    type=click.IntRange(1_000),
    help="How many events to simulate (millions work; they take minutes).",
)
@click.option(
    "--months",
    default=14,
    show_default=True,
    type=click.IntRange(1, 120),
    help="How far back the history reaches.",
)
@click.option(
    "--seed",
    default=10482,
    show_default=True,
    type=int,
    help="Random seed: the same seed gives the same history.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Add another set of demo tenants to a database that already has them.",
)
@click.option(
    "--console-url",
    default=None,
    metavar="URL",
    help="The console's address to print (default http://127.0.0.1:8080/console/, "
    "where `kimonaudit serve` listens by default).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary (with the keys).")
@click.pass_obj
def demo(
    obj: Ctx,
    events: int,
    months: int,
    seed: int,
    force: bool,
    console_url: str | None,
    as_json: bool,
) -> None:
    """Fill the database with a simulated helpdesk history.

    Three tenants (Acme Support on enterprise, Globex Helpdesk on team,
    Initech IT on free) with agents and admins, months of working-day
    activity written through the ordinary append path with a simulated
    clock. Prints the tenant ids, one admin API key per tenant (shown once)
    and the console address.
    """
    from kimonaudit.demo import CONSOLE_URL, run_demo

    console = (console_url or CONSOLE_URL).rstrip("/") + "/"
    created = obj.missing_files()
    with progress_bar("simulating", events, plain=True) as update:
        summary = run_demo(
            obj.db,
            key_file=obj.key_file,
            name=obj.name,
            events=events,
            months=months,
            seed=seed,
            force=force,
            progress=update,
        )
    # == console owner (owned by the console work) ==
    from kimonaudit.console.accounts import create_first_owner

    main_tenant = summary.tenants[0]
    owner, password = create_first_owner(
        obj.log(create=True), main_tenant.id, f"console-owner@{main_tenant.domain}"
    )
    sign_in = {"tenant": main_tenant.id, "email": owner.email, "password": password}
    # == end console owner ==
    if as_json:
        _emit_json({**summary.to_json(), "console": console, "console_owner": sign_in})
        return
    for what in created:
        click.echo(what.replace("no ", "created ", 1), err=True)
    rate = summary.events / summary.seconds if summary.seconds else 0
    click.echo(
        f"simulated {summary.events:,} events from {format_ts(summary.start_us)[:10]} "
        f"to {format_ts(summary.end_us)[:10]} in {summary.seconds:.1f} s "
        f"({rate:,.0f} events/s)"
    )
    for t in summary.tenants:
        click.echo(f"\n{t.name} ({t.plan}): tenant {t.id}, {t.events:,} events")
        click.echo(f"  admin API key (shown once): {t.api_key}")
    click.echo()
    top = ", ".join(f"{a} {n:,}" for a, n in list(summary.actions.items())[:6])
    click.echo(f"most frequent: {top}")
    click.echo(f"console: {console} (start it with `kimonaudit serve`)")
    click.echo(
        f"  sign in at {console}signin?tenant={main_tenant.id} as {owner.email} "
        f"(owner of {main_tenant.name}), password (shown once): {password}"
    )
    click.echo("try searching: action:ticket.viewed target:ticket:10482")
    click.echo(
        "the key and password above are shown once; for new ones: `kimonaudit apikeys create "
        f"--tenant {main_tenant.id} --name NAME --scope admin` and `kimonaudit console "
        f"create-user --tenant {main_tenant.id} EMAIL`"
    )
    sys.stdout.flush()


# == console users (owned by the console work) ===================================
@cli.group()
def console() -> None:
    """Admin console users (roles: owner, admin, auditor)."""


@console.command("create-user")
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.option(
    "--role",
    type=click.Choice(["owner", "admin", "auditor"]),
    default="owner",
    show_default=True,
    help="owner and admin manage the tenant; auditor only reads.",
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of asking.",
)
@click.argument("email")
@click.pass_obj
def console_create_user(
    obj: Ctx, tenant_id: str, role: str, password_stdin: bool, email: str
) -> None:
    """Create a console user who signs in with EMAIL, for instance the first
    owner of a tenant. The password is asked for twice and never echoed."""
    from kimonaudit.console.accounts import ConsoleAccounts
    from kimonaudit.console.passwords import check_password

    log = obj.log()
    log.get_tenant(tenant_id)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(
            "Password",
            hide_input=True,
            confirmation_prompt=True,
            value_proc=check_password,
            err=True,
        )
    user = ConsoleAccounts(log).create_user(tenant_id, email, password, role)
    click.echo(f"created console {user.role} {user.email} ({user.user_id}) in tenant {tenant_id}")


# == end console users ============================================================


# == search and export (owned by the search work) ===============================
def _cli_access(
    log: AuditLog, tenant_id: str, action: str, query: str, rows: int, **details: Any
) -> None:
    import getpass

    from kimonaudit.search import record_access
    from kimonaudit.service import SYSTEM_ACTOR

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    record_access(
        log,
        tenant_id,
        action,
        SYSTEM_ACTOR,
        query,
        rows,
        "cli",
        details={"os_user": user, **details},
    )


@cli.command()
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.argument("query", default="")
@click.option(
    "--limit", default=50, show_default=True, type=click.IntRange(1, 1000), help="Entries per page."
)
@click.option("--cursor", help="next_cursor of the previous page (same query).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def search(
    obj: Ctx, tenant_id: str, query: str, limit: int, cursor: str | None, as_json: bool
) -> None:
    """Search a tenant's log, newest first (docs/query-language.md).

    Example: kimonaudit search --tenant T 'action:role.* created:>-7d'. The
    search is itself recorded in the log as audit_log.searched.
    """
    from kimonaudit.search import page_json

    log = obj.log()
    page = log.search(tenant_id, query, limit, cursor)
    body = page_json(log, page)
    _cli_access(
        log, tenant_id, "audit_log.searched", page.query, len(page), cursor=cursor is not None
    )
    if as_json:
        _emit_json(body)
        return
    rows = []
    for e in body["events"]:
        a = e["actor"] or {}
        t = e["target"] or {}
        who = a.get("id") or a.get("name") or (a.get("hash") or "")[:12]
        recorded = e["recorded_at"].replace("T", " ")[:19]  # to the second; --json has it all
        target = f"{t.get('type')}:{t.get('id')}" if t else ""
        rows.append((str(e["seq"]), recorded, e["action"], who, target, e["outcome"]))
    headers = ("seq", "recorded", "action", "actor", "target", "outcome")
    out.print(fitted_table(headers, rows, keep=("seq", "action")))
    if page.next_cursor:
        click.echo(f"more: --cursor {page.next_cursor}", err=True)


@cli.command()
@click.option("--tenant", "tenant_id", required=True, help="Tenant id.")
@click.option("--query", "query", default="", help="Only entries matching this query.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "ndjson"]),
    default="csv",
    show_default=True,
    help="CSV (RFC 4180, docs/export.md) or NDJSON.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    help="Write to this file (default: standard output).",
)
@click.option(
    "--bundle",
    type=click.Path(dir_okay=False, writable=True),
    help="Write a verifiable archive to this file instead (docs/bundles.md).",
)
@click.pass_obj
def export(
    obj: Ctx, tenant_id: str, query: str, fmt: str, output: str | None, bundle: str | None
) -> None:
    """Export a tenant's entries matching --query, oldest first, streamed.

    Covers the entries present when the export starts. Recorded in the log
    as audit_log.exported with the query and the number of rows. With
    --bundle FILE, writes a self-contained signed archive that
    `kimonaudit verify-bundle` checks offline.
    """
    log = obj.log()
    if bundle is not None:
        from kimonaudit.cli_retention import export_bundle

        export_bundle(log, tenant_id, query, bundle, _cli_access)
        return
    exp = log.export(tenant_id, query, fmt)
    total = exp.count() if err.is_terminal else None
    target = Path(output) if output else None
    partial = target.with_name(target.name + ".part") if target else None
    try:
        with (
            progress_bar("exporting", total) as update,
            partial.open("wb") if partial else _stdout_bytes() as sink,
        ):
            for chunk in exp:
                sink.write(chunk)
                update(exp.rows)
        if target and partial:
            partial.replace(target)  # whole or not at all under the final name
    finally:
        if partial and partial.exists():
            partial.unlink()
        _cli_access(
            log,
            tenant_id,
            "audit_log.exported",
            exp.query,
            exp.rows,
            format=fmt,
            complete=exp.complete,
        )
    if target:
        click.echo(f"exported {plural(exp.rows, 'entry', 'entries')} to {target}", err=True)


@contextmanager
def _stdout_bytes() -> Iterator[Any]:
    sys.stdout.flush()
    stream = sys.stdout.buffer
    yield stream
    stream.flush()


# == end search and export =======================================================

# == retention, redaction, archives (owned by the retention work) ========
from kimonaudit.cli_retention import register as _register_retention  # noqa: E402

_register_retention(cli, tenants)

# == SIEM streaming (owned by the streaming work; see kimonaudit.cli_destinations)
from kimonaudit.cli_destinations import deliver, destinations  # noqa: E402

cli.add_command(destinations)
cli.add_command(deliver)


def _whole_summaries(group: click.Group) -> None:
    """Groups added from other modules list their commands like ours."""
    for cmd in group.commands.values():
        if isinstance(cmd, click.Group):
            if type(cmd) is click.Group:
                cmd.__class__ = Group
            _whole_summaries(cmd)


_whole_summaries(cli)


def main(argv: list[str] | None = None) -> None:
    """Run the command; every failure is one `error: ` line on stderr and an
    exit code: 2 for bad usage or input (an unknown tenant, a malformed file
    or argument, a file that does not exist), 3 for other failures
    (database, key file), never a traceback."""
    try:
        cli.main(args=argv, prog_name="kimonaudit", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
        sys.exit(EXIT_USAGE)
    except click.exceptions.Abort:
        fail("aborted", 130)
    except click.ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        fail(exc.format_message() + hint, EXIT_USAGE)
    except (InvalidInput, NotFound, Conflict, VerificationError) as exc:
        fail(exc.message, EXIT_USAGE)
    except AuditLogError as exc:
        fail(exc.message, EXIT_FAILURE)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
        sys.exit(0)
    except OSError as exc:
        fail(_os_error(exc), EXIT_FAILURE)
    except Exception as exc:  # a bug: still one line, and say so
        fail(f"unexpected {type(exc).__name__}: {exc} (this is a bug; please report it)", 3)


def fail(message: str, code: int) -> None:
    """One `error: ` line (click's multi-line messages folded), then exit."""
    one_line = re.sub(r"\s*[\n\t]\s*", " ", message).strip()
    click.echo(f"error: {one_line}", err=True)
    sys.exit(code)


def _os_error(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"
