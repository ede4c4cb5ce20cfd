"""The search indexer as a child process: a fresh interpreter started with
``python -m kimonaudit.store.indexer_child``.

Not multiprocessing's "spawn": that re-imports the parent's main module in
the child, so a script that calls `kimonaudit.open()` at top level without
an ``if __name__ == "__main__"`` guard would fail. A plain subprocess runs
only this module. The child stops when its stdin closes: the parent closes
it on `close()`, and the kernel closes it if the parent dies, so a child is
never left behind.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_CONFIG_ENV = "KIMONAUDIT_INDEXER_CONFIG"
# Seconds between the child's cycle collections (see collect_on_a_clock).
COLLECT_EVERY = 10.0
#: After a pass that found fewer than INDEX_SMALL entries, both backends'
#: indexer processes wait until INDEX_SMALL entries are waiting or
#: INDEX_LINGER has passed (looking every INDEX_POLL), so that a trickle of
#: appends is indexed in batches. Each commit rewrites every B-tree and
#: FTS5 page (on PostgreSQL every GIN and B-tree page) it touches, and on
#: one disk the ledger's fsyncs wait behind that writeback: on SQLite,
#: polled every 10 ms, 1,500 single events/s came in batches of about
#: fifteen and the child wrote 43 KB to disk per entry (p99 of those
#: appends 12-14 ms); after a fixed 0.1 s, 7 KB and p99 8-11 ms; with
#: 0.5 s, paced p99 over HTTP 8.6-13.6 ms against 12.3-14.8 ms at 0.1 s in
#: three alternated pairs (2026-12-08). Waiting for INDEX_SMALL entries
#: rather than a fixed time keeps the lag at higher rates where it was
#: (10,000 events/s fill a batch in 0.1 s), and a busy ledger never waits.
INDEX_SMALL = 1_000
INDEX_LINGER = 0.5
INDEX_POLL = 0.05


def linger(stop: threading.Event, waiting: Callable[[], int]) -> None:
    """Return once `waiting()` entries reach INDEX_SMALL, INDEX_LINGER has
    passed, or `stop` is set."""
    deadline = time.monotonic() + INDEX_LINGER
    while not stop.wait(INDEX_POLL):
        if time.monotonic() >= deadline or waiting() >= INDEX_SMALL:
            return


class ChildIndexer:
    """Starts the child for one backend and stops it on close."""

    def __init__(self, backend: str, config: dict[str, Any]) -> None:
        env = dict(os.environ)
        # The child imports kimonaudit the way this process did, installed or not.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        # The environment, not argv: a database URL may hold a password, and
        # any local user can read another process's command line.
        env[_CONFIG_ENV] = json.dumps(config)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "kimonaudit.store.indexer_child", backend],
            stdin=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        self.error: BaseException | None = None

    def notify(self) -> None:
        pass  # the child polls (sqlite_index.run_process, postgres_index.run_process)

    def alive(self) -> bool:
        return self._proc.poll() is None

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)


def collect_on_a_clock(stop: threading.Event, every: float = COLLECT_EVERY) -> threading.Thread:
    """Turn the automatic cycle collector off and run a full collection every
    `every` seconds until `stop` is set.

    The indexer's loop leaves no reference cycles behind (a collection after
    hours of indexing finds nothing), yet its batches of 20,000 rows made a
    young collection run every 700 new tuples, each rescanning the rows
    still held: 4-8% of the child's CPU (docs/scaling.md). On a clock, what
    a stray cycle (an exception's traceback, say) can hold is bounded by
    what `every` seconds make. Only for the child: it is our process."""
    gc.disable()

    def run() -> None:
        while not stop.wait(every):
            gc.collect()

    thread = threading.Thread(target=run, name="kimonaudit-collect", daemon=True)
    thread.start()
    return thread


def _main(argv: list[str]) -> None:
    backend = argv[0]
    config = json.loads(os.environ.pop(_CONFIG_ENV))
    stop = threading.Event()

    def watch_parent() -> None:
        sys.stdin.buffer.read()  # returns at EOF: the parent closed it or died
        stop.set()

    threading.Thread(target=watch_parent, daemon=True).start()
    collect_on_a_clock(stop)
    if backend == "sqlite":
        from kimonaudit.store.sqlite_index import run_process

        run_process(config["ledger"], config["index"], stop)
    elif backend == "postgres":
        from kimonaudit.store.postgres_index import run_process as run_pg

        run_pg(config["url"], config["kwargs"], stop)
    else:
        raise SystemExit(f"unknown backend {backend!r}")


if __name__ == "__main__":
    _main(sys.argv[1:])
