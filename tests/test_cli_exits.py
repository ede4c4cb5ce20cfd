"""Exit codes and error lines of every `kimonaudit` command, as the README
documents them: 0 ok, 1 `verify` found a problem, 2 bad usage or input, 3
other failures (database, key file). Every error is one `error: ` line on
stderr, never a traceback; read-only commands never create files.

Commands run in-process through `kimonaudit.cli.main` (what the console
script calls) against real SQLite files, so the table stays fast."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import click
import pytest

import kimonaudit
from kimonaudit import cli
from tests.helpers import event, raw_db

USAGE, INPUT, FAILURE = 2, 2, 3


def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
    """Run `kimonaudit ARGS` in this process: (exit code, stdout, stderr)."""
    import contextlib
    import sys

    out, err = io.StringIO(), io.StringIO()
    code = 0
    old_in = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                cli.main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdin = old_in
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty working directory with no database or key file configured."""
    monkeypatch.chdir(tmp_path)
    for var in ("KIMONAUDIT_DATABASE_URL", "KIMONAUDIT_SIGNING_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture
def tenant(home):
    """A deployment in the working directory with one tenant of 5 entries,
    a checkpoint and a garbage file to hand to commands."""
    with kimonaudit.open("sqlite:///kimonaudit.db", key_file="kimonaudit.key") as lg:
        tid = lg.create_tenant("acme").id
        lg.append(tid, [event(i) for i in range(5)])
        (home / "checkpoint.txt").write_text(lg.checkpoint(tid).note)
    (home / "garbage.bin").write_bytes(b"\xff\xfe\x00garbage\n" * 10)
    return tid


T = "{tid}"  # replaced by the fixture's tenant id

# (argv, failure class, exit code, words the one error line contains)
TABLE: list[tuple[tuple[str, ...], str, int, str]] = [
    # unknown tenant: bad input
    (("search", "--tenant", "t_nope"), "unknown tenant", INPUT, "no tenant 't_nope'"),
    (("export", "--tenant", "t_nope"), "unknown tenant", INPUT, "no tenant 't_nope'"),
    (("checkpoint", "--tenant", "t_nope"), "unknown tenant", INPUT, "no tenant 't_nope'"),
    (("prove", "--tenant", "t_nope", "--seq", "0"), "unknown tenant", INPUT, "no tenant"),
    (("verify", "--tenant", "t_nope"), "unknown tenant", INPUT, "no tenant 't_nope'"),
    (("ingest", "--tenant", "t_nope", "-"), "unknown tenant", INPUT, "no tenant 't_nope'"),
    (("apikeys", "list", "--tenant", "t_nope"), "unknown tenant", INPUT, "no tenant"),
    (
        ("apikeys", "create", "--tenant", "t_nope", "--name", "x"),
        "unknown tenant",
        INPUT,
        "no tenant",
    ),
    (("apikeys", "revoke", "--tenant", "t_nope", "kak_x"), "unknown tenant", INPUT, "no tenant"),
    (("actors", "erase", "--tenant", "t_nope", "a1"), "unknown tenant", INPUT, "no tenant"),
    (
        ("console", "create-user", "--tenant", "t_nope", "--password-stdin", "a@b.test"),
        "unknown tenant",
        INPUT,
        "no tenant",
    ),
    # bad usage: options and arguments click refuses
    (("tenants", "create", "x", "--plan", "gold"), "bad option", USAGE, "'--plan'"),
    (("tenants", "list", "--bogus"), "bad option", USAGE, "No such option"),
    (("search",), "bad option", USAGE, "Missing option '--tenant'"),
    (("search", "--tenant", T, "--limit", "0"), "bad option", USAGE, "--limit"),
    (("prove", "--tenant", T, "--seq", "1", "--from", "0"), "bad option", USAGE, "either --seq"),
    (("export", "--tenant", T, "--format", "xml"), "bad option", USAGE, "'--format'"),
    (("verify", "--against", "nope.txt"), "bad option", USAGE, "nope.txt"),
    (("keys", "show", "extra"), "bad option", USAGE, "unexpected extra argument"),
    (("demo", "--events", "5"), "bad option", USAGE, "--events"),
    (("serve", "--port", "70000"), "bad option", USAGE, "--port"),
    (("bogus",), "bad option", USAGE, "No such command 'bogus'"),
    # bad input: values and files that are wrong
    (("tenants", "create", "   "), "bad input", INPUT, "tenant name"),
    (("search", "--tenant", T, "action:("), "bad input", INPUT, "error: "),
    (("search", "--tenant", T, "--cursor", "garbage"), "bad input", INPUT, "cursor"),
    (("prove", "--tenant", T, "--seq", "99"), "bad input", INPUT, "error: "),
    (("prove", "--tenant", T, "--from", "4", "--to", "2"), "bad input", INPUT, "error: "),
    (("verify", "--against", "garbage.bin"), "bad input", INPUT, "error: "),
    (("ingest", "--tenant", T, "garbage.bin"), "bad input", INPUT, "line 1 (byte 0): not UTF-8"),
    (("ingest", "--tenant", T, "checkpoint.txt"), "bad input", INPUT, "line 1 (byte 0): not JSON"),
    (("apikeys", "revoke", "--tenant", T, "kak_nothere"), "bad input", INPUT, "error: "),
    (("keys", "generate"), "bad input", FAILURE, "already exists"),
    # other failures: the database or the key file
    (("--db", "mysql://x", "tenants", "list"), "database", FAILURE, "unsupported database URL"),
    (
        ("--db", "postgresql://nobody@127.0.0.1:1/none", "tenants", "list"),
        "database",
        FAILURE,
        "error: ",
    ),
    (("--key-file", "garbage.bin", "tenants", "list"), "key file", FAILURE, "garbage.bin"),
]


@pytest.mark.parametrize(
    ("argv", "kind", "code", "needle"),
    TABLE,
    ids=[f"{' '.join(a[:3])}: {k}" for a, k, _, _ in TABLE],
)
def test_exit_code_per_failure_class(tenant, argv, kind, code, needle):
    """Each command exits with the documented code for each class of
    failure, with one `error: ` line on stderr and nothing on stdout."""
    argv = tuple(a.replace(T, tenant) for a in argv)
    got, out, err = run(*argv)
    assert got == code, (argv, got, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert needle in err, err
    assert "Traceback" not in err and out == ""


def test_verify_exits_1_only_for_a_problem_in_the_log(tenant):
    """Exit 1 is kept for verify finding a problem; an intact log exits 0."""
    assert run("verify", "--tenant", tenant)[0] == 0
    with raw_db("sqlite:///kimonaudit.db") as sql:
        sql("UPDATE entries SET outcome = 'failure' WHERE tenant_id = ? AND seq = 2", (tenant,))
    code, out, err = run("verify", "--tenant", tenant)
    assert code == 1 and out.startswith(f"FAILED {tenant}: first bad seq 2; 1 tampered")
    assert err == ""


READ_ONLY = [
    ("tenants", "list"),
    ("search", "--tenant", "t_x"),
    ("export", "--tenant", "t_x"),
    ("checkpoint", "--tenant", "t_x"),
    ("prove", "--tenant", "t_x", "--seq", "0"),
    ("verify",),
    ("keys", "show"),
    ("keys", "rotate"),
    ("apikeys", "list", "--tenant", "t_x"),
    ("actors", "erase", "--tenant", "t_x", "a1"),
]


@pytest.mark.parametrize("argv", READ_ONLY, ids=[" ".join(a[:2]) for a in READ_ONLY])
def test_read_commands_on_a_missing_database_create_nothing(home, argv):
    """Run where there is no database: say so (with the full path), exit 2,
    and leave no kimonaudit.db or kimonaudit.key behind."""
    code, out, err = run(*argv)
    assert code == 2, err
    assert err.startswith("error: no ") and str(home) in err, err
    assert out == "" and list(home.iterdir()) == []


def test_commands_that_create_files_say_where(home):
    """tenants create makes the database and key file, and names both."""
    code, out, err = run("tenants", "create", "Acme")
    assert code == 0
    assert err.splitlines() == [
        f"created database file at {home / 'kimonaudit.db'}",
        f"created key file at {home / 'kimonaudit.key'}",
    ]
    assert out.startswith("tenant t_")
    code, _, err = run("tenants", "create", "Globex")
    assert code == 0 and err == ""  # nothing new this time


def test_keys_generate_says_where(home):
    """keys generate names the file it made."""
    code, out, err = run("keys", "generate")
    assert code == 0 and err == f"created key file at {home / 'kimonaudit.key'}\n"
    assert out.startswith("kimonaudit.local+")


def test_help_summaries_are_never_cut(monkeypatch):
    """`kimonaudit --help` (and each group's) at 80 columns shows every
    command's first sentence whole, wrapped, never cut with '...'."""
    monkeypatch.setenv("COLUMNS", "80")
    groups = [((), cli.cli)] + [
        ((name,), cmd) for name, cmd in cli.cli.commands.items() if isinstance(cmd, click.Group)
    ]
    assert len(groups) > 4
    for path, group in groups:
        code, out, _ = run(*path, "--help")
        assert code == 0
        listing = out.split("Commands:", 1)[1]
        assert "..." not in listing, (path, listing)
        for name, cmd in group.commands.items():
            first = cmd.get_short_help_str(limit=10_000)
            assert " ".join(first.split()) in " ".join(listing.split()), (name, first)
    code, out, _ = run("actors", "--help")
    assert "Erase a person (GDPR Article 17 erasure)." in out


JUNK = [
    "",
    "-",
    "--",
    "0",
    "-1",
    "99999999999999999999999",
    "nan",
    "🙂",
    "a" * 3000,
    "t_" + "x" * 16,
    "action:role.* created:>-7d",
    'action:"',
    "created:>-99999999999d",
    "\u202e\u0000".replace("\u0000", ""),
    "kak_" + "z" * 12,
    "garbage.bin",
    "missing/file.txt",
    ".",
]


def _leaf_commands() -> list[tuple[tuple[str, ...], click.Command]]:
    out = []
    for name, cmd in cli.cli.commands.items():
        if isinstance(cmd, click.Group):
            out += [((name, sub), c) for sub, c in cmd.commands.items()]
        else:
            out.append(((name,), cmd))
    # serve runs a server and demo a long simulation.
    return [(p, c) for p, c in out if p[0] not in ("serve", "demo")]


@pytest.mark.parametrize("path", [p for p, _ in _leaf_commands()], ids=" ".join)
def test_fuzzed_arguments_never_give_a_traceback(tenant, path):
    """Random values for every option and argument of each command: every
    run ends with a documented exit code, and a failure is one error line."""
    cmd = dict(_leaf_commands())[path]
    rnd = random.Random(" ".join(path))
    for _ in range(25):
        argv: list[str] = list(path)
        for param in cmd.params:
            if param.name == "help" or rnd.random() < 0.25:
                continue
            value = rnd.choice([*JUNK, tenant, tenant, "1", "5"])
            if isinstance(param, click.Option):
                if param.is_flag:
                    argv.append(param.opts[0])
                    continue
                argv += [param.opts[0], value]
            else:
                argv.append(value)
        if rnd.random() < 0.2:
            argv.append(rnd.choice(JUNK))
        code, _, err = run(*argv, stdin=rnd.choice(["", "pw\n", "x" * 80 + "\n"]))
        assert "Traceback" not in err and "this is a bug" not in err, (argv, err)
        assert code in (0, 1, 2, 3, 130), (argv, code, err)
        if code in (2, 3):
            lines = err.strip().splitlines()
            assert lines and lines[-1].startswith("error: "), (argv, err)
            assert len(lines) == 1 or path == ("tenants", "create"), (argv, err)


def test_demo_reports_progress_and_credentials_when_piped(home):
    """Output to a pipe (not a terminal): progress lines on stderr, every
    tenant's key and the console password on stdout."""
    code, out, err = run("demo", "--events", "1000", "--months", "1")
    assert code == 0, err
    progress = [x for x in err.splitlines() if x.startswith("simulating: ")]
    assert progress[-1] == "simulating: 1,000 of 1,000 (100%)" and len(progress) >= 5
    assert f"created database file at {home / 'kimonaudit.db'}" in err
    assert out.count("admin API key (shown once): kak_") == 3
    assert "password (shown once): " in out
    assert "kimonaudit apikeys create --tenant t_" in out
    assert "kimonaudit console create-user --tenant t_" in out
    summary = json.loads(run("tenants", "list", "--json")[1])
    assert len(summary) == 3


def test_the_error_prefix_is_lower_case_everywhere():
    """No 'Error:' from click: cli.main prints every failure itself."""
    source = Path(cli.__file__).read_text(encoding="utf-8")
    assert "exc.show()" not in source and '"Error:' not in source
