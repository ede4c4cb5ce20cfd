"""`kimonaudit destinations …` and `kimonaudit deliver` against a real database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

import kimonaudit
from kimonaudit.cli import cli
from tests.helpers import event
from tests.servers import child_env
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


def test_cli_update(tmp_path: Path) -> None:
    """update changes only what is given, prints the changed fields, a
    generated signing secret once and never a given secret; a bad value
    exits non-zero naming the field; another tenant's id is not found."""
    db, kf = f"sqlite:///{tmp_path / 'a.db'}", str(tmp_path / "k.key")
    with kimonaudit.open(db, key_file=kf) as log:
        tid = log.create_tenant("acme").id
        other = log.create_tenant("other").id
    base = ["--db", db, "--key-file", kf]
    allow = ["--destination-allowlist", "127.0.0.0/8"]
    run = CliRunner().invoke
    token = tmp_path / "token.txt"
    token.write_text("file-token-9\n")
    with HttpReceiver() as rx, HttpReceiver() as rx2:
        r = run(cli, [*base, "destinations", "add", "--tenant", tid, "--name", "hec",
                      "--kind", "splunk_hec", "--url", rx.url, "--secret", "token=t0",
                      "--setting", "index=a", "--setting", "host=h1", "--json",
                      *allow])  # fmt: skip
        assert r.exit_code == 0, r.output
        hec = json.loads(r.output)["id"]
        r = run(cli, [*base, "destinations", "update", "--tenant", tid, hec, "--name", "hec2",
                      "--format", "cef", "--filter", "is:security", "--max-events", "20",
                      "--setting", "index=audit", "--unset-setting", "host",
                      "--secret", f"token=@{token}", "--url", rx2.url, *allow])  # fmt: skip
        assert r.exit_code == 0, r.output
        assert "changed: name, format, filter, batch.max_events, settings.host, " \
               "settings.index, url, secrets.token" in r.output  # fmt: skip
        assert "file-token-9" not in r.output and "t0" not in r.output.split("changed:")[1]
        r = run(cli, [*base, "destinations", "show", "--tenant", tid, hec])
        shown = json.loads(r.output)
        assert shown["name"] == "hec2" and shown["format"] == "cef"
        assert shown["settings"] == {"index": "audit"} and shown["batch"]["max_events"] == 20
        assert shown["filter"] == "is:security" and shown["url"] == rx2.url
        with kimonaudit.open(db, key_file=kf) as log:
            from kimonaudit.destinations import Destinations

            rec = log.store.get_destination(tid, hec)
            assert Destinations(log).secrets(rec) == {"token": "file-token-9"}
        # Clearing the filter with "", then nothing to change.
        r = run(cli, [*base, "destinations", "update", "--tenant", tid, hec, "--filter", ""])
        assert r.exit_code == 0 and "changed: filter" in r.output
        r = run(cli, [*base, "destinations", "update", "--tenant", tid, hec, "--name", "hec2"])
        assert r.exit_code == 0 and "nothing changed" in r.output
        # A webhook's signing secret generated anew, printed once.
        r = run(cli, [*base, "destinations", "add", "--tenant", tid, "--name", "hook",
                      "--kind", "webhook", "--url", rx.url, "--json", *allow])  # fmt: skip
        hook = json.loads(r.output)
        r = run(cli, [*base, "destinations", "update", "--tenant", tid, hook["id"],
                      "--new-signing-secret", "--json"])  # fmt: skip
        assert r.exit_code == 0, r.output
        out = json.loads(r.output)
        assert out["changed"] == ["secrets.signing_secret"]
        assert out["secrets"]["signing_secret"].startswith("whsec_")
        assert out["secrets"]["signing_secret"] != hook["secrets"]["signing_secret"]
        # Refusals name the field; another tenant's id is not found.
        for args, field in (
            (["--format", "cef"], "format"),
            (["--url", "https://10.0.0.1/x"], "url"),
            (["--max-events", "0"], "batch.max_events"),
            (["--filter", "action:("], "filter"),
        ):
            r = run(cli, [*base, "destinations", "update", "--tenant", tid, hook["id"], *args])
            assert r.exit_code != 0 and str(r.exception).startswith(f"{field}:"), (args, r)
        # As the command runs it: exit 2 and one line on stderr.
        p = subprocess.run(
            [sys.executable, "-m", "kimonaudit", *base, "destinations", "update", "--tenant",
             other, hook["id"], "--name", "x"],
            capture_output=True, text=True, env=child_env(),
        )  # fmt: skip
        assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
        assert "no destination" in p.stderr
    with kimonaudit.open(db, key_file=kf) as log:
        updates = [r for r in log.store.iter_entries(tid) if r.action == "audit_stream.updated"]
        assert len(updates) == 3
        assert all(b"file-token-9" not in (r.payload or b"") for r in log.store.iter_entries(tid))
        assert not [r for r in log.store.iter_entries(other) if r.action.startswith("audit_")]


def test_cli_help_lists_update() -> None:
    r = CliRunner().invoke(cli, ["destinations", "--help"])
    assert r.exit_code == 0 and "update" in r.output
    r = CliRunner().invoke(cli, ["destinations", "update", "--help"])
    assert "--new-signing-secret" in r.output and "--unset-secret" in r.output
