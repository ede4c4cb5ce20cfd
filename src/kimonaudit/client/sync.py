"""AuditClient: record from any thread; a daemon thread delivers."""

from __future__ import annotations

import atexit
import functools
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

import httpx

from kimonaudit.client.base import (
    ClientClosed,
    ClientCore,
    ClientError,
    ClientStats,
    QueueFull,
    Settings,
    logger,
    prepare_event,
)
from kimonaudit.client.policy import (
    DEFAULT_MAX_BATCH_BYTES,
    Bisector,
    Outcome,
    RetryPolicy,
    classify_response,
    request_body,
)
from kimonaudit.client.queue import DeadLetter, Item

__all__ = ["AuditClient", "ClientClosed", "ClientError", "ClientStats", "QueueFull"]


class SyncDelivery:
    """Posts one batch until it settles, bisecting a refused batch. Used by
    the sender thread, and at exit by an asyncio client nobody closed."""

    def __init__(self, core: ClientCore, http: httpx.Client, stop: threading.Event) -> None:
        self.core = core
        self.http = http
        self.stop = stop
        self.deadline: float | None = None  # monotonic; set while closing

    def drain(self, partial: Callable[[], bool] = lambda: True) -> bool:
        """Deliver queued events until the queue is empty, or only a partial
        batch is left and `partial()` says not to send one yet (True); or
        until `stop` is set (False)."""
        while not self.stop.is_set():
            with self.core.lock:
                batch, full = self.core.next_batch()
                if not batch or not (full or partial()):
                    return True
            if not self.deliver(batch):
                return False
        return False

    def deliver(self, batch: list[Item]) -> bool:
        core = self.core
        parts = Bisector(batch)
        while (part := parts.current()) is not None:
            outcome = self._send(part)
            if outcome is None:
                return False
            with core.lock:
                if outcome.kind == "ok":
                    core.accepted(part)
                    parts.accepted()
                elif (culprit := parts.refused()) is not None:
                    core.refused(culprit, outcome)
        return True

    def _send(self, part: list[Item]) -> Outcome | None:
        core = self.core
        body = request_body(part)
        attempt = 0
        while True:
            try:
                r = self.http.post(core.settings.events_url, content=body, timeout=self._timeout())
                outcome = classify_response(r.status_code, r.headers, r.text)
            except httpx.HTTPError as exc:
                outcome = core.transport_error(exc)
            if outcome.kind != "retry":
                with core.lock:
                    core.settled()
                return outcome
            with core.lock:
                delay = core.retry_delay(outcome, attempt)
            attempt += 1
            if self.deadline is not None:
                delay = min(delay, max(0.0, self.deadline - time.monotonic()))
            if self.stop.wait(delay) or self._past_deadline():
                return None

    def _timeout(self) -> float:
        limit = self.core.settings.timeout
        if self.deadline is None:
            return limit
        return max(0.05, min(limit, self.deadline - time.monotonic()))

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


class AuditClient:
    """Thread-based client. `record()` never touches the network.

    url: the server's base URL (``http://127.0.0.1:8080``).
    spool_path: SQLite file that keeps undelivered events across restarts;
        None keeps them in memory (lost if the process dies).
    batch_size: events per request (1..1000); flush_interval: seconds an
        idle sender waits for a batch to fill before sending what it has.
    max_queue: refuse `record()` with QueueFull past this many undelivered
        events (default: 100,000 in memory, unlimited with a spool).
    validate: check events locally with the server's rules (InvalidEvent
        at the call site instead of a dead letter later).
    spool_fsync: fsync each record (survive power loss, not only crashes).
    close_timeout: how long `close()` (and exit) waits to deliver.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        spool_path: str | os.PathLike[str] | None = None,
        batch_size: int = 500,
        flush_interval: float = 0.5,
        *,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        max_queue: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        validate: bool = True,
        spool_fsync: bool = False,
        close_timeout: float = 5.0,
        verify: bool | str = True,
        close_at_exit: bool = True,
    ) -> None:
        self._settings = Settings.build(
            url, api_key, spool_path, batch_size, flush_interval, max_batch_bytes,
            max_queue, retry, timeout, validate, spool_fsync, close_timeout,
        )  # fmt: skip
        core = self._core = ClientCore(self._settings)
        self._cond = threading.Condition(core.lock)
        core.notify = self._cond.notify_all
        self._http = httpx.Client(headers=self._settings.headers(), verify=verify)
        self._stop = threading.Event()
        self._delivery = SyncDelivery(core, self._http, self._stop)
        self._closing = False
        self._closed = False
        self._flushers = 0
        self._thread = threading.Thread(target=self._run, name="kimonaudit-sender", daemon=True)
        self._thread.start()
        self._atexit: Any = None
        if close_at_exit:
            # A weak reference, so registering does not keep the client alive.
            self._atexit = functools.partial(_close_at_exit, weakref.ref(self))
            atexit.register(self._atexit)

    def __repr__(self) -> str:
        return f"AuditClient(url={self._settings.url!r}, spool_path={self._settings.spool_path!r})"

    # -- recording ---------------------------------------------------------
    def record(self, event: Mapping[str, Any]) -> str:
        """Queue one event; return its id. Raises InvalidEvent (when
        validating), QueueFull or ClientClosed; never waits on the network."""
        return self.record_many([event])[0]

    def record_many(self, events: Iterable[Mapping[str, Any]]) -> list[str]:
        """Queue several events in one spool transaction; all or none."""
        prepared = [prepare_event(e, self._settings.validate) for e in events]
        with self._cond:
            if self._closed:
                raise ClientClosed("the audit client is closed")
            self._core.enqueue(prepared)
        return [event_id for event_id, _ in prepared]

    # -- waiting -----------------------------------------------------------
    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event recorded before this call is delivered or
        dead-lettered. False if `timeout` seconds pass first."""
        end = None if timeout is None else time.monotonic() + timeout
        core = self._core
        with self._cond:
            mark = core.last_seq
            self._flushers += 1
            self._cond.notify_all()
            try:
                while core.done_seq < mark:
                    if not self._thread.is_alive():
                        return False
                    wait = 1.0 if end is None else min(1.0, end - time.monotonic())
                    if wait <= 0:
                        return False
                    self._cond.wait(wait)
                return True
            finally:
                self._flushers -= 1

    def close(self, timeout: float | None = None) -> None:
        """Stop recording, deliver what is queued for up to `timeout` seconds
        (default close_timeout), then release the spool. Undelivered events
        stay in the spool for the next start."""
        timeout = self._settings.close_timeout if timeout is None else timeout
        with self._cond:
            if self._closed:
                return
            self._closed = self._closing = True
            self._delivery.deadline = time.monotonic() + timeout
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stop.set()
            with self._cond:
                self._cond.notify_all()
            self._thread.join(1.0)
        if self._atexit is not None:
            atexit.unregister(self._atexit)
        left = self._core.pending
        if self._thread.is_alive():
            logger.warning("audit sender still busy at close; %d events stay queued", left)
            return
        self._http.close()
        self._core.queue.close()
        if left:
            where = (
                f"kept in the spool {self._settings.spool_path}"
                if self._settings.spool_path
                else "lost (no spool configured)"
            )
            logger.warning("audit client closed with %d undelivered events, %s", left, where)

    def __enter__(self) -> AuditClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- inspection ----------------------------------------------------------
    def stats(self) -> ClientStats:
        with self._cond:
            return self._core.stats()

    def dead_letters(self) -> list[DeadLetter]:
        """Events the server refused, with its status and message."""
        with self._cond:
            return self._core.queue.dead_letters()

    def requeue_dead_letters(self) -> int:
        """Put every dead letter back at the end of the queue (after fixing
        the server or its configuration); returns how many."""
        with self._cond:
            n = self._core.queue.requeue_dead_letters()
            if n:
                self._core.last_seq = self._core.queue.last_seq()
                self._core.pending += n
                self._cond.notify_all()
            return n

    # -- the sender thread -------------------------------------------------
    def _run(self) -> None:
        while (lingered := self._wait_for_work()) is not None:
            try:
                # A partial batch goes only once it has lingered, or when
                # someone waits on it (flush, close).
                self._delivery.drain(lambda: lingered or self._closing or self._flushers > 0)
            except Exception:
                # A spool or programming error must not kill delivery for good.
                logger.exception("audit sender failed; retrying in 1s")
                if self._stop.wait(1.0):
                    break
        with self._cond:
            self._cond.notify_all()

    def _wait_for_work(self) -> bool | None:
        """None: time to stop. Else whether a partial batch may be sent
        (False when a full batch is ready without lingering)."""
        core, s = self._core, self._settings
        with self._cond:
            while core.pending == 0 and not self._closing:
                self._cond.wait()
            if self._stop.is_set() or (self._closing and core.pending == 0):
                return None
            deadline = self._delivery.deadline
            if self._closing and deadline is not None and time.monotonic() >= deadline:
                return None
            linger_end = time.monotonic() + s.flush_interval
            while core.pending < s.batch_size and not (self._closing or self._flushers):
                left = linger_end - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return core.pending < s.batch_size


def _close_at_exit(ref: weakref.ReferenceType[AuditClient]) -> None:
    client = ref()
    if client is not None:
        client.close()
