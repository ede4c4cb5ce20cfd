"""Keyed actor pseudonyms: per-tenant keys and HMAC hashes."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kimonaudit.core.pseudonym import actor_hash, field_hash, tenant_actor_key
from kimonaudit.errors import ConfigError

SECRET = bytes(range(32))
HEX64 = re.compile(r"[0-9a-f]{64}")


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 written out from the RFC, independent of the library."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def test_tenant_key_is_rfc5869_hkdf() -> None:
    """The tenant key is HKDF-SHA256 with the documented salt and the tenant id as info."""
    expected = hkdf_sha256(SECRET, b"kimonaudit/actor-hash/v1", b"t_acme", 32)
    assert tenant_actor_key(SECRET, "t_acme") == expected


def test_tenant_key_and_hash_golden() -> None:
    """The derivation is pinned: changing it would orphan every stored actor hash."""
    key = tenant_actor_key(SECRET, "t_acme")
    assert key.hex() == "747cbf27baafe28192a7edbbae28894e8416a249c82f2289f875931a49f2157f"
    assert actor_hash(key, "agent_42") == (
        "3e06264066d48ae3ecc5dd02db535c40cbde80c1f6479eea7a276b5bea4f2c73"
    )
    assert tenant_actor_key(SECRET, "é") == hkdf_sha256(
        SECRET, b"kimonaudit/actor-hash/v1", "é".encode(), 32
    )


def test_actor_hash_rfc4231_vector() -> None:
    """actor_hash is plain HMAC-SHA256: RFC 4231 section 4.3 (test case 2) holds."""
    assert actor_hash(b"Jefe", "what do ya want for nothing?") == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_actor_hash_deterministic_and_lower_hex() -> None:
    """The same actor under the same key always hashes alike, as 64 lower-case hex."""
    key = tenant_actor_key(SECRET, "t_acme")
    first = actor_hash(key, "agent_42")
    assert first == actor_hash(tenant_actor_key(SECRET, "t_acme"), "agent_42")
    assert HEX64.fullmatch(first)


def test_tenant_separation() -> None:
    """The same actor id in two tenants gets unrelated hashes."""
    a = actor_hash(tenant_actor_key(SECRET, "t_acme"), "agent_42")
    b = actor_hash(tenant_actor_key(SECRET, "t_globex"), "agent_42")
    assert a != b


def test_deployment_separation() -> None:
    """Another deployment secret gives other hashes for the same tenant and actor."""
    other = bytes(range(1, 33))
    assert actor_hash(tenant_actor_key(SECRET, "t"), "u") != actor_hash(
        tenant_actor_key(other, "t"), "u"
    )


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
@settings(max_examples=100)
def test_distinct_actors_distinct_hashes(a: str, b: str) -> None:
    """Different actor ids get different hashes; equal ids the same hash."""
    key = tenant_actor_key(SECRET, "t")
    assert (actor_hash(key, a) == actor_hash(key, b)) is (a == b)


def test_short_secret_rejected() -> None:
    """A deployment secret under 16 bytes is a configuration error."""
    with pytest.raises(ConfigError, match="at least 16"):
        tenant_actor_key(b"short", "t")


def test_field_hash_shape_and_separation() -> None:
    """field_hash is prefixed, deterministic, and differs from the actor hash of the same text."""
    key = tenant_actor_key(SECRET, "t")
    value = field_hash(key, "agent_42")
    assert value.startswith("hmac-sha256:")
    assert HEX64.fullmatch(value.removeprefix("hmac-sha256:"))
    assert value == field_hash(key, "agent_42")
    assert value != field_hash(key, "agent_43")
    assert value.removeprefix("hmac-sha256:") != actor_hash(key, "agent_42")
