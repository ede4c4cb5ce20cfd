"""Keyed pseudonyms: actors (and sensitive values) stored as HMACs.

Each tenant gets its own key, derived from the deployment secret, so the
same person in two tenants has unrelated hashes and one tenant's log says
nothing about another's. The key never leaves the server; without it a hash
cannot be tested against a guessed id.
"""

from __future__ import annotations

import hashlib
import hmac

from kimonaudit.errors import ConfigError

ACTOR_KEY_SALT = b"kimonaudit/actor-hash/v1"
MIN_SECRET_BYTES = 16
FIELD_HASH_PREFIX = "hmac-sha256:"
# Separates field hashes from actor hashes under the same tenant key, so a
# hashed field value equal to some actor id does not reveal that actor.
_FIELD_DOMAIN = b"kimonaudit/field-hash/v1\x00"


def tenant_actor_key(deployment_secret: bytes, tenant_id: str) -> bytes:
    """The tenant's 32-byte actor key: HKDF-SHA256(secret, salt, info=tenant id)."""
    # Imported here: field_hash is used by the light client's helpers, which
    # do not install cryptography.
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    if len(deployment_secret) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"the deployment secret is {len(deployment_secret)} bytes; "
            f"at least {MIN_SECRET_BYTES} random bytes are required"
        )
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=ACTOR_KEY_SALT,
        info=tenant_id.encode("utf-8"),
    ).derive(deployment_secret)


def actor_hash(key: bytes, actor_id: str) -> str:
    """64 lower-case hex characters: HMAC-SHA256(key, actor id)."""
    return hmac.new(key, actor_id.encode("utf-8"), hashlib.sha256).hexdigest()


def field_hash(key: bytes, value: str) -> str:
    """A sensitive value as "hmac-sha256:<hex>": equal values still compare
    equal (so a change is visible) without the value being stored."""
    digest = hmac.new(key, _FIELD_DOMAIN + value.encode("utf-8"), hashlib.sha256).hexdigest()
    return FIELD_HASH_PREFIX + digest


# --- per-actor secrets (issue 8: erasure that really unlinks) ---------------
# The leaf's actor hash is keyed by a random secret that only the actor's
# directory row holds, not by the tenant key: erasing that row destroys the
# only way from an actor id to their entries, even for whoever holds the
# deployment's keys. The tenant key still finds the row (the lookup key).
_LOOKUP_DOMAIN = b"kimonaudit/actor-lookup/v1\x00"
ACTOR_SECRET_BYTES = 32


def actor_lookup(key: bytes, actor_id: str) -> str:
    """Where the directory keeps an actor's secret: HMAC-SHA256(tenant key,
    domain || actor id), hex. Never stored in a leaf."""
    return hmac.new(key, _LOOKUP_DOMAIN + actor_id.encode("utf-8"), hashlib.sha256).hexdigest()


def secret_actor_hash(secret: bytes, tenant_id: str, actor_id: str) -> str:
    """The leaf's actor hash: HMAC-SHA256(actor secret, tenant || 0x00 || actor
    id), 64 lower-case hex characters."""
    if len(secret) != ACTOR_SECRET_BYTES:
        raise ValueError(f"an actor secret is {ACTOR_SECRET_BYTES} bytes, not {len(secret)}")
    msg = tenant_id.encode("utf-8") + b"\x00" + actor_id.encode("utf-8")
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()
