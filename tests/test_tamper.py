"""The tamper matrix: direct SQL edits to stored rows, on both stores, and
`kimonaudit verify` (the real command) must exit 1 and report exactly what
was changed (which entries are tampered, inserted, reordered or missing,
which checkpoints no longer match and why) and nothing else; the untouched
log exits 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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


def matrix_log(url: str, key_file: str, clock) -> tuple[str, str]:
    """The matrix's log: 20 entries, checkpoints at 10 and 20; returns the
    tenant id and the newest checkpoint's note."""
    with kimonaudit.open(url, key_file=key_file, clock=clock) as lg:
        t = lg.create_tenant("acme")
        lg.append(t.id, [event(i) for i in range(10)])
        lg.checkpoint(t.id)
        clock.advance(minutes=5)
        lg.append(t.id, [event(i) for i in range(10, 20)])
        return t.id, lg.checkpoint(t.id).note


@pytest.fixture
def filled(db_url, key_file, clock, tmp_path):
    """20 entries, checkpoints at 10 and 20, the newest saved to a file."""
    tid, note = matrix_log(db_url, key_file, clock)
    saved = tmp_path / "checkpoint.txt"
    saved.write_text(note)
    return tid, saved


class Tamper:
    """Every direct-SQL edit these tests make, in one place: the only code
    that knows how the store lays out its entry rows. An attacker with
    database access, not the application, runs these statements."""

    TABLE = "entries"
    KEY = "tenant_id = ? AND seq = ?"

    def __init__(self, run, tid: str) -> None:
        self.run, self.tid = run, tid

    def column(self, seq: int, name: str):
        (value,) = self.run(f"SELECT {name} FROM {self.TABLE} WHERE {self.KEY}", (self.tid, seq))[0]
        return value

    def set(self, at: int, /, **columns) -> None:
        sets = ", ".join(f"{k} = ?" for k in columns)
        self.run(
            f"UPDATE {self.TABLE} SET {sets} WHERE {self.KEY}", (*columns.values(), self.tid, at)
        )

    def other(self, seq: int, name: str, choice: str, fallback: str) -> str:
        """`choice`, or `fallback` when the row already holds `choice`: the
        demo's calendar follows today's date, so what a given seq holds
        varies from day to day, and an edit must really change it."""
        return fallback if self.column(seq, name) == choice else choice

    def delete(self, seq: int) -> None:
        self.run(f"DELETE FROM {self.TABLE} WHERE {self.KEY}", (self.tid, seq))

    def delete_from(self, seq: int) -> None:
        self.run(f"DELETE FROM {self.TABLE} WHERE tenant_id = ? AND seq >= ?", (self.tid, seq))

    def swap(self, a: int, b: int) -> None:
        self.set(a, seq=-1)
        self.set(b, seq=a)
        self.set(-1, seq=b)

    def shift_up(self, seq: int) -> None:
        """Renumber seq >= `seq` one up (two steps so no unique index trips)."""
        t, tid = self.TABLE, self.tid
        self.run(f"UPDATE {t} SET seq = -(seq + 1) WHERE tenant_id = ? AND seq >= ?", (tid, seq))
        self.run(f"UPDATE {t} SET seq = -seq WHERE tenant_id = ? AND seq < 0", (tid,))

    def insert_copy(self, src: int, seq: int, event_id: str) -> None:
        """A copy of entry `src` under a new event id, slipped in at `seq`."""
        cols = (
            "tenant_id seq event_id recorded_at action category severity security actor_hash "
            "actor_type target_type target_id outcome occurred_at ip payload salt "
            "payload_commitment leaf_hash"
        ).split()
        try:  # a store that keeps the full-text document beside the row
            self.column(src, "search_text")
            cols.append("search_text")
        except Exception:
            pass
        (row,) = self.run(
            f"SELECT {', '.join(cols)} FROM {self.TABLE} WHERE {self.KEY}", (self.tid, src)
        )
        row = list(row)
        row[1], row[2] = seq, event_id
        marks = ", ".join("?" * len(cols))
        self.run(f"INSERT INTO {self.TABLE} ({', '.join(cols)}) VALUES ({marks})", row)

    def leaf_hashes(self, below: int) -> list[bytes]:
        rows = self.run(
            f"SELECT leaf_hash FROM {self.TABLE} WHERE tenant_id = ? AND seq < ? ORDER BY seq",
            (self.tid, below),
        )
        return [bytes(h) for (h,) in rows]

    def drop_checkpoints_above(self, size: int) -> None:
        self.run("DELETE FROM checkpoints WHERE tenant_id = ? AND size > ?", (self.tid, size))

    def set_tree_state(self, tree: CompactRange) -> None:
        self.run(
            "UPDATE tree_state SET size = ?, frontier = ? WHERE tenant_id = ?",
            (tree.size, tree.to_bytes(), self.tid),
        )

    def rehash(self, lg, seq: int, **columns) -> None:
        """Edit `columns` and recompute the row's leaf hash, as an attacker
        who knows the leaf format would."""
        from kimonaudit.core.ledger import leaf_of_row
        from kimonaudit.core.merkle import leaf_hash

        row = lg.get_entry(self.tid, seq)._replace(**columns)
        self.set(seq, **columns, leaf_hash=leaf_hash(leaf_of_row(row)))


def _change_payload(t: Tamper) -> None:
    payload = bytes(t.column(7, "payload"))
    forged = payload.replace(b'"web"', b'"api"')
    assert forged != payload
    t.set(7, payload=forged)


def _insert_forged(t: Tamper) -> None:
    t.shift_up(7)
    t.insert_copy(6, 7, "forged-event")


def _truncate(t: Tamper) -> None:
    # A careful attacker: drop the newest rows, the checkpoint that covers
    # them, and rewrite the tree state to look consistent.
    tree = CompactRange()
    for h in t.leaf_hashes(15):
        tree.append(h)
    t.delete_from(15)
    t.drop_checkpoints_above(15)
    t.set_tree_state(tree)


def report_of(edited: dict) -> dict:
    """The parts of a JSON report that name what was found."""
    return {
        "ok": edited["ok"],
        "first_bad_seq": edited["first_bad_seq"],
        "counts": {k: edited[k] for k in ("tampered", "inserted", "reordered", "missing")},
        "entries": {k: v["ranges"] for k, v in edited["entries"].items() if v["ranges"]},
        "checkpoints_failed": [c["size"] for c in edited["checkpoints_failed"]],
        "problems": [(p["seq"], p["kind"], p["message"]) for p in edited["problems"]],
    }


def expected(first_bad, problems, checkpoints_failed=(), **counts) -> dict:
    entries = {k: v for k, v in counts.items() if v}
    return {
        "ok": False,
        "first_bad_seq": first_bad,
        "counts": {
            k: sum(hi - lo + 1 for lo, hi in counts.get(k, []))
            for k in ("tampered", "inserted", "reordered", "missing")
        },
        "entries": entries,
        "checkpoints_failed": list(checkpoints_failed),
        "problems": problems,
    }


FIELDS_CHANGED = "stored fields do not match its leaf hash"

# name: (edit, the exact report). The fixture has 20 entries and signed
# checkpoints at sizes 10 and 20.
CASES = {
    "payload value changed": (
        _change_payload,
        expected(
            7,
            [(7, "tampered", "entry 7: payload does not match its commitment")],
            tampered=[[7, 7]],
        ),
    ),
    "header field changed": (
        lambda t: t.set(12, action="ticket.deleted"),
        expected(12, [(12, "tampered", f"entry 12: {FIELDS_CHANGED}")], tampered=[[12, 12]]),
    ),
    "actor hash rewritten": (
        lambda t: t.set(0, actor_hash="0" * 64),
        expected(0, [(0, "tampered", f"entry 0: {FIELDS_CHANGED}")], tampered=[[0, 0]]),
    ),
    "stored leaf hash rewritten": (
        lambda t: t.set(5, leaf_hash=b"\x07" * 32),
        expected(
            5,
            [
                (
                    5,
                    "tampered",
                    "entry 5: its stored leaf hash was rewritten "
                    "(its fields match the signed checkpoint)",
                )
            ],
            tampered=[[5, 5]],
        ),
    ),
    "row deleted": (
        lambda t: t.delete(4),
        expected(
            4,
            [
                (4, "missing", "entry 4 is missing"),
                (
                    None,
                    "unchecked",
                    "2 checkpoints (sizes 10 and 20) could not be checked: entry 4 is missing",
                ),
            ],
            missing=[[4, 4]],
        ),
    ),
    "two rows swapped": (
        lambda t: t.swap(3, 16),
        expected(
            3,
            [
                (3, "reordered", "seq 3 holds the entry signed at seq 16 (reordered)"),
                (16, "reordered", "seq 16 holds the entry signed at seq 3 (reordered)"),
            ],
            reordered=[[3, 3], [16, 16]],
        ),
    ),
    "forged row inserted": (
        _insert_forged,
        expected(
            7,
            [
                (7, "inserted", "seq 7 holds an entry that was never signed there (inserted)"),
                (8, "reordered", "seq 8..20 hold the entries signed at seq 7..19 (renumbered)"),
            ],
            inserted=[[7, 7]],
            reordered=[[8, 20]],
        ),
    ),
    "copy of a row appended": (
        lambda t: t.insert_copy(19, 20, "copy-event"),
        expected(
            20,
            [(20, "inserted", "seq 20 lies beyond the signed tree size 20 (inserted)")],
            inserted=[[20, 20]],
        ),
    ),
}


def test_untouched_log_verifies(db_url, key_file, filled):
    """verify exits 0 on an untouched log, with and without --against."""
    tid, saved = filled
    code, report = run_verify(db_url, key_file, "--tenant", tid)
    assert code == 0 and report["ok"] and report["checked"] == 20
    assert report_of(report)["problems"] == [] and report["checkpoints_failed"] == []
    code, report = run_verify(db_url, key_file, "--against", str(saved))
    assert code == 0 and report["tenant_id"] == tid


@pytest.mark.parametrize("case", list(CASES))
def test_tampering_is_reported_exactly(db_url, key_file, filled, case):
    """Each direct-SQL edit makes verify exit 1 and name exactly the entries
    changed, how, and the first bad seq; nothing untouched is blamed."""
    tid, _ = filled
    edit, want = CASES[case]
    with raw_db(db_url) as run:
        edit(Tamper(run, tid))
    code, report = run_verify(db_url, key_file, "--tenant", tid)
    assert code == 1
    assert report_of(report) == want


def test_truncation_is_caught_against_a_saved_checkpoint(db_url, key_file, filled):
    """Dropping the newest rows (and covering tracks in the database) is only
    visible against a checkpoint held elsewhere: --against names seq 15."""
    tid, saved = filled
    with raw_db(db_url) as run:
        _truncate(Tamper(run, tid))
    code, report = run_verify(db_url, key_file, "--tenant", tid)
    assert code == 0, "without an outside checkpoint a consistent truncation looks intact"
    code, report = run_verify(db_url, key_file, "--tenant", tid, "--against", str(saved))
    assert code == 1
    assert report_of(report) == expected(
        15,
        [
            (15, "missing", "entries 15..19 are missing (the log was truncated)"),
            (None, "unchecked", "1 checkpoint (size 20) could not be checked: entry 15 is missing"),
        ],
        missing=[[15, 19]],
    )


def test_rehashed_tampering_is_caught_by_the_checkpoints(db_url, key_file, filled):
    """An attacker who also recomputes the leaf hash is caught by the signed
    roots: the report names the stretch between the last checkpoint that
    matches and the first that does not, and blames no row."""
    tid, _ = filled
    with kimonaudit.open(db_url, key_file=key_file) as lg, raw_db(db_url) as run:
        Tamper(run, tid).rehash(lg, 13, target_id="99999")
    code, report = run_verify(db_url, key_file, "--tenant", tid)
    assert code == 1
    assert report_of(report) == expected(
        10,
        [(10, "checkpoint", f"checkpoint 20: {_stretch(10, 20)}")],
        checkpoints_failed=[20],
    )


def _stretch(lo: int, size: int) -> str:
    from kimonaudit.verifier import stretch_reason

    return stretch_reason(lo, size)


def test_the_stretch_wording():
    """One entry or several between two checkpoints, in plain words."""
    from kimonaudit.verifier import stretch_reason

    assert stretch_reason(10, 20) == (
        "entries 10..19 (signed after checkpoint 10, which matches) no longer give its root: "
        "one or more of them were altered and their leaf hashes recomputed"
    )
    assert stretch_reason(500, 501) == (
        "entry 500 (signed after checkpoint 500, which matches) no longer gives its root: "
        "it was altered and its leaf hash recomputed"
    )


@pytest.fixture
def demo_log(db_url, key_file):
    """A demo history (3 tenants, a checkpoint per simulated day); its
    first tenant has well over 1,000 entries."""
    from kimonaudit.demo import run_demo

    summary = run_demo(db_url, key_file=key_file, events=2_000, seed=7)
    tid = summary.tenants[0].id
    with kimonaudit.open(db_url, key_file=key_file) as lg:
        sizes = sorted(c.size for c in lg.store.list_checkpoints(tid))
    assert summary.tenants[0].events > 1_000 and len(sizes) > 5
    return tid, sizes


def test_one_row_edit_in_a_demo_log_names_that_row_only(db_url, key_file, demo_log):
    """The issue's case: `action` changed on seq 500 of a demo log is one
    tampered entry, and every checkpoint still matches (they confirm it)."""
    tid, _ = demo_log
    with raw_db(db_url) as run:
        t = Tamper(run, tid)
        t.set(500, action=t.other(500, "action", "ticket.deleted", "ticket.viewed"))
    code, report = run_verify(db_url, key_file, "--tenant", tid)
    assert code == 1
    assert report_of(report) == expected(
        500, [(500, "tampered", f"entry 500: {FIELDS_CHANGED}")], tampered=[[500, 500]]
    )


def test_two_row_edit_in_a_demo_log_names_both(db_url, key_file, demo_log):
    """Two edited rows far apart: exactly those two."""
    tid, _ = demo_log
    with raw_db(db_url) as run:
        t = Tamper(run, tid)
        t.set(500, action=t.other(500, "action", "ticket.deleted", "ticket.viewed"))
        t.set(777, outcome=t.other(777, "outcome", "failure", "success"))
    code, report = run_verify(db_url, key_file, "--tenant", tid)
    assert code == 1
    assert report_of(report) == expected(
        500,
        [
            (500, "tampered", f"entry 500: {FIELDS_CHANGED}"),
            (777, "tampered", f"entry 777: {FIELDS_CHANGED}"),
        ],
        tampered=[[500, 500], [777, 777]],
    )


def test_rehashed_edit_in_a_demo_log_names_the_stretch(db_url, key_file, demo_log):
    """An edit with its leaf hash recomputed at seq 500: the checkpoint just
    after it fails and names the stretch since the one before it; later
    checkpoints are listed as covering that stretch, not as new findings."""
    tid, sizes = demo_log
    with kimonaudit.open(db_url, key_file=key_file) as lg, raw_db(db_url) as run:
        t = Tamper(run, tid)
        t.rehash(lg, 500, action=t.other(500, "action", "ticket.deleted", "ticket.viewed"))
    lo = max(s for s in sizes if s <= 500)
    first = min(s for s in sizes if s > 500)
    later = [s for s in sizes if s > first]
    code, report = run_verify(db_url, key_file, "--tenant", tid)
    assert code == 1
    n = len(later)
    sizes_text = (
        f"1 later checkpoint (size {later[0]})"
        if n == 1
        else f"{n} later checkpoints (sizes {later[0]} and {later[1]})"
        if n == 2
        else f"{n} later checkpoints (sizes {later[0]} to {later[-1]})"
    )
    assert report_of(report) == expected(
        lo,
        [
            (lo, "checkpoint", f"checkpoint {first}: {_stretch(lo, first)}"),
            (
                None,
                "checkpoint",
                f"{sizes_text} also differ, as they must: they cover "
                + (f"entry {lo}" if first - lo == 1 else f"entries {lo}..{first - 1}"),
            ),
        ],
        checkpoints_failed=[first, *later][:100],
    )
    assert report["more_checkpoints_failed"] == max(0, len(later) + 1 - 100)
    assert report["tampered"] == 0 and report["checked"] == sizes[-1]


def test_long_reports_say_how_much_was_cut(db_url, key_file, clock, tmp_path):
    """Every other one of 300 rows edited: JSON lists 100 problems and 100
    ranges and says how many more; the text lists 20 and says so too."""
    with kimonaudit.open(db_url, key_file=key_file, clock=clock) as lg:
        tid = lg.create_tenant("acme").id
        lg.append(tid, [event(i) for i in range(300)])
        lg.checkpoint(tid)
    with raw_db(db_url) as run:
        t = Tamper(run, tid)
        for seq in range(0, 300, 2):
            t.set(seq, outcome="failure")
    code, report = run_verify(db_url, key_file, "--tenant", tid)
    assert code == 1 and report["tampered"] == 150
    assert len(report["problems"]) == 100 and report["more_problems"] == 50
    assert report["entries"]["tampered"]["ranges"][:2] == [[0, 0], [2, 2]]
    assert len(report["entries"]["tampered"]["ranges"]) == 100
    assert report["entries"]["tampered"]["more_ranges"] == 50
    env = {**os.environ, "KIMONAUDIT_DATABASE_URL": db_url, "KIMONAUDIT_SIGNING_KEY_FILE": key_file}
    proc = subprocess.run(
        [sys.executable, "-m", "kimonaudit", "verify", "--tenant", tid],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0] == f"FAILED {tid}: first bad seq 0; 150 tampered"
    assert lines[1].startswith("  tampered entries: 0, 2, 4, ")
    assert lines[1].endswith(" (and 50 more ranges)")
    assert lines[2] == "  checkpoints: 1 of 1 match"
    assert sum(1 for x in lines if x.startswith("  - ")) == 20
    assert lines[-1] == "  … and 130 more problems (--json lists 100)"


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
        t = Tamper(run, tid)
        t.delete(9)
        t.set(13, outcome="failure")
        t.swap(2, 17)
    with kimonaudit.open(db_url, key_file=key_file) as lg:
        single = lg.verify(tid)
        monkeypatch.setattr(verifier, "PARALLEL_FROM", 0)
        monkeypatch.setattr(verifier, "CHUNK", 3)
        parallel = lg.verify(tid)
    assert not single.ok and single.first_bad_seq == 2
    assert single.entries == {
        "tampered": ((13, 13),),
        "inserted": (),
        "reordered": ((2, 2), (17, 17)),
        "missing": ((9, 9),),
    }
    assert parallel == single
