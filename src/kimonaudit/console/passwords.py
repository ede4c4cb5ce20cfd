"""Console passwords: argon2id (RFC 9106) through argon2-cffi.

The default cost is argon2-cffi's RFC 9106 "low memory" profile (t=3,
64 MiB, p=4), about a quarter of a second here. A sign-in for an e-mail
that does not exist verifies against a dummy hash of the same cost, so the
answer takes as long either way and says nothing about who has an account.
"""

from __future__ import annotations

import secrets
import threading

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from kimonaudit.errors import InvalidInput

MIN_LENGTH = 10
MAX_LENGTH = 1024


def check_password(password: str) -> str:
    """The password if acceptable; InvalidInput saying why not. Length is
    the only rule (NIST SP 800-63B): no composition rules."""
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise InvalidInput(f"a password is at least {MIN_LENGTH} characters", field="password")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"a password is at most {MAX_LENGTH} characters", field="password")
    if "\x00" in password:
        raise InvalidInput("a password must not contain NUL characters", field="password")
    return password


def generate_password() -> str:
    """A fresh password of 120 random bits, easy to copy: no padding, no
    characters that need quoting in a shell."""
    return secrets.token_urlsafe(15)


class Passwords:
    """Hash and check passwords with argon2id at a chosen cost."""

    def __init__(self, time_cost: int = 3, memory_kib: int = 65_536, parallelism: int = 4) -> None:
        self._ph = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self._dummy: str | None = None
        self._lock = threading.Lock()

    def hash(self, password: str) -> str:
        return self._ph.hash(check_password(password))

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether `password` matches the PHC string `stored`. With `stored`
        None the work is done anyway against a dummy hash, and False returned."""
        target = stored if stored is not None else self._dummy_hash()
        try:
            ok = self._ph.verify(target, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return bool(ok) and stored is not None

    def needs_rehash(self, stored: str) -> bool:
        """True when `stored` was made with other parameters than ours."""
        try:
            return self._ph.check_needs_rehash(stored)
        except InvalidHashError:
            return True

    def _dummy_hash(self) -> str:
        with self._lock:
            if self._dummy is None:
                self._dummy = self._ph.hash(secrets.token_urlsafe(16))
            return self._dummy
