"""AsyncAuditClient: the same client for asyncio, with a sender task on the
running loop instead of a thread. Use one loop per client."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import os
import threading
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import httpx

from kimonaudit.client.base import (
    ClientClosed,
    ClientCore,
    ClientStats,
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
from kimonaudit.client.sync import SyncDelivery


class AsyncAuditClient:
    """Asyncio client; same arguments and behaviour as `AuditClient`.

    `await record(event)` only writes to the spool or memory queue (a local
    operation of microseconds); the sender task, started on first use,
    does the network I/O. Close it with ``async with`` or ``await
    close()`` (in a lifespan handler, say). If the loop is gone at exit,
    an exit hook delivers what is left synchronously.
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
        self._verify = verify
        self._core = ClientCore(self._settings)
        self._core.notify = self._notify
        self._http = httpx.AsyncClient(headers=self._settings.headers(), verify=verify)
        self._wake = asyncio.Event()  # work for the sender
        self._progress = asyncio.Event()  # events left the queue
        self._stop = asyncio.Event()  # abandon retries (close deadline)
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._closing = False
        self._closed = False
        self._flushers = 0
        self._deadline: float | None = None
        self._atexit: Any = None
        if close_at_exit:
            # The hook holds the queue, not the client: a client dropped
            # without close() still has its events delivered at exit.
            self._atexit = functools.partial(_drain_at_exit, self._core, verify)
            atexit.register(self._atexit)

    def __repr__(self) -> str:
        s = self._settings
        return f"AsyncAuditClient(url={s.url!r}, spool_path={s.spool_path!r})"

    def _notify(self) -> None:
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(self._set_events)
        else:
            self._set_events()

    def _set_events(self) -> None:
        self._wake.set()
        self._progress.set()

    def _ensure_started(self) -> None:
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
            self._task = self._loop.create_task(self._run(), name="kimonaudit-sender")

    # -- recording ---------------------------------------------------------
    async def record(self, event: Mapping[str, Any]) -> str:
        """Queue one event; return its id. Never waits on the network."""
        return (await self.record_many([event]))[0]

    async def record_many(self, events: Iterable[Mapping[str, Any]]) -> list[str]:
        prepared = [prepare_event(e, self._settings.validate) for e in events]
        if self._closed:
            raise ClientClosed("the audit client is closed")
        self._ensure_started()
        with self._core.lock:
            self._core.enqueue(prepared)
        return [event_id for event_id, _ in prepared]

    # -- waiting -----------------------------------------------------------
    async def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event recorded before this call is delivered or
        dead-lettered. False if `timeout` seconds pass first."""
        core = self._core
        mark = core.last_seq
        if core.done_seq >= mark:
            return True
        if self._closed and (self._task is None or self._task.done()):
            return False
        self._ensure_started()
        end = None if timeout is None else time.monotonic() + timeout
        self._flushers += 1
        self._wake.set()
        try:
            while core.done_seq < mark:
                assert self._task is not None
                if self._task.done():
                    return False
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._progress.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._progress.wait(), left)
            return True
        finally:
            self._flushers -= 1

    async def close(self, timeout: float | None = None) -> None:
        """Stop recording, deliver for up to `timeout` seconds (default
        close_timeout), then release the spool and the HTTP client."""
        if self._closed:
            return
        timeout = self._settings.close_timeout if timeout is None else timeout
        self._closed = self._closing = True
        self._deadline = time.monotonic() + timeout
        if self._core.pending:
            self._ensure_started()
        task = self._task
        if task is not None:
            self._wake.set()
            done, _ = await asyncio.wait([task], timeout=timeout)
            if not done:
                self._stop.set()
                done, _ = await asyncio.wait([task], timeout=1.0)
            if not done:
                # Cancelling is safe: an event leaves the queue only after a
                # 2xx, and a resend of a delivered id gets its first receipt.
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._atexit is not None:
            atexit.unregister(self._atexit)
        await self._http.aclose()
        left = self._core.pending
        self._core.queue.close()
        if left:
            where = (
                f"kept in the spool {self._settings.spool_path}"
                if self._settings.spool_path
                else "lost (no spool configured)"
            )
            logger.warning("audit client closed with %d undelivered events, %s", left, where)

    async def __aenter__(self) -> AsyncAuditClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- inspection ----------------------------------------------------------
    def stats(self) -> ClientStats:
        with self._core.lock:
            return self._core.stats()

    async def dead_letters(self) -> list[DeadLetter]:
        with self._core.lock:
            return self._core.queue.dead_letters()

    async def requeue_dead_letters(self) -> int:
        core = self._core
        with core.lock:
            n = core.queue.requeue_dead_letters()
            if n:
                core.last_seq = core.queue.last_seq()
                core.pending += n
        if n:
            self._ensure_started()
            self._wake.set()
        return n

    # -- the sender task ---------------------------------------------------
    async def _run(self) -> None:
        while (lingered := await self._wait_for_work()) is not None:
            try:
                await self._drain(lingered)
            except Exception:
                logger.exception("audit sender failed; retrying in 1s")
                if await self._sleep(1.0):
                    break
        self._progress.set()

    async def _wait_for_work(self) -> bool | None:
        """None: time to stop. Else whether a partial batch may be sent."""
        core, s = self._core, self._settings
        while core.pending == 0 and not self._closing:
            self._wake.clear()
            await self._wake.wait()
        if self._stop.is_set() or (self._closing and core.pending == 0):
            return None
        if self._closing and self._deadline is not None and time.monotonic() >= self._deadline:
            return None
        end = time.monotonic() + s.flush_interval
        while core.pending < s.batch_size and not (self._closing or self._flushers):
            left = end - time.monotonic()
            if left <= 0:
                break
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)
        return core.pending < s.batch_size

    async def _drain(self, lingered: bool) -> None:
        core = self._core
        while not self._stop.is_set():
            with core.lock:
                batch, full = core.next_batch()
            if not batch:
                return
            if not (full or lingered or self._closing or self._flushers):
                return
            if not await self._deliver(batch):
                return

    async def _deliver(self, batch: list[Item]) -> bool:
        core = self._core
        parts = Bisector(batch)
        while (part := parts.current()) is not None:
            outcome = await self._send(part)
            if outcome is None:
                return False
            with core.lock:
                if outcome.kind == "ok":
                    core.accepted(part)
                    parts.accepted()
                elif (culprit := parts.refused()) is not None:
                    core.refused(culprit, outcome)
        return True

    async def _send(self, part: list[Item]) -> Outcome | None:
        core = self._core
        body = request_body(part)
        attempt = 0
        while True:
            try:
                r = await self._http.post(
                    core.settings.events_url, content=body, timeout=self._timeout()
                )
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
            if self._deadline is not None:
                delay = min(delay, max(0.0, self._deadline - time.monotonic()))
                if await self._sleep(delay) or time.monotonic() >= self._deadline:
                    return None
            elif await self._sleep(delay):
                return None

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, or return True early when told to stop."""
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            return False
        return True

    def _timeout(self) -> float:
        limit = self._settings.timeout
        if self._deadline is None:
            return limit
        return max(0.05, min(limit, self._deadline - time.monotonic()))


def _drain_at_exit(core: ClientCore, verify: bool | str) -> None:
    """At interpreter exit the loop is gone: deliver synchronously, bounded
    by close_timeout, and release the spool."""
    core.notify = lambda: None
    settings = core.settings
    if core.pending:
        with httpx.Client(headers=settings.headers(), verify=verify) as http:
            delivery = SyncDelivery(core, http, threading.Event())
            delivery.deadline = time.monotonic() + settings.close_timeout
            delivery.drain()
    core.queue.close()
    if core.pending:
        logger.warning("audit client exited with %d undelivered events", core.pending)
