"""Identifiers made by the server."""

from __future__ import annotations

import base64
import os
import secrets
import threading
import time
import uuid

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


def tenant_id() -> str:
    """``t_`` and 16 lower-case base32 characters (80 random bits): safe in
    URLs, file names and checkpoint origin lines."""
    raw = base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()
    return "t_" + raw
