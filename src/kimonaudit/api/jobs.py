"""Background jobs that run inside `kimonaudit serve`.

A job is anything with `start()` and `stop()`; create_app starts them when
the server starts and stops them, in reverse order, when it stops. Delivery
and retention jobs join the list the same way.

The checkpointer cuts a checkpoint for each tenant with new entries at most
once per `interval` while entries arrive. Tenants written through this
server are marked as they are written; a full scan every `rescan_interval`
(and at start) catches entries written by other processes.
`?wait=checkpoint` requests wait on it through `wait_for`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from kimonaudit.errors import AuditLogError, StoreError
from kimonaudit.results import SignedCheckpoint
from kimonaudit.service import AuditLog

log = logging.getLogger("kimonaudit.jobs")


class Job(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


_Waiter = tuple[int, asyncio.AbstractEventLoop, "asyncio.Future[SignedCheckpoint]"]


class Checkpointer:
    def __init__(
        self,
        audit: AuditLog,
        interval: float = 1.0,
        rescan_interval: float = 60.0,
        on_cut: Callable[[], None] | None = None,
    ) -> None:
        self._log = audit
        self._on_cut = on_cut
        self.interval = interval
        self.rescan_interval = rescan_interval
        self._lock = threading.Lock()
        self._dirty: dict[str, float] = {}  # tenant -> monotonic time first marked
        self._latest: dict[str, SignedCheckpoint] = {}
        self._waiters: dict[str, list[_Waiter]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.cuts = 0
        self.last_cut: float | None = None  # monotonic
        self.errors = 0

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="kimonaudit-checkpointer", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            waiters = [w for ws in self._waiters.values() for w in ws]
            self._waiters.clear()
        for _, loop, fut in waiters:
            _settle(loop, fut, StoreError("the server is shutting down"))

    # -- used by requests --------------------------------------------------
    def mark(self, tenant_id: str) -> None:
        """Entries were just appended to this tenant."""
        with self._lock:
            self._dirty.setdefault(tenant_id, time.monotonic())

    async def wait_for(self, tenant_id: str, size: int, timeout: float) -> SignedCheckpoint:
        """The first checkpoint of `tenant_id` covering `size` entries;
        TimeoutError after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[SignedCheckpoint] = loop.create_future()
        waiter: _Waiter = (size, loop, fut)
        with self._lock:
            cp = self._latest.get(tenant_id)
            if cp is not None and cp.size >= size:
                return cp
            self._waiters.setdefault(tenant_id, []).append(waiter)
            self._dirty.setdefault(tenant_id, time.monotonic())
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            with self._lock:
                ws = self._waiters.get(tenant_id)
                if ws is not None and waiter in ws:
                    ws.remove(waiter)

    def pending_seconds(self) -> float:
        """How long the oldest entry not yet under a checkpoint has waited."""
        with self._lock:
            oldest = min(self._dirty.values(), default=None)
        return 0.0 if oldest is None else time.monotonic() - oldest

    def age_seconds(self) -> float:
        """Seconds since this server last cut a checkpoint (0 before the first)."""
        return 0.0 if self.last_cut is None else time.monotonic() - self.last_cut

    # -- the thread --------------------------------------------------------
    def _run(self) -> None:
        next_scan = 0.0
        while not self._stop.is_set():
            started = time.monotonic()
            if started >= next_scan:
                self._scan()
                next_scan = started + self.rescan_interval
            with self._lock:
                tenants = list(self._dirty)
                self._dirty.clear()
            for tid in tenants:
                self._cut(tid)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _scan(self) -> None:
        try:
            for t in self._log.list_tenants():
                latest = self._log.latest_checkpoint(t.id)
                if latest is None or self._log.store.tree_state(t.id).size > latest.size:
                    self.mark(t.id)
                elif latest is not None:
                    self._publish(t.id, latest)
        except AuditLogError as exc:
            self.errors += 1
            log.error("checkpoint scan failed: %s", exc.message)

    def _cut(self, tenant_id: str) -> None:
        try:
            before = self._latest.get(tenant_id)
            cp = self._log.checkpoint(tenant_id)
        except AuditLogError as exc:
            self.errors += 1
            log.error("checkpoint of tenant %s failed: %s", tenant_id, exc.message)
            self._fail_waiters(tenant_id, exc)
            return
        except Exception as exc:
            self.errors += 1
            log.exception("checkpoint of tenant %s failed", tenant_id)
            self._fail_waiters(tenant_id, StoreError(f"checkpoint failed: {type(exc).__name__}"))
            return
        if before is None or cp.size != before.size:
            self.cuts += 1
            self.last_cut = time.monotonic()
            if self._on_cut is not None:
                self._on_cut()
        self._publish(tenant_id, cp)

    def _publish(self, tenant_id: str, cp: SignedCheckpoint) -> None:
        with self._lock:
            self._latest[tenant_id] = cp
            ws = self._waiters.get(tenant_id, [])
            ready = [w for w in ws if w[0] <= cp.size]
            self._waiters[tenant_id] = [w for w in ws if w[0] > cp.size]
            if self._waiters[tenant_id]:
                # Entries arrived after this cut; the next tick covers them.
                self._dirty.setdefault(tenant_id, time.monotonic())
        for _, loop, fut in ready:
            _settle(loop, fut, cp)

    def _fail_waiters(self, tenant_id: str, exc: BaseException) -> None:
        with self._lock:
            ws = self._waiters.pop(tenant_id, [])
        for _, loop, fut in ws:
            _settle(loop, fut, exc)


def _settle(
    loop: asyncio.AbstractEventLoop,
    fut: asyncio.Future[SignedCheckpoint],
    value: SignedCheckpoint | BaseException,
) -> None:
    def apply() -> None:
        if fut.done():
            return
        if isinstance(value, BaseException):
            fut.set_exception(value)
        else:
            fut.set_result(value)

    # A closed loop raises RuntimeError: nobody is waiting any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(apply)
