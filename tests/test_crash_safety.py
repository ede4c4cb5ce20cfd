"""Crash safety: a writer killed with SIGKILL at random moments loses no
acknowledged entry, and the log verifies after every restart."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import kimonaudit
from tests.servers import child_env

CHILD = textwrap.dedent(
    """
    import base64, json, random, sys
    import kimonaudit
    from tests.helpers import event

    url, key_file, tid, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    rnd = random.Random(seed)
    log = kimonaudit.open(url, key_file=key_file)
    print("ready", flush=True)
    i = 0
    while True:
        batch = [event(i + k) for k in range(rnd.randint(1, 300))]
        i += len(batch)
        for r in log.append(tid, batch):
            sys.stdout.write(json.dumps([r.seq, base64.b64encode(r.leaf_hash).decode()]) + "\\n")
        sys.stdout.flush()
    """
)


@pytest.mark.slow
def test_sigkill_loses_no_acknowledged_entry(db_url, key_file, tmp_path):
    """12 rounds of SIGKILL mid-append: every printed receipt is stored with the same leaf hash."""
    with kimonaudit.open(db_url, key_file=key_file) as lg:
        tid = lg.create_tenant("crash").id
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    rnd = random.Random(1234)
    acked: dict[int, str] = {}
    env = child_env()
    for round_no in range(12):
        proc = subprocess.Popen(
            [sys.executable, str(script), db_url, key_file, tid, str(round_no)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
        time.sleep(rnd.uniform(0.05, 0.6))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        for line in out.splitlines():
            try:
                seq, lh = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line being written when the kill landed
            acked[seq] = lh
        with kimonaudit.open(db_url, key_file=key_file) as lg:
            size = lg.store.tree_state(tid).size
            assert size >= len(acked)
            stored = lg.store.leaf_hashes(tid, 0, size)
            import base64

            for seq, lh in acked.items():
                assert base64.b64encode(stored[seq]).decode() == lh, f"round {round_no} seq {seq}"
            lg.checkpoint(tid)
            report = lg.verify(tid)
            assert report.ok, report.problems
    assert len(acked) > 100  # the kills did land mid-stream, after real work
