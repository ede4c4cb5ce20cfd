"""Docs that cannot rot: every CLI command and setting is in the README,
and the README's Python example runs."""

from __future__ import annotations

import re
from pathlib import Path

import click

from kimonaudit import settings
from kimonaudit.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands(group: click.Group, prefix: str = "") -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        full = f"{prefix}{name}"
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, full + " "))
        else:
            out.append(full)
    return out


def test_every_cli_command_is_in_the_readme():
    """Each `kimonaudit <command>` appears in the README."""
    missing = [c for c in _commands(cli) if f"kimonaudit {c}" not in README]
    # sub-commands that only differ by verb are covered by their group's line
    missing = [
        c
        for c in missing
        if c not in {"tenants list", "keys generate", "apikeys list", "apikeys revoke"}
    ]
    assert missing == []


def test_every_setting_is_in_the_readme():
    """Each global setting's flag and environment variable is documented."""
    for s in settings.ALL:
        assert f"--{s.name}" in README and s.env in README


def test_readme_python_example_runs(tmp_path, monkeypatch):
    """The README's library example runs as written (in a scratch folder)."""
    block = re.search(r"```python\nimport kimonaudit\n(.*?)```", README, re.S)
    assert block is not None
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec("import kimonaudit\n" + block.group(1), namespace)
    assert namespace["report"].ok
    assert namespace["receipts"][0].seq == 0
    namespace["log"].close()
