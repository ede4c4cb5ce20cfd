"""The sign-in throttle of kimonaudit.console.throttle, kept in PostgreSQL
(kimonaudit.store.postgres_limits) so that every `serve` process on one
database counts the same failures and a restart forgets none.

`make_throttle(store, limits)` picks it for a PostgreSQL store and the
in-memory throttle otherwise (an SQLite log is served by one process).
"""

from __future__ import annotations

import hashlib
from typing import Any

from kimonaudit.console.throttle import Limits, SignInThrottle, Verdict


class SharedSignInThrottle(SignInThrottle):
    """Same rules and interface as SignInThrottle; state in the database."""

    def __init__(self, limits_store: Any, limits: Limits | None = None) -> None:
        super().__init__(limits)
        self._db = limits_store

    def check(self, account: str, ip: str) -> Verdict:
        now, rows = self._db.throttle_rows([_stored(account), _stored(ip)])
        wait = 0.0
        first = False
        for key, _failures, locked_until, last, noted in rows:
            forgotten = now - last > self.limits.forget_after and locked_until <= now
            if forgotten or locked_until <= now:
                continue
            wait = max(wait, locked_until - now)
            if not noted and self._db.note_refusal(key):
                first = True
        return Verdict(wait, first)

    def failed(self, account: str, ip: str) -> None:
        lim = self.limits
        for key, free in ((account, lim.account_free), (ip, lim.ip_free)):
            self._db.record_failure(_stored(key), free, lim.base, lim.cap, lim.forget_after)

    def succeeded(self, account: str) -> None:
        self._db.clear(_stored(account))


def _stored(key: str) -> str:
    """A throttle key as the table keeps it: its SHA-256, so the database
    holds neither e-mail addresses nor client addresses."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def make_throttle(store: Any, limits: Limits | None = None) -> SignInThrottle:
    if getattr(store, "dialect", None) == "postgres":
        from kimonaudit.store.postgres_limits import PostgresLimits

        return SharedSignInThrottle(PostgresLimits(store), limits)
    return SignInThrottle(limits)
