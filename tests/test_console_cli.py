"""`kimonaudit console create-user` and the console owner `kimonaudit demo`
prints, against a real SQLite database."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import kimonaudit
from kimonaudit.cli import cli, main
from kimonaudit.console.accounts import Client, ConsoleAccounts

PASSWORD = "correct horse battery"


@pytest.fixture
def cli_db(tmp_path: Path) -> list[str]:
    return ["--db", f"sqlite:///{tmp_path / 'cli.db'}", "--key-file", str(tmp_path / "cli.key")]


def _open(cli_db: list[str]) -> kimonaudit.AuditLog:
    return kimonaudit.open(cli_db[1], key_file=cli_db[3])


def _tenant(cli_db: list[str]) -> str:
    with _open(cli_db) as log:
        return log.create_tenant("acme").id


def test_create_user_asks_twice_and_never_echoes(cli_db: list[str]) -> None:
    """The password prompt is hidden and confirmed; the user can then sign in."""
    tenant = _tenant(cli_db)
    result = CliRunner().invoke(
        cli,
        [*cli_db, "console", "create-user", "--tenant", tenant, "Ann@Acme.test"],
        input=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert "created console owner ann@acme.test (u_" in result.output
    with _open(cli_db) as log:
        signed = ConsoleAccounts(log).sign_in(tenant, "ann@acme.test", PASSWORD, Client())
        assert signed.user.role == "owner"
        created = next(r for r in log.store.iter_entries(tenant) if r.action == "user.created")
        assert json.loads(created.payload or b"")["metadata"]["via"] == "cli"


def test_create_user_reads_stdin_when_asked(cli_db: list[str]) -> None:
    """--password-stdin takes the first line, for scripts; --role picks the role."""
    tenant = _tenant(cli_db)
    result = CliRunner().invoke(
        cli,
        [
            *cli_db,
            "console",
            "create-user",
            "--tenant",
            tenant,
            "--role",
            "auditor",
            "--password-stdin",
            "aud@acme.test",
        ],
        input=f"{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    with _open(cli_db) as log:
        user = log.store.find_console_user(tenant, "aud@acme.test")
        assert user is not None and user.role == "auditor"


def test_create_user_refuses_bad_input_with_exit_2(
    cli_db: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short password, a duplicate e-mail or an unknown tenant exit non-zero
    with a message naming the problem."""
    tenant = _tenant(cli_db)
    cases = [
        (["--tenant", tenant, "a@acme.test"], "short\n", 2, "at least 10 characters"),
        (["--tenant", tenant, "a@acme.test"], f"{PASSWORD}\n", 0, ""),
        (["--tenant", tenant, "a@acme.test"], f"{PASSWORD}\n", 2, "already exists"),
        (["--tenant", "t_missing", "b@acme.test"], f"{PASSWORD}\n", 2, "no tenant"),
    ]
    for args, stdin, code, message in cases:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        with pytest.raises(SystemExit) if code else contextlib.nullcontext() as exit_:
            main([*cli_db, "console", "create-user", "--password-stdin", *args])
        if code:
            assert exit_.value.code == code  # type: ignore[union-attr]
        assert message in capsys.readouterr().err


def test_demo_prints_a_console_owner_who_can_sign_in(cli_db: list[str]) -> None:
    """`kimonaudit demo --json` reports an owner of the main tenant whose
    one-time password signs in."""
    result = CliRunner().invoke(
        cli, [*cli_db, "demo", "--events", "1000", "--months", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # progress and "created ..." lines go to stderr
    owner = data["console_owner"]
    assert owner["tenant"] == data["tenants"][0]["id"]
    with _open(cli_db) as log:
        signed = ConsoleAccounts(log).sign_in(
            owner["tenant"], owner["email"], owner["password"], Client()
        )
        assert signed.user.role == "owner"
