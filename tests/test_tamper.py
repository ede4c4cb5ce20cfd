"""The tamper matrix: direct SQL edits to stored rows, on both stores, and
`kimonaudit verify` (the real command) must exit 1 naming the first bad
sequence number; the untouched log exits 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

import kimonaudit
from kimonaudit.core.merkle import CompactRange
from tests.helpers import event, raw_db


def run_verify(db_url: str, key_file: str, *args: str) -> tuple[int, dict]:
    env = {**os.environ, "KIMONAUDIT_DATABASE_URL": db_url, "KIMONAUDIT_SIGNING_KEY_FILE": key_file}
    proc = subprocess.run(
        [sys.executable, "-m", "kimonaudit", "verify", "--json", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    reports = json.loads(proc.stdout)
    return proc.returncode, reports[0]


@pytest.fixture
def filled(db_url, key_file, clock, tmp_path):
    """20 entries, checkpoints at 10 and 20, the newest saved to a file."""
    with kimonaudit.open(db_url, key_file=key_file, clock=clock) as lg:
        t = lg.create_tenant("acme")
        lg.append(t.id, [event(i) for i in range(10)])
        lg.checkpoint(t.id)
        clock.advance(minutes=5)
        lg.append(t.id, [event(i) for i in range(10, 20)])
        saved = tmp_path / "checkpoint.txt"
        saved.write_text(lg.checkpoint(t.id).note)
    return t.id, saved


def _swap(run, tid: str, a: int, b: int) -> None:
    run("UPDATE entries SET seq = -1 WHERE tenant_id = ? AND seq = ?", (tid, a))
    run("UPDATE entries SET seq = ? WHERE tenant_id = ? AND seq = ?", (a, tid, b))
    run("UPDATE entries SET seq = ? WHERE tenant_id = ? AND seq = -1", (b, tid))


def _change_payload(run, tid: str) -> None:
    (payload,) = run("SELECT payload FROM entries WHERE tenant_id = ? AND seq = 7", (tid,))[0]
    forged = bytes(payload).replace(b'"web"', b'"api"')
    assert forged != bytes(payload)
    run("UPDATE entries SET payload = ? WHERE tenant_id = ? AND seq = 7", (forged, tid))


def _insert_forged(run, tid: str) -> None:
    # Make room at seq 7 (two steps so no unique index trips mid-update),
    # then slip in a copy of entry 6 under a new id.
    run("UPDATE entries SET seq = -(seq + 1) WHERE tenant_id = ? AND seq >= 7", (tid,))
    run("UPDATE entries SET seq = -seq WHERE tenant_id = ? AND seq < 0", (tid,))
    cols = (
        "tenant_id seq event_id recorded_at action category severity security actor_hash "
        "actor_type target_type target_id outcome occurred_at ip payload salt "
        "payload_commitment leaf_hash search_text"
    ).split()
    (row,) = run(f"SELECT {', '.join(cols)} FROM entries WHERE tenant_id = ? AND seq = 6", (tid,))
    row = list(row)
    row[1] = 7
    row[2] = "forged-event"
    run(f"INSERT INTO entries ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", row)


def _truncate(run, tid: str) -> None:
    # A careful attacker: drop the newest rows, the checkpoint that covers
    # them, and rewrite the tree state to look consistent.
    leaves = [
        bytes(h)
        for (h,) in run(
            "SELECT leaf_hash FROM entries WHERE tenant_id = ? AND seq < 15 ORDER BY seq", (tid,)
        )
    ]
    tree = CompactRange()
    for h in leaves:
        tree.append(h)
    run("DELETE FROM entries WHERE tenant_id = ? AND seq >= 15", (tid,))
    run("DELETE FROM checkpoints WHERE tenant_id = ? AND size > 15", (tid,))
    run(
        "UPDATE tree_state SET size = 15, frontier = ? WHERE tenant_id = ?",
        (tree.to_bytes(), tid),
    )


CASES = {
    "payload value changed": (_change_payload, 7),
    "header field changed": (
        lambda run, tid: run(
            "UPDATE entries SET action = 'ticket.deleted' WHERE tenant_id = ? AND seq = 12", (tid,)
        ),
        12,
    ),
    "row deleted": (
        lambda run, tid: run("DELETE FROM entries WHERE tenant_id = ? AND seq = 4", (tid,)),
        4,
    ),
    "two rows swapped": (lambda run, tid: _swap(run, tid, 3, 16), 3),
    "forged row inserted": (_insert_forged, 7),
    "actor hash rewritten": (
        lambda run, tid: run(
            "UPDATE entries SET actor_hash = ? WHERE tenant_id = ? AND seq = 0", ("0" * 64, tid)
        ),
        0,
    ),
}


def test_untouched_log_verifies(db_url, key_file, filled):
    """verify exits 0 on an untouched log, with and without --against."""
    tid, saved = filled
    code, report = run_verify(db_url, key_file, "--tenant", tid)
    assert code == 0 and report["ok"] and report["checked"] == 20
    code, report = run_verify(db_url, key_file, "--against", str(saved))
    assert code == 0 and report["tenant_id"] == tid


@pytest.mark.parametrize("case", list(CASES))
def test_tampering_is_detected_at_the_first_bad_seq(db_url, key_file, filled, case):
    """Each direct-SQL edit makes verify exit 1 and name the first bad seq."""
    tid, _ = filled
    edit, first_bad = CASES[case]
    with raw_db(db_url) as run:
        edit(run, tid)
    code, report = run_verify(db_url, key_file, "--tenant", tid)
    assert code == 1
    assert not report["ok"]
    assert report["first_bad_seq"] == first_bad


def test_truncation_is_caught_against_a_saved_checkpoint(db_url, key_file, filled):
    """Dropping the newest rows (and covering tracks in the database) is only
    visible against a checkpoint held elsewhere: --against names seq 15."""
    tid, saved = filled
    with raw_db(db_url) as run:
        _truncate(run, tid)
    code, report = run_verify(db_url, key_file, "--tenant", tid)
    assert code == 0, "without an outside checkpoint a consistent truncation looks intact"
    code, report = run_verify(db_url, key_file, "--tenant", tid, "--against", str(saved))
    assert code == 1 and report["first_bad_seq"] == 15 and report["missing"] == 5


def test_rehashed_tampering_is_caught_by_the_checkpoints(db_url, key_file, filled):
    """An attacker who also recomputes the leaf hash is caught by the signed roots."""
    from kimonaudit.core.ledger import leaf_of_row
    from kimonaudit.core.merkle import leaf_hash

    tid, _ = filled
    with kimonaudit.open(db_url, key_file=key_file) as lg:
        row = lg.get_entry(tid, 13)._replace(target_id="99999")
    with raw_db(db_url) as run:
        run(
            "UPDATE entries SET target_id = '99999', leaf_hash = ? "
            "WHERE tenant_id = ? AND seq = 13",
            (leaf_hash(leaf_of_row(row)), tid),
        )
    code, report = run_verify(db_url, key_file, "--tenant", tid)
    assert code == 1
    assert report["first_bad_seq"] == 10  # the stretch after the last good checkpoint


def test_verify_rejects_a_checkpoint_file_that_is_not_signed(db_url, key_file, filled, tmp_path):
    """A forged or garbled --against file is an error, not a pass."""
    tid, saved = filled
    bad = tmp_path / "bad.txt"
    bad.write_text(saved.read_text().replace("\n20\n", "\n21\n"))
    env = {**os.environ, "KIMONAUDIT_DATABASE_URL": db_url, "KIMONAUDIT_SIGNING_KEY_FILE": key_file}
    proc = subprocess.run(
        [sys.executable, "-m", "kimonaudit", "verify", "--tenant", tid, "--against", str(bad)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr and "error:" in proc.stderr
    assert Path(saved).exists()


def test_parallel_verify_matches_the_single_process_scan(db_url, key_file, filled, monkeypatch):
    """Worker processes scanning small chunks find the same first bad seq and counts."""
    from kimonaudit import verifier

    tid, _ = filled
    with raw_db(db_url) as run:
        run("DELETE FROM entries WHERE tenant_id = ? AND seq = 9", (tid,))
        run("UPDATE entries SET outcome = 'failure' WHERE tenant_id = ? AND seq = 13", (tid,))
    with kimonaudit.open(db_url, key_file=key_file) as lg:
        single = lg.verify(tid)
        monkeypatch.setattr(verifier, "PARALLEL_FROM", 0)
        monkeypatch.setattr(verifier, "CHUNK", 3)
        parallel = lg.verify(tid)
    assert not single.ok and single.first_bad_seq == 9
    key = lambda p: (p.seq, p.kind)  # noqa: E731 - problems arrive in chunk order
    assert sorted(parallel.problems, key=key) == sorted(single.problems, key=key)
    assert replace(parallel, problems=()) == replace(single, problems=())
