"""API keys: generation, parsing, hashing and scopes. No I/O.

Key text is ``kak_<id>_<secret>``:

- ``kak_`` marks a KimonAudit API key, so secret scanners can match it;
- ``<id>`` is 12 lower-case base32 characters (60 random bits), stored in
  the clear and shown in listings, so a key can be named without its secret;
- ``<secret>`` is 43 base64url characters (32 random bytes). Only its
  SHA-256 is stored. A fast hash is enough here: the secret is uniformly
  random with 256 bits of entropy, so there is nothing to brute-force that
  a slow password hash would protect.

The key is parsed by position, not by splitting on ``_``, because ``_`` is
also a base64url character.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kimonaudit.core.timefmt import format_ts
from kimonaudit.errors import AuthError, InvalidInput

PREFIX = "kak_"
ID_LENGTH = 12
SECRET_LENGTH = 43
KEY_LENGTH = len(PREFIX) + ID_LENGTH + 1 + SECRET_LENGTH

SCOPE_WRITE = "events:write"
SCOPE_READ = "events:read"
SCOPE_ADMIN = "admin"
SCOPES: tuple[str, ...] = (SCOPE_WRITE, SCOPE_READ, SCOPE_ADMIN)
MAX_NAME_LENGTH = 100

_ID_RE = re.compile(r"[a-z2-7]{12}")
_SECRET_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_BAD_CHAR = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(frozen=True)
class ApiKeyRecord:
    """A stored key: never the secret, only its SHA-256."""

    key_id: str
    tenant_id: str
    name: str
    scopes: tuple[str, ...]
    secret_hash: bytes
    created_at: int
    revoked_at: int | None = None
    last_used_at: int | None = None

    @property
    def prefix(self) -> str:
        """What a listing shows: enough to recognise the key, nothing to use it."""
        return f"{PREFIX}{self.key_id}"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.key_id,
            "prefix": self.prefix,
            "tenant_id": self.tenant_id,
            "name": self.name,
            "scopes": list(self.scopes),
            "created_at": format_ts(self.created_at),
            "revoked_at": None if self.revoked_at is None else format_ts(self.revoked_at),
            "last_used_at": None if self.last_used_at is None else format_ts(self.last_used_at),
        }


def generate() -> tuple[str, str, str]:
    """A fresh key: (key id, secret, full key text)."""
    key_id = base64.b32encode(secrets.token_bytes(8)).decode("ascii").lower()[:ID_LENGTH]
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    return key_id, secret, f"{PREFIX}{key_id}_{secret}"


def parse(text: str) -> tuple[str, str]:
    """(key id, secret) of a key text; AuthError when it is not one.

    The message never repeats the text: it may be a real secret pasted into
    the wrong place."""
    if (
        len(text) != KEY_LENGTH
        or not text.startswith(PREFIX)
        or text[len(PREFIX) + ID_LENGTH] != "_"
    ):
        raise AuthError("malformed API key: expected kak_<12 characters>_<43 characters>")
    key_id = text[len(PREFIX) : len(PREFIX) + ID_LENGTH]
    secret = text[len(PREFIX) + ID_LENGTH + 1 :]
    if _ID_RE.fullmatch(key_id) is None or _SECRET_RE.fullmatch(secret) is None:
        raise AuthError("malformed API key: expected kak_<12 characters>_<43 characters>")
    return key_id, secret


def is_key_id(text: str) -> bool:
    return _ID_RE.fullmatch(text) is not None


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


# Compared against when no key has the id, so a miss costs what a hit costs.
_DUMMY_HASH = hashlib.sha256(b"kimonaudit/no-such-key").digest()


def secret_matches(secret: str, stored_hash: bytes | None) -> bool:
    """Constant-time comparison of a presented secret with a stored hash."""
    expected = _DUMMY_HASH if stored_hash is None else stored_hash
    return hmac.compare_digest(hash_secret(secret), expected) and stored_hash is not None


def normalize_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Validated scopes in canonical order; InvalidInput naming the bad one."""
    given = list(scopes)
    if not given:
        raise InvalidInput(f"give at least one scope: {', '.join(SCOPES)}", field="scopes")
    for i, s in enumerate(given):
        if s not in SCOPES:
            raise InvalidInput(
                f"{s!r} is not a scope; expected one of {', '.join(SCOPES)}", field=f"scopes[{i}]"
            )
    return tuple(s for s in SCOPES if s in given)


def check_name(name: str) -> str:
    """A key name: 1-100 characters, no control characters or lone surrogates."""
    if not name or len(name) > MAX_NAME_LENGTH or _BAD_CHAR.search(name):
        raise InvalidInput(
            f"a key name is 1-{MAX_NAME_LENGTH} characters without control characters",
            field="name",
        )
    return name


def grants(scopes: Iterable[str], needed: str) -> bool:
    """Whether a key with `scopes` may do what `needed` allows; admin implies
    every other scope."""
    held = set(scopes)
    return needed in held or SCOPE_ADMIN in held
