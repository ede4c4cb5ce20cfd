"""The daily retention purge inside `kimonaudit serve` (issue 8).

A thread that runs `AuditLog.run_retention` shortly after the server
starts and then every `interval` seconds (a day by default). The purge
deletes in small transactions, so requests keep being served meanwhile.
"""

from __future__ import annotations

import logging
import threading

from kimonaudit.errors import AuditLogError
from kimonaudit.purge import RetentionReport
from kimonaudit.service import AuditLog

log = logging.getLogger("kimonaudit.retention")

DAY = 24 * 3600.0


class RetentionJob:
    def __init__(self, audit: AuditLog, interval: float = DAY, first_delay: float = 60.0) -> None:
        self._log = audit
        self.interval = interval
        self.first_delay = first_delay
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0
        self.errors = 0
        self.last: RetentionReport | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="kimonaudit-retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def _run(self) -> None:
        wait = self.first_delay
        while not self._stop.wait(wait):
            wait = self.interval
            try:
                self.last = self._log.run_retention()
                self.runs += 1
                if self.last.purged:
                    log.info("retention purged %d entries", self.last.purged)
            except AuditLogError as exc:
                self.errors += 1
                log.error("retention run failed: %s", exc.message)
            except Exception:
                self.errors += 1
                log.exception("retention run failed")
