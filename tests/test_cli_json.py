"""`--json` everywhere it belongs (issue 10, item 13): every command that
prints JSON accepts it, every list (and show/status) command has it."""

from __future__ import annotations

import json
from pathlib import Path

import click

from kimonaudit.cli import cli
from tests.test_cli import kimon


def _commands(group: click.Group, path: tuple[str, ...] = ()) -> dict[str, click.Command]:
    out: dict[str, click.Command] = {}
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out.update(_commands(cmd, (*path, name)))
        else:
            out[" ".join((*path, name))] = cmd
    return out


def _has_json(cmd: click.Command) -> bool:
    return any("--json" in getattr(p, "opts", ()) for p in cmd.params)


def test_commands_that_print_json_or_list_accept_json() -> None:
    """A command whose help says it prints JSON, or that lists, shows or
    reports status, has a --json option."""
    missing = []
    for name, cmd in _commands(cli).items():
        says_json = " JSON" in (cmd.help or "").replace("\n", " ")
        lists = name.split()[-1] in ("list", "show", "status")
        if (says_json or lists) and not _has_json(cmd):
            missing.append(name)
    assert missing == []


def test_prove_accepts_json(tmp_path: Path) -> None:
    """`prove --json` prints the same JSON proof as `prove`."""
    created = kimon(tmp_path, "tenants", "create", "acme", "--json")
    assert created.returncode == 0, created.stderr
    tid = json.loads(created.stdout)["id"]
    plain = kimon(tmp_path, "prove", "--tenant", tid, "--seq", "0")
    assert plain.returncode == 0, plain.stderr
    with_flag = kimon(tmp_path, "prove", "--tenant", tid, "--seq", "0", "--json")
    assert with_flag.returncode == 0, with_flag.stderr
    assert json.loads(with_flag.stdout)["index"] == 0
    assert json.loads(with_flag.stdout).keys() == json.loads(plain.stdout).keys()
