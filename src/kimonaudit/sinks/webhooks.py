"""Standard Webhooks (standardwebhooks.com) signing.

Every delivery carries three headers:

- ``webhook-id``: the message id, the same on every retry of a message (a
  batch's id is derived from its destination and seq range);
- ``webhook-timestamp``: integer Unix seconds of this attempt;
- ``webhook-signature``: ``v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>``;
  during a secret rotation one signature per live secret, separated by
  spaces, so receivers holding either secret verify.

Secrets are ``whsec_`` + base64 of 32 random bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence

from kimonaudit.errors import InvalidInput

PREFIX = "whsec_"


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def secret_bytes(secret: str) -> bytes:
    """The key inside a ``whsec_...`` secret; InvalidInput if malformed."""
    if not secret.startswith(PREFIX):
        raise InvalidInput("a webhook secret starts with whsec_", field="secret")
    try:
        key = base64.b64decode(secret[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("a webhook secret is whsec_ + base64", field="secret") from None
    if not 24 <= len(key) <= 64:
        raise InvalidInput("a webhook secret holds 24 to 64 bytes", field="secret")
    return key


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    mac = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def headers(secrets_: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with every secret given
    (the new one first during a rotation)."""
    if not secrets_:
        raise ValueError("at least one secret is needed")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets_),
    }
