"""Identifiers made by the server."""

from __future__ import annotations

import base64
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable

_lock = threading.Lock()
_last_ms = 0
_seq = 0


def uuid7() -> str:
    """An RFC 9562 UUIDv7 as text: time-ordered, so ids sort roughly by
    creation, and unique within a process even inside one millisecond (a
    12-bit counter in rand_a, RFC 9562 section 6.2 method 1)."""
    global _last_ms, _seq
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _seq += 1
            if _seq > 0xFFF:
                ms += 1
                _seq = 0
        else:
            _seq = int.from_bytes(os.urandom(2), "big") & 0x3FF
        _last_ms = ms
        seq = _seq
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | rand_b
    return str(uuid.UUID(int=value))


def uuid7_batch(n: int) -> list[str]:
    """`n` UUIDv7s sharing one clock read and one random read: what an
    append of a thousand events without client ids needs."""
    global _last_ms, _seq
    if n <= 0:
        return []
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
        else:
            _seq = -1
        start = _seq + 1
        # The 12-bit counter orders ids within a millisecond; borrow the
        # next milliseconds when a batch needs more than it has left.
        total = start + n
        _last_ms = ms + (total - 1) // 0x1000
        _seq = (total - 1) % 0x1000
    rand = os.urandom(8 * n)
    if _texts_in_c is not None:
        return _texts_in_c(ms, start, n, rand)
    return uuid7_texts(ms, start, n, rand)


def uuid7_texts(ms: int, start: int, n: int, rand: bytes) -> list[str]:
    """The `n` UUIDv7 texts of a batch: counter values start, start + 1, ...
    within millisecond `ms` (carrying into the next ones past 0xFFF), and
    8 random bytes each."""
    # The text is assembled from pieces rather than formatted from one
    # 128-bit integer (a third of the cost; an append of 1,000 events
    # makes 1,000 ids): the time is the same for every id of one
    # millisecond, the counter is three hex digits, and the last 16 are
    # the random bytes' hex with the variant bits (10) in the top two.
    hexed = rand.hex()
    starts: dict[int, str] = {}
    out = []
    for i in range(n):
        c = start + i
        t = ms + (c >> 12)
        head = starts.get(t)
        if head is None:
            h = f"{t:012x}"
            head = starts[t] = f"{h[:8]}-{h[8:]}-7"
        j = 16 * i
        out.append(
            f"{head}{c & 0xFFF:03x}-{_VARIANT[rand[8 * i] >> 4 & 3]}"
            f"{hexed[j + 1 : j + 4]}-{hexed[j + 4 : j + 16]}"
        )
    return out


# The first hex digit after the variant bits 10: 0b10xx.
_VARIANT = "89ab"


def tenant_id() -> str:
    """``t_`` and 16 lower-case base32 characters (80 random bits): safe in
    URLs, file names and checkpoint origin lines."""
    raw = base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()
    return "t_" + raw


# The same in C where the optional extension was built (a batch of 1,000
# events without ids makes 1,000 of them); tests/test_native.py compares.
_texts_in_c: Callable[[int, int, int, bytes], list[str]] | None
try:
    from kimonaudit._native import uuid7_texts as _texts_in_c
except ImportError:
    _texts_in_c = None
