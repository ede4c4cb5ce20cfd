"""Rate limits kept in PostgreSQL, so that every `serve` process on one
database enforces one limit (and a restart forgets nothing): the per-API-key
token buckets and the console's sign-in throttle. Tables from migration 8.

Both use the database's clock (`now()`), never a process's, so processes
agree on elapsed time. The token bucket is one UPSERT per request, on an
UNLOGGED table (migration 11) so that a request never waits for a WAL flush;
the throttle's updates run under the row's lock, on a logged table.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

_NOW = "SELECT extract(epoch from now())::float8"

# `excluded.at` is now (the statement's start): one clock for the whole update.
_TAKE = """
INSERT INTO api_rate_buckets AS b (key_id, tokens, at, ok)
VALUES (%(k)s, %(burst)s - 1, extract(epoch from now())::float8, true)
ON CONFLICT (key_id) DO UPDATE SET
    ok = least(%(burst)s, b.tokens + (excluded.at - b.at) * %(rate)s) >= 1,
    tokens = least(%(burst)s, b.tokens + (excluded.at - b.at) * %(rate)s)
        - CASE WHEN least(%(burst)s, b.tokens + (excluded.at - b.at) * %(rate)s) >= 1
          THEN 1 ELSE 0 END,
    at = excluded.at
RETURNING ok, tokens
"""


class _Reads(Protocol):
    def _read(self, what: str) -> AbstractContextManager[Any]: ...


class PostgresLimits:
    """The shared state behind `SharedRateLimiter` and `SharedSignInThrottle`."""

    def __init__(self, store: _Reads) -> None:
        self._store = store

    # -- API keys: token buckets ------------------------------------------------
    def take(self, key_id: str, rate: float, burst: float) -> float:
        """0.0 if a request with this key may go ahead now (a token taken),
        else the seconds until one could."""
        with self._store._read("checking an API key's rate limit") as conn:
            ok, tokens = conn.execute(_TAKE, {"k": key_id, "rate": rate, "burst": burst}).fetchone()
        return 0.0 if ok else max(0.0, (1.0 - float(tokens)) / rate)

    # -- console sign-in throttle ----------------------------------------------
    def throttle_rows(self, keys: Sequence[str]) -> tuple[float, list[tuple[Any, ...]]]:
        """(database now, [(key, failures, locked_until, last, refusal_noted)])."""
        with self._store._read("reading the sign-in throttle") as conn:
            now = float(conn.execute(_NOW).fetchone()[0])
            rows = conn.execute(
                "SELECT key, failures, locked_until, last, refusal_noted"
                " FROM signin_throttle WHERE key = ANY(%s)",
                (list(keys),),
            ).fetchall()
        return now, [tuple(r) for r in rows]

    def note_refusal(self, key: str) -> bool:
        """Mark the current lockout of `key` as reported; True for the one
        caller (of any process) that marked it first."""
        with self._store._read("updating the sign-in throttle") as conn:
            cur = conn.execute(
                "UPDATE signin_throttle SET refusal_noted = true"
                " WHERE key = %s AND NOT refusal_noted",
                (key,),
            )
            return bool(cur.rowcount)

    def record_failure(
        self, key: str, free: int, base: float, cap: float, forget_after: float
    ) -> None:
        """One more failure for `key`, under its row lock: past `free`
        failures the key is locked for base * 2**k seconds, at most cap."""
        with self._store._read("updating the sign-in throttle") as conn, conn.transaction():
            now = float(conn.execute(_NOW).fetchone()[0])
            conn.execute(
                "INSERT INTO signin_throttle VALUES (%s, 0, 0, %s, false)"
                " ON CONFLICT (key) DO NOTHING",
                (key, now),
            )
            failures, locked_until, last = conn.execute(
                "SELECT failures, locked_until, last FROM signin_throttle"
                " WHERE key = %s FOR UPDATE",
                (key,),
            ).fetchone()
            if now - last > forget_after and locked_until <= now:
                failures = 0
            failures += 1
            past = failures - free
            noted_reset = past >= 0
            if past >= 0:
                locked_until = now + min(cap, base * 2.0 ** min(past, 60))
            conn.execute(
                "UPDATE signin_throttle SET failures = %s, locked_until = %s, last = %s,"
                " refusal_noted = CASE WHEN %s THEN false ELSE refusal_noted END"
                " WHERE key = %s",
                (failures, locked_until, now, noted_reset, key),
            )
            if random.random() < 0.01:  # now and then, forget the long quiet
                conn.execute(
                    "DELETE FROM signin_throttle WHERE last < %s AND locked_until <= %s",
                    (now - forget_after, now),
                )

    def clear(self, key: str) -> None:
        with self._store._read("updating the sign-in throttle") as conn:
            conn.execute("DELETE FROM signin_throttle WHERE key = %s", (key,))
