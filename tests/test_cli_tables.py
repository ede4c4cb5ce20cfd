"""Tables in an 80-column terminal: `tenants list` and `search` never cut a
tenant id, a sequence number or an action (people copy them); the other
columns wrap or shrink instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import kimonaudit
from tests.helpers import event

LONG_ACTIONS = [
    "support.impersonation.started",
    "helpdesk.ticket.sla_breach_notification_sent",
    "auth.login.failed",
]


def run80(tmp_path: Path, *args: str) -> str:
    env = {
        **os.environ,
        "COLUMNS": "80",
        "KIMONAUDIT_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}",
        "KIMONAUDIT_SIGNING_KEY_FILE": str(tmp_path / "a.key"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "kimonaudit", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines and max(len(x) for x in lines) <= 80, proc.stdout
    return proc.stdout


def test_tenants_list_keeps_ids_whole_in_80_columns(tmp_path):
    """Every tenant id is on one line, whole, even beside a long name."""
    with kimonaudit.open(f"sqlite:///{tmp_path / 'a.db'}", key_file=str(tmp_path / "a.key")) as lg:
        ids = [
            lg.create_tenant(name, plan=plan).id
            for name, plan in [
                ("Acme Support International Holdings Worldwide", "enterprise"),
                ("Globex", "team"),
                ("Initech IT Service Desk (EMEA)", "business"),
            ]
        ]
    text = run80(tmp_path, "tenants", "list")
    for tid in ids:
        assert any(tid in line for line in text.splitlines()), (tid, text)
    assert "enterprise" in text and "Acme" in text


def test_search_keeps_seqs_and_actions_whole_in_80_columns(tmp_path):
    """Long actions, long actor ids and targets: each action and seq is on
    one line, whole (no '…'); actors and targets wrap."""
    with kimonaudit.open(f"sqlite:///{tmp_path / 'a.db'}", key_file=str(tmp_path / "a.key")) as lg:
        tid = lg.create_tenant("acme").id
        events = [
            event(
                i,
                action=action,
                actor={"id": f"agent_with_a_rather_long_identifier_{i}", "type": "agent"},
                target={"type": "ticket", "id": f"{10_000_000 + i}-escalated-to-tier-3"},
            )
            for i, action in enumerate(LONG_ACTIONS * 3)
        ]
        seqs = [r.seq for r in lg.append(tid, events)]
    text = run80(tmp_path, "search", "--tenant", tid, "--limit", "20")
    lines = text.splitlines()
    assert "…" not in text
    for action in LONG_ACTIONS:
        assert sum(action in line for line in lines) == 3, (action, text)
    for seq in seqs:
        assert any(line.split() and line.split()[0] == str(seq) for line in lines), seq
