"""Sign-in throttling: exponential lockout per account and per client IP.

Each key (an account, meaning tenant and e-mail, or a client address)
counts its failed sign-ins. The first `free` failures cost nothing; after
that every failure locks the key for `base * 2**k` seconds (k = failures
past the free ones, so 1 s, 2 s, 4 s ... up to `cap`). While a key is
locked, sign-ins are refused before the password is even checked, which
also keeps a flood of guesses from burning CPU on argon2. A key forgets
its failures `forget_after` seconds after the last one; a successful
sign-in clears the account's count (never the address's, or one valid
account would reset the counter for guesses at every other).

This class keeps the state in this process's memory (SQLite: one server
process); it resets when the server restarts. At most `max_keys` keys are
tracked; past that the oldest are dropped. On PostgreSQL the console uses
kimonaudit.console.throttle_shared instead: the same rules, the state in
the database, shared by every process.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Count:
    failures: int = 0
    locked_until: float = 0.0
    last: float = 0.0
    refusal_noted: bool = False


@dataclass(frozen=True)
class Verdict:
    wait: float  # seconds until a sign-in is allowed; 0 when allowed now
    first_refusal: bool  # the first refusal of this lockout (worth logging once)


@dataclass(frozen=True)
class Limits:
    account_free: int = 5
    ip_free: int = 20
    base: float = 1.0
    cap: float = 900.0
    forget_after: float = 3600.0
    max_keys: int = 100_000


class SignInThrottle:
    def __init__(
        self, limits: Limits | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = limits or Limits()
        self._clock = clock
        self._counts: OrderedDict[str, _Count] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def account_key(tenant_id: str, email: str) -> str:
        return f"a\x00{tenant_id}\x00{email.strip().lower()}"

    @staticmethod
    def ip_key(ip: str | None) -> str:
        return f"i\x00{ip or '-'}"

    def check(self, account: str, ip: str) -> Verdict:
        """Whether a sign-in may be attempted now for these keys."""
        now = self._clock()
        with self._lock:
            wait = 0.0
            first = False
            for key in (account, ip):
                c = self._get(key, now)
                if c is not None and c.locked_until > now:
                    wait = max(wait, c.locked_until - now)
                    if not c.refusal_noted:
                        c.refusal_noted = True
                        first = True
            return Verdict(wait, first)

    def failed(self, account: str, ip: str) -> None:
        now = self._clock()
        lim = self.limits
        with self._lock:
            for key, free in ((account, lim.account_free), (ip, lim.ip_free)):
                c = self._get(key, now) or _Count()
                c.failures += 1
                c.last = now
                past = c.failures - free
                if past >= 0:
                    c.locked_until = now + min(lim.cap, lim.base * 2.0 ** min(past, 60))
                    c.refusal_noted = False
                self._counts[key] = c
                self._counts.move_to_end(key)
            while len(self._counts) > lim.max_keys:
                self._counts.popitem(last=False)

    def succeeded(self, account: str) -> None:
        with self._lock:
            self._counts.pop(account, None)

    def _get(self, key: str, now: float) -> _Count | None:
        c = self._counts.get(key)
        if c is not None and now - c.last > self.limits.forget_after and c.locked_until <= now:
            del self._counts[key]
            return None
        return c
