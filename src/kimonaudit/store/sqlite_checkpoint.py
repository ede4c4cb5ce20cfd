"""A thread that copies a SQLite WAL into its database file.

Used for the ledger (store/sqlite.py) and for the index file in the indexer
process (store/sqlite_index.py): whichever connection commits would
otherwise do that copying, and its fsync, inside its own commit once the
WAL passes `wal_autocheckpoint` pages, and everyone waiting on that commit
would wait for it too.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` on `conn` every `interval()`
    seconds until closed. PASSIVE never waits for readers or the writer, and
    the sqlite3 module lets go of the GIL while it copies. `interval` is
    asked before each wait, so a setting read at run time takes effect."""

    def __init__(self, conn: sqlite3.Connection, interval: Callable[[], float]) -> None:
        self._conn = conn
        self._interval = interval
        self._stop = threading.Event()
        self.passes = 0  # checkpoints that copied frames
        self._thread = threading.Thread(target=self._run, name="kimonaudit-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        copied = 0
        while not self._stop.wait(self._interval()):
            try:
                r = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.Error as exc:  # busy or damaged: the writer's own checkpoint remains
                log.debug("checkpoint: %s", exc)
                continue
            # (busy, frames in the WAL, frames copied so far): the WAL restarts
            # at 0 after a checkpoint that reached its end.
            if r is not None and r[2] > 0 and r[2] != copied:
                self.passes += 1
            copied = r[2] if r is not None else 0

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._conn.close()
