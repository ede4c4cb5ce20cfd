"""`kimonaudit destinations …` and `kimonaudit deliver` against a real database."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

import kimonaudit
from kimonaudit.cli import cli
from tests.helpers import event
from tests.sinks.receivers import HttpReceiver, webhook_checker, webhook_events


def test_cli_round_trip(tmp_path: Path) -> None:
    """add (secret printed once), list, show, test, deliver --once, pause,
    resume, rotate-secret, delete; bad input exits 2 with one line."""
    db, kf = f"sqlite:///{tmp_path / 'a.db'}", str(tmp_path / "k.key")
    with kimonaudit.open(db, key_file=kf) as log:
        tid = log.create_tenant("acme").id
        log.append(tid, [event(i) for i in range(3)])
    base = ["--db", db, "--key-file", kf]
    allow = ["--destination-allowlist", "127.0.0.0/8"]
    run = CliRunner().invoke
    with HttpReceiver() as rx:
        r = run(cli, [*base, "destinations", "add", "--tenant", tid, "--name", "siem",
                      "--kind", "webhook", "--url", rx.url, "--max-wait-ms", "0",
                      "--start", "beginning", "--json", *allow])  # fmt: skip
        assert r.exit_code == 0, r.output
        created = json.loads(r.output)
        secret = created["secrets"]["signing_secret"]
        rx.check = webhook_checker(secret)
        did = created["id"]
        r = run(cli, [*base, "destinations", "list", "--tenant", tid])
        assert did in r.output and secret not in r.output
        r = run(cli, [*base, "destinations", "show", "--tenant", tid, did])
        assert json.loads(r.output)["health"]["lag_events"] == 4 and secret not in r.output
        r = run(cli, [*base, "destinations", "test", "--tenant", tid, did, *allow])
        assert r.exit_code == 0 and "accepted" in r.output
        r = run(cli, [*base, "deliver", "--once", *allow])
        assert r.exit_code == 0 and "delivered 4 entries" in r.output, r.output
        assert [e["seq"] for e in webhook_events(rx) if e["type"] == "audit.event"] == [0, 1, 2, 3]
        r = run(cli, [*base, "destinations", "pause", "--tenant", tid, did, "--reason", "x"])
        assert "paused" in r.output
        r = run(cli, [*base, "destinations", "resume", "--tenant", tid, did])
        assert "active" in r.output
        r = run(cli, [*base, "destinations", "rotate-secret", "--tenant", tid, did])
        assert "whsec_" in r.output and secret not in r.output
        r = run(cli, [*base, "destinations", "delete", "--tenant", tid, did])
        assert r.exit_code == 0 and "deleted" in r.output
        r = run(cli, [*base, "destinations", "add", "--tenant", tid, "--name", "x",
                      "--kind", "webhook", "--url", "https://10.0.0.1/x"])  # fmt: skip
        assert r.exit_code != 0
