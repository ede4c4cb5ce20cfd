"""What the thread and asyncio clients share: settings, event preparation,
the queue with its counters and flush watermark, and delivery bookkeeping.

`ClientCore` does no network I/O. Its methods that touch the queue or the
counters must be called with `core.lock` held (the sync client builds its
condition variable on that lock)."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from kimonaudit import __version__
from kimonaudit.client.policy import (
    DEFAULT_MAX_BATCH_BYTES,
    EVENTS_PATH,
    MAX_BATCH_EVENTS,
    Outcome,
    RetryPolicy,
    take_batch,
)
from kimonaudit.client.queue import EventQueue, Item, MemoryQueue, SqliteSpool
from kimonaudit.core.events import validate_event
from kimonaudit.errors import AuditLogError
from kimonaudit.ids import uuid7

logger = logging.getLogger("kimonaudit.client")

DEFAULT_MEMORY_QUEUE = 100_000


class ClientError(AuditLogError):
    """Root of the client's own errors."""


class ClientClosed(ClientError):
    """`record()` after `close()`."""


class QueueFull(ClientError):
    """The queue holds `max_queue` undelivered events; the event was not
    recorded. Raised rather than blocking or dropping silently."""


@dataclass(frozen=True)
class ClientStats:
    """A snapshot of the client, for health checks and metrics."""

    pending: int  # recorded, not yet delivered
    recorded: int  # by this process
    delivered: int  # accepted by the server (2xx) in this process
    dead_lettered: int  # refused by the server in this process
    retries: int  # failed attempts that will be retried
    failing: bool  # the last attempt failed and is being retried
    last_error: str | None


@dataclass(frozen=True)
class Settings:
    url: str
    api_key: str
    spool_path: str | None
    batch_size: int
    flush_interval: float
    max_batch_bytes: int
    max_queue: int | None
    retry: RetryPolicy
    timeout: float
    validate: bool
    spool_fsync: bool
    close_timeout: float

    @classmethod
    def build(
        cls,
        url: str,
        api_key: str,
        spool_path: str | os.PathLike[str] | None,
        batch_size: int,
        flush_interval: float,
        max_batch_bytes: int | None,
        max_queue: int | None,
        retry: RetryPolicy | None,
        timeout: float,
        validate: bool,
        spool_fsync: bool,
        close_timeout: float,
    ) -> Settings:
        parsed = httpx.URL(url)
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ValueError(
                f"url must be an http(s) base URL such as http://127.0.0.1:8080, got {url!r}"
            )
        if not isinstance(api_key, str) or not api_key or any(c.isspace() for c in api_key):
            # Never echo the key itself, even in an error.
            raise ValueError("api_key must be a non-empty API key without whitespace")
        if not 1 <= batch_size <= MAX_BATCH_EVENTS:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH_EVENTS}, got {batch_size}")
        if flush_interval < 0 or timeout <= 0 or close_timeout < 0:
            raise ValueError("flush_interval and close_timeout must be >= 0, timeout > 0")
        if max_queue is not None and max_queue < 1:
            raise ValueError("max_queue must be positive or None")
        if max_queue is None and spool_path is None:
            max_queue = DEFAULT_MEMORY_QUEUE
        return cls(
            url=url.rstrip("/"),
            api_key=api_key,
            spool_path=None if spool_path is None else os.fspath(spool_path),
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_batch_bytes=max_batch_bytes or DEFAULT_MAX_BATCH_BYTES,
            max_queue=max_queue,
            retry=retry or RetryPolicy(),
            timeout=timeout,
            validate=validate,
            spool_fsync=spool_fsync,
            close_timeout=close_timeout,
        )

    @property
    def events_url(self) -> str:
        return self.url + EVENTS_PATH

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.api_key}",
            "Content-Type": "application/json",
            "User-Agent": f"kimonaudit-python/{__version__}",
        }

    def __repr__(self) -> str:
        return f"Settings(url={self.url!r}, spool_path={self.spool_path!r})"


def prepare_event(event: Mapping[str, Any], validate: bool) -> tuple[str, str]:
    """(id, JSON text) of an event, assigning a UUIDv7 id when it has none.

    Validation here (the server's own rules) turns a malformed event into
    an InvalidEvent at the call site instead of a dead letter later."""
    if not isinstance(event, Mapping):
        raise TypeError(f"an event is a mapping, got {type(event).__name__}")
    ev = dict(event)
    event_id = ev.get("id")
    if event_id is None:
        event_id = ev["id"] = uuid7()
    occurred = ev.get("occurred_at")
    if isinstance(occurred, datetime):
        ev["occurred_at"] = rfc3339(occurred)
    if validate:
        validate_event(ev)
    body = json.dumps(ev, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return str(event_id), body


def rfc3339(when: datetime) -> str:
    if when.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware")
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class ClientCore:
    """The queue plus the state both senders keep about it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lock = threading.Lock()
        self.notify: Callable[[], None] = lambda: None
        self.queue: EventQueue = (
            SqliteSpool(settings.spool_path, fsync=settings.spool_fsync)
            if settings.spool_path is not None
            else MemoryQueue()
        )
        self.last_seq = self.queue.last_seq()
        head = self.queue.head(1)
        # Everything up to done_seq has left the queue (delivered or dead).
        self.done_seq = head[0].seq - 1 if head else self.last_seq
        self.pending = self.queue.count()
        self.recorded = self.delivered = self.dead = self.retries = 0
        self.failing = False
        self.last_error: str | None = None
        self._attempts = 0

    # -- recording (lock held) ------------------------------------------
    def enqueue(self, prepared: Sequence[tuple[str, str]]) -> None:
        if not prepared:
            return
        limit = self.settings.max_queue
        if limit is not None and self.pending + len(prepared) > limit:
            raise QueueFull(
                f"the audit queue holds {self.settings.max_queue} undelivered events; "
                f"event {prepared[0][0]} was not recorded"
            )
        seq = self.queue.put(prepared)
        before = self.pending
        self.last_seq = seq
        self.pending += len(prepared)
        self.recorded += len(prepared)
        # Wake the sender only when it can act: idle -> busy, or a full batch.
        if before == 0 or before < self.settings.batch_size <= self.pending:
            self.notify()

    # -- sending (lock held) --------------------------------------------
    def next_batch(self) -> tuple[list[Item], bool]:
        """The next batch from the head of the queue, and whether it is full
        (batch_size events, or cut short by the byte limit or a repeated id)."""
        size = self.settings.batch_size
        head = self.queue.head(size)
        if not head:
            # Another process sharing the spool may have delivered them.
            self.pending = 0
            self.done_seq = max(self.done_seq, self.last_seq)
            self.notify()
            return [], False
        self.done_seq = max(self.done_seq, head[0].seq - 1)
        batch = take_batch(head, size, self.settings.max_batch_bytes)
        return batch, len(head) >= size or len(batch) < len(head)

    def accepted(self, part: Sequence[Item]) -> None:
        self.queue.remove(part)
        self.pending = max(0, self.pending - len(part))
        self.delivered += len(part)
        self.done_seq = max(self.done_seq, part[-1].seq)
        self.notify()

    def refused(self, item: Item, outcome: Outcome) -> None:
        self.queue.dead_letter(item, outcome.status, outcome.message)
        self.pending = max(0, self.pending - 1)
        self.dead += 1
        self.done_seq = max(self.done_seq, item.seq)
        logger.warning(
            "audit server refused event %s (HTTP %s: %s); moved to the dead-letter queue",
            item.id,
            outcome.status,
            outcome.message,
        )
        self.notify()

    # -- bookkeeping for attempts (no queue access) -----------------------
    def transport_error(self, exc: Exception) -> Outcome:
        return Outcome(
            "retry", None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        )

    def retry_delay(self, outcome: Outcome, attempt: int) -> float:
        delay = self.settings.retry.delay(attempt, outcome.retry_after)
        self.retries += 1
        self.last_error = (
            f"HTTP {outcome.status}: {outcome.message}" if outcome.status else outcome.message
        )
        if not self.failing:
            self.failing = True
            self._attempts = 0
            if outcome.config_error:
                logger.error(
                    "audit server refused this client (%s); check the URL and API key. "
                    "%d events queued; retrying",
                    self.last_error,
                    self.pending,
                )
            else:
                logger.warning(
                    "audit server unavailable (%s); %d events queued; retrying in %.2fs",
                    self.last_error,
                    self.pending,
                    delay,
                )
        self._attempts += 1
        logger.debug("audit delivery attempt failed (%s); next in %.2fs", self.last_error, delay)
        return delay

    def settled(self) -> None:
        if self.failing:
            logger.info(
                "audit server reachable again after %d failed attempts; %d events queued",
                self._attempts,
                self.pending,
            )
            self.failing = False

    def stats(self) -> ClientStats:
        return ClientStats(
            pending=self.pending,
            recorded=self.recorded,
            delivered=self.delivered,
            dead_lettered=self.dead,
            retries=self.retries,
            failing=self.failing,
            last_error=self.last_error,
        )
