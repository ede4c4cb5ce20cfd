""" "Verify now": a full verification of one tenant's log in a background
thread, with progress the verification page polls (by meta refresh, so it
works without JavaScript).

At most one run per tenant at a time, and at most `max_running` in the
whole process; the newest result per tenant is kept in memory until the
next run replaces it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from kimonaudit.errors import AuditLogError
from kimonaudit.results import VerifyReport
from kimonaudit.service import AuditLog

log = logging.getLogger("kimonaudit.console")


@dataclass
class VerifyRun:
    tenant_id: str
    started_by: str
    started: float = field(default_factory=time.time)
    checked: int = 0
    expected: int = 0
    finished: float | None = None
    report: VerifyReport | None = None
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.finished is None

    @property
    def percent(self) -> int:
        if not self.running:
            return 100
        return min(99, self.checked * 100 // self.expected) if self.expected else 0


class VerifyRuns:
    def __init__(self, audit: AuditLog, max_running: int = 2) -> None:
        self._log = audit
        self._max = max_running
        self._runs: dict[str, VerifyRun] = {}
        self._lock = threading.Lock()

    def get(self, tenant_id: str) -> VerifyRun | None:
        with self._lock:
            return self._runs.get(tenant_id)

    def start(self, tenant_id: str, started_by: str) -> VerifyRun:
        """The tenant's run: the one in progress, or a new one. Raises
        AuditLogError when the process is already verifying enough logs."""
        with self._lock:
            current = self._runs.get(tenant_id)
            if current is not None and current.running:
                return current
            if sum(r.running for r in self._runs.values()) >= self._max:
                raise AuditLogError("other verifications are running; try again in a minute")
            run = VerifyRun(tenant_id, started_by)
            run.expected = self._log.store.tree_state(tenant_id).size
            self._runs[tenant_id] = run
        threading.Thread(
            target=self._work, args=(run,), name=f"kimonaudit-verify-{tenant_id}", daemon=True
        ).start()
        return run

    def _work(self, run: VerifyRun) -> None:
        def progress(done: int, expected: int) -> None:
            run.checked, run.expected = done, expected

        try:
            run.report = self._log.verify(run.tenant_id, progress=progress)
            run.checked = run.report.checked
        except AuditLogError as exc:
            run.error = exc.message
        except Exception as exc:
            log.exception("verification of tenant %s failed", run.tenant_id)
            run.error = f"verification failed: {type(exc).__name__}"
        finally:
            run.finished = time.time()
