"""Delivery decisions without I/O, shared by the thread and asyncio senders:
which answers are retried, how long to wait, how a batch is cut and how a
refused batch is bisected."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal, NamedTuple

from kimonaudit.client.queue import Item

EVENTS_PATH = "/v1/events"
MAX_BATCH_EVENTS = 1_000
# The server refuses bodies over 1 MiB; leave room for the envelope.
DEFAULT_MAX_BATCH_BYTES = 900_000

# Not the batch's fault: the server is busy or down, or the client is
# misconfigured (key, URL). The events wait in the queue and are retried.
_RETRY_STATUSES = frozenset({408, 429})
_CONFIG_STATUSES = frozenset({401, 403, 404, 405})


class Outcome(NamedTuple):
    kind: Literal["ok", "retry", "poison"]
    status: int | None
    message: str
    retry_after: float | None = None
    config_error: bool = False


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt n waits a random time in
    [base/2, base] with base = min(maximum, initial * multiplier**n), or the
    server's Retry-After (up to `max_retry_after` seconds) when longer."""

    initial: float = 0.2
    maximum: float = 30.0
    multiplier: float = 2.0
    max_retry_after: float = 300.0

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum) or self.multiplier < 1:
            raise ValueError("RetryPolicy needs 0 < initial <= maximum and multiplier >= 1")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        base = min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))
        wait = random.uniform(base / 2, base)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_retry_after))
        return wait


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def classify_response(status: int, headers: Mapping[str, str], text: str) -> Outcome:
    if 200 <= status < 300:
        return Outcome("ok", status, "")
    message = _error_message(text) or f"HTTP {status}"
    if status >= 500 or status in _RETRY_STATUSES:
        return Outcome("retry", status, message, parse_retry_after(headers.get("retry-after")))
    if status in _CONFIG_STATUSES:
        return Outcome("retry", status, message, config_error=True)
    return Outcome("poison", status, message)


def _error_message(text: str) -> str:
    try:
        doc = json.loads(text)
    except ValueError:
        return text.strip()[:500]
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict):
        msg = doc["error"].get("message")
        if isinstance(msg, str):
            return msg[:2000]
    if isinstance(doc, dict) and isinstance(doc.get("detail"), str):
        return str(doc["detail"])[:2000]
    return text.strip()[:500]


def take_batch(head: Sequence[Item], max_events: int, max_bytes: int) -> list[Item]:
    """The longest prefix of `head` that fits the limits (at least one
    event, so an oversized one is still sent and refused on its own) and
    repeats no id: the server refuses a batch that names an id twice, and a
    repeat sent later is answered with the first one's receipt."""
    batch: list[Item] = []
    seen: set[str] = set()
    size = 0
    for item in head[:max_events]:
        n = len(item.body.encode("utf-8")) + 1
        if batch and (size + n > max_bytes or item.id in seen):
            break
        batch.append(item)
        seen.add(item.id)
        size += n
    return batch


def request_body(items: Sequence[Item]) -> bytes:
    # Bodies are stored as JSON text, so the envelope is joined, not re-encoded.
    return ('{"events":[' + ",".join(it.body for it in items) + "]}").encode("utf-8")


class Bisector:
    """Walks a refused batch down to the events that cause the refusal.

    The server accepts or refuses a batch as a whole. When it refuses one,
    the halves are tried in order, left first, so the good events are still
    delivered in the order they were recorded; a single refused event is
    the culprit."""

    def __init__(self, batch: Sequence[Item]) -> None:
        self._items = list(batch)
        self._stack: list[tuple[int, int]] = [(0, len(self._items))] if batch else []

    def current(self) -> list[Item] | None:
        if not self._stack:
            return None
        lo, hi = self._stack[-1]
        return self._items[lo:hi]

    def accepted(self) -> None:
        self._stack.pop()

    def refused(self) -> Item | None:
        """The culprit when the refused part is a single event, else None
        (its halves are next)."""
        lo, hi = self._stack.pop()
        if hi - lo == 1:
            return self._items[lo]
        mid = (lo + hi) // 2
        self._stack.append((mid, hi))
        self._stack.append((lo, mid))
        return None
