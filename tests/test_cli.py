"""The `kimonaudit` command against a real temporary database: each
command's output, exit codes, and one-line errors instead of tracebacks."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kimonaudit.core import merkle
from kimonaudit.core.note import Verifier, open_checkpoint
from tests.helpers import event


def kimon(tmp_path: Path, *args: str, stdin: str | None = None, db: str | None = None):
    env = {
        **os.environ,
        "KIMONAUDIT_DATABASE_URL": db or f"sqlite:///{tmp_path / 'audit.db'}",
        "KIMONAUDIT_SIGNING_KEY_FILE": str(tmp_path / "audit.key"),
    }
    return subprocess.run(
        [sys.executable, "-m", "kimonaudit", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.fixture
def tenant(tmp_path: Path) -> str:
    proc = kimon(tmp_path, "tenants", "create", "Acme Support", "--plan", "business", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["id"]


def test_tenant_create_and_list(tmp_path, tenant):
    """tenants create prints the id; tenants list shows plan, retention and size."""
    proc = kimon(tmp_path, "tenants", "list", "--json")
    (row,) = json.loads(proc.stdout)
    assert row["id"] == tenant and row["plan"] == "business"
    assert row["retention_months"] == 36
    # the tenant's first entry records the admin API key made with it
    assert row["tree_size"] == 1
    key = tmp_path / "audit.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_ingest_then_prove_and_verify(tmp_path, tenant):
    """NDJSON ingest appends every line; proofs and verify work on the result."""
    lines = "\n".join(json.dumps(event(i)) for i in range(24)) + "\n\n"
    proc = kimon(tmp_path, "ingest", "--tenant", tenant, "-", "--json", stdin=lines)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {
        "tenant_id": tenant,
        "appended": 24,
        "duplicates": 0,
        "tree_size": 25,  # after the tenant's first entry (its admin key)
    }
    note = kimon(tmp_path, "checkpoint", "--tenant", tenant).stdout
    vkey = kimon(tmp_path, "keys", "show").stdout.strip()
    cp, _ = open_checkpoint(note, [Verifier.from_vkey(vkey)])
    assert cp.size == 25

    proof = json.loads(kimon(tmp_path, "prove", "--tenant", tenant, "--seq", "7").stdout)
    assert set(proof) >= {"index", "tree_size", "leaf", "leaf_hash", "root", "proof"}
    import base64

    b = base64.b64decode
    assert merkle.leaf_hash(b(proof["leaf"])) == b(proof["leaf_hash"])
    merkle.verify_inclusion(
        b(proof["leaf_hash"]), 7, proof["tree_size"], [b(h) for h in proof["proof"]], cp.root_hash
    )
    cons = json.loads(
        kimon(tmp_path, "prove", "--tenant", tenant, "--from", "10", "--to", "25").stdout
    )
    assert b(cons["new_root"]) == cp.root_hash
    merkle.verify_consistency(
        10, 25, b(cons["old_root"]), b(cons["new_root"]), [b(h) for h in cons["proof"]]
    )

    ok = kimon(tmp_path, "verify", "--tenant", tenant)
    assert ok.returncode == 0 and ok.stdout.startswith(f"ok {tenant}: 25 entries")


def test_ingest_rejects_a_bad_file_whole(tmp_path, tenant):
    """A file with bad lines appends nothing and names each bad line."""
    lines = [json.dumps(event(0)), "{not json", json.dumps({"action": "x"}), json.dumps(event(1))]
    proc = kimon(tmp_path, "ingest", "--tenant", tenant, "-", stdin="\n".join(lines))
    assert proc.returncode == 2
    second = len(lines[0]) + 1
    third = second + len(lines[1]) + 1
    assert f"line 2 (byte {second}): not JSON" in proc.stderr
    assert f"line 3 (byte {third}): action" in proc.stderr
    assert "Traceback" not in proc.stderr
    listing = json.loads(kimon(tmp_path, "tenants", "list", "--json").stdout)
    assert listing[0]["tree_size"] == 1  # only the admin key's entry


def test_ingest_is_idempotent_for_client_ids(tmp_path, tenant):
    """Re-running an ingest of events with ids appends nothing the second time."""
    lines = "\n".join(json.dumps(event(i, id=f"evt-{i}")) for i in range(5))
    kimon(tmp_path, "ingest", "--tenant", tenant, "-", stdin=lines)
    again = kimon(tmp_path, "ingest", "--tenant", tenant, "-", "--json", stdin=lines)
    assert json.loads(again.stdout)["appended"] == 0
    assert json.loads(again.stdout)["duplicates"] == 5


def test_keys_rotate_keeps_old_checkpoints_verifiable(tmp_path, tenant):
    """After rotation the log still verifies, old checkpoint included; keys show lists both."""
    kimon(tmp_path, "ingest", "--tenant", tenant, "-", stdin=json.dumps(event(0)))
    saved = tmp_path / "cp.txt"
    saved.write_text(kimon(tmp_path, "checkpoint", "--tenant", tenant).stdout)
    old = kimon(tmp_path, "keys", "show").stdout.strip()
    new = kimon(tmp_path, "keys", "rotate").stdout.strip()
    assert new != old
    shown = kimon(tmp_path, "keys", "show", "--json")
    assert json.loads(shown.stdout)["retired"] == [old]
    kimon(tmp_path, "ingest", "--tenant", tenant, "-", stdin=json.dumps(event(1)))
    kimon(tmp_path, "checkpoint", "--tenant", tenant)
    proc = kimon(tmp_path, "verify", "--against", str(saved), "--json")
    assert proc.returncode == 0, proc.stdout
    assert json.loads(proc.stdout)[0]["checkpoints_checked"] == 2


@pytest.mark.parametrize(
    ("args", "needle", "code"),
    [
        (("verify", "--tenant", "t_missing"), "no tenant 't_missing'", 2),
        (("tenants", "create", "x", "--plan", "gold"), "Invalid value for '--plan'", 2),
        (("prove", "--tenant", "T", "--seq", "1", "--from", "0"), "either --seq", 2),
        (("checkpoint", "--tenant", "t_missing"), "no tenant", 2),
        (("tenants", "create", "   "), "tenant name", 2),
    ],
)
def test_errors_are_one_line_with_a_nonzero_exit(tmp_path, tenant, args, needle, code):
    """Bad usage and missing things give one clear line, never a traceback."""
    proc = kimon(tmp_path, *args)
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_database_url_is_a_clear_error(tmp_path):
    """An unsupported URL or missing folder names the problem."""
    proc = kimon(tmp_path, "tenants", "list", db="mysql://x")
    assert proc.returncode == 3 and "unsupported database URL" in proc.stderr
    proc = kimon(tmp_path, "tenants", "create", "x", db=f"sqlite:///{tmp_path}/nope/a.db")
    assert proc.returncode == 3 and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
