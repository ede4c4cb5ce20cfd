"""The Merkle leaf header, the payload and its commitment."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from kimonaudit.core.catalogue import Severity
from kimonaudit.core.events import validate_event
from kimonaudit.core.leaf import (
    LEAF_VERSION,
    MAX_PAYLOAD_BYTES,
    encode_leaf,
    leaf_header,
    payload_bytes,
    payload_commitment,
    payload_of,
)
from kimonaudit.core.pseudonym import actor_hash, tenant_actor_key
from kimonaudit.errors import InvalidEvent

SALT = bytes(range(32))
ACTOR_HASH = "3e06264066d48ae3ecc5dd02db535c40cbde80c1f6479eea7a276b5bea4f2c73"
EVENT: dict[str, Any] = {
    "id": "6f1c2d7e-2b1a-4c3d-9e8f-0a1b2c3d4e5f",
    "action": "ticket.field_changed",
    "actor": {"id": "agent_42", "type": "agent", "name": "Ann Lee", "email": "ann@acme.test"},
    "target": {"type": "ticket", "id": "10482"},
    "context": {"ip": "203.0.113.9", "user_agent": "Mozilla/5.0", "request_id": "req-1"},
    "changes": [
        {"field": "status", "from": "open", "to": "pending"},
        {"field": "subject", "from": "Café", "to": 1.5e-7},
    ],
    "outcome": "success",
    "occurred_at": "2026-11-26T11:00:00.5+01:00",
    "metadata": {"via": "web", "n": 3},
}
GOLDEN_PAYLOAD = (
    b'{"changes":[{"field":"status","from":"open","to":"pending"},'
    b'{"field":"subject","from":"Caf\xc3\xa9","to":1.5e-7}],'
    b'"context":{"ip":"203.0.113.9","request_id":"req-1","user_agent":"Mozilla/5.0"},'
    b'"metadata":{"n":3,"via":"web"},"occurred_at":"2026-11-26T10:00:00.500000Z"}'
)
GOLDEN_COMMITMENT = "15eae3d89ae31baf260bbfed3ff87543ac75fad1d3b531ecbb2cae536390d2f3"
GOLDEN_LEAF = (
    b'{"_v":1,"action":"ticket.field_changed",'
    b'"actor_hash":"3e06264066d48ae3ecc5dd02db535c40cbde80c1f6479eea7a276b5bea4f2c73",'
    b'"actor_type":"agent","category":"ticket","id":"6f1c2d7e-2b1a-4c3d-9e8f-0a1b2c3d4e5f",'
    b'"outcome":"success",'
    b'"payload_commitment":"15eae3d89ae31baf260bbfed3ff87543ac75fad1d3b531ecbb2cae536390d2f3",'
    b'"recorded_at":"2026-11-26T10:00:00.123456Z","security":false,"seq":41,'
    b'"severity":"info","target_id":"10482","target_type":"ticket","tenant":"t_acme"}'
)


def header(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "tenant_id": "t_acme",
        "seq": 41,
        "recorded_at_us": 1_795_687_200_123_456,
        "event_id": "6f1c2d7e-2b1a-4c3d-9e8f-0a1b2c3d4e5f",
        "action": "ticket.field_changed",
        "category": "ticket",
        "severity": Severity.INFO,
        "security": False,
        "actor_hash": ACTOR_HASH,
        "actor_type": "agent",
        "target_type": "ticket",
        "target_id": "10482",
        "outcome": "success",
        "commitment": bytes.fromhex(GOLDEN_COMMITMENT),
    }
    args.update(overrides)
    return leaf_header(**args)


def test_golden_payload() -> None:
    """The payload of the reference event encodes to these exact bytes."""
    assert payload_bytes(validate_event(EVENT)) == GOLDEN_PAYLOAD


def test_golden_commitment() -> None:
    """The commitment is SHA-256(0x02 || salt || payload), pinned."""
    commitment = payload_commitment(SALT, GOLDEN_PAYLOAD)
    assert commitment.hex() == GOLDEN_COMMITMENT
    assert commitment == hashlib.sha256(b"\x02" + SALT + GOLDEN_PAYLOAD).digest()


def test_golden_leaf() -> None:
    """The reference header encodes to these exact leaf bytes, version first."""
    leaf = encode_leaf(header())
    assert leaf == GOLDEN_LEAF
    assert leaf.startswith(b'{"_v":%d,' % LEAF_VERSION)


def test_golden_leaf_with_absent_fields_and_unicode() -> None:
    """Absent values encode as null; non-ASCII stays UTF-8, unescaped."""
    leaf = encode_leaf(
        header(
            event_id=None,
            actor_hash=None,
            actor_type=None,
            target_type="user",
            target_id="Jürgen\u2028",
            action="auth.mfa.disabled",
            category="authentication",
            severity=Severity.HIGH,
            security=True,
            seq=0,
            recorded_at_us=0,
        )
    )
    assert leaf == (
        b'{"_v":1,"action":"auth.mfa.disabled","actor_hash":null,"actor_type":null,'
        b'"category":"authentication","id":null,"outcome":"success",'
        b'"payload_commitment":"15eae3d89ae31baf260bbfed3ff87543ac75fad1d3b531ecbb2cae536390d2f3",'
        b'"recorded_at":"1970-01-01T00:00:00.000000Z","security":true,"seq":0,'
        b'"severity":"high","target_id":"J\xc3\xbcrgen\xe2\x80\xa8","target_type":"user",'
        b'"tenant":"t_acme"}'
    )


def test_leaf_and_payload_are_rfc8785() -> None:
    """Our bytes equal an independent RFC 8785 implementation's (the rfc8785 package)."""
    assert encode_leaf(header()) == rfc8785.dumps(header())
    event = validate_event(EVENT)
    assert payload_bytes(event) == rfc8785.dumps(payload_of(event))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("tenant_id", "t_other"),
        ("seq", 42),
        ("recorded_at_us", 1_795_687_200_123_457),
        ("event_id", "other"),
        ("action", "ticket.viewed"),
        ("category", "other"),
        ("severity", Severity.LOW),
        ("security", True),
        ("actor_hash", "0" * 64),
        ("actor_type", "user"),
        ("target_type", "macro"),
        ("target_id", "10483"),
        ("outcome", "failure"),
        ("commitment", bytes(32)),
    ],
)
def test_every_header_field_is_committed(name: str, value: object) -> None:
    """Changing any one header input changes the leaf bytes."""
    assert encode_leaf(header(**{name: value})) != GOLDEN_LEAF


def test_header_is_deterministic() -> None:
    """The same inputs always give the same bytes (the verifier relies on it)."""
    assert encode_leaf(header()) == encode_leaf(header())


def test_commitment_is_domain_separated() -> None:
    """The 0x02 prefix keeps a commitment from equalling an RFC 6962 leaf or node hash."""
    commitment = payload_commitment(SALT, GOLDEN_PAYLOAD)
    assert commitment != hashlib.sha256(b"\x00" + SALT + GOLDEN_PAYLOAD).digest()
    assert commitment != hashlib.sha256(b"\x01" + SALT + GOLDEN_PAYLOAD).digest()
    assert commitment != payload_commitment(bytes(32), GOLDEN_PAYLOAD)


@pytest.mark.parametrize("size", [0, 16, 31, 33])
def test_commitment_needs_32_byte_salt(size: int) -> None:
    """A salt that is not 32 bytes is a programming error."""
    with pytest.raises(ValueError, match="32 bytes"):
        payload_commitment(bytes(size), b"{}")


def test_payload_shape_of_minimal_event() -> None:
    """An event with only an action has an empty, fully keyed payload."""
    event = validate_event({"action": "ticket.viewed"})
    assert payload_of(event) == {"context": {}, "changes": [], "metadata": {}, "occurred_at": None}
    assert payload_bytes(event) == b'{"changes":[],"context":{},"metadata":{},"occurred_at":null}'


def padded(extra: int) -> dict[str, Any]:
    """An event whose payload is len(minimal padded payload) + extra bytes."""
    return {"action": "ticket.viewed", "metadata": {"pad": "x" * extra}}


def test_payload_size_boundary() -> None:
    """A payload of exactly 32 KiB is accepted; one byte more is rejected."""
    base = len(payload_bytes(validate_event(padded(0))))
    fits = validate_event(padded(MAX_PAYLOAD_BYTES - base))
    assert len(payload_bytes(fits)) == MAX_PAYLOAD_BYTES == 32 * 1024
    with pytest.raises(InvalidEvent, match="32768") as info:
        validate_event(padded(MAX_PAYLOAD_BYTES - base + 1))
    assert info.value.field == ""


def test_payload_size_checked_without_validation() -> None:
    """payload_bytes enforces the limit for an Event built directly, too."""
    event = validate_event(padded(0))
    big = dataclasses.replace(event, metadata={"pad": "x" * MAX_PAYLOAD_BYTES})
    with pytest.raises(InvalidEvent) as info:
        payload_bytes(big)
    assert info.value.field == ""


def test_replace_does_not_reuse_stale_payload() -> None:
    """dataclasses.replace gives an event whose payload reflects the new values."""
    event = validate_event(EVENT)
    changed = dataclasses.replace(event, metadata={"via": "api"})
    assert payload_bytes(changed) != payload_bytes(event)
    assert b'"metadata":{"via":"api"}' in payload_bytes(changed)


def test_payload_cache_matches_fresh_encoding() -> None:
    """The bytes cached at validation equal a fresh encoding of payload_of."""
    event = validate_event(EVENT)
    assert payload_bytes(event) == rfc8785.dumps(payload_of(event))


# Names always contain a space and emails an "@example.test", neither of
# which any header or payload byte of this test can hold by chance, so a
# match could only mean the value was copied in.
WORD = st.text(alphabet=st.characters(codec="utf-8", categories=("L",)), min_size=1, max_size=15)
NAMES = st.builds(lambda first, last: f"{first} {last}", WORD, WORD)


@given(name=NAMES, local=st.from_regex(r"[a-z0-9._]{1,20}", fullmatch=True))
@settings(max_examples=100, deadline=None)
def test_name_and_email_never_in_leaf_or_payload(name: str, local: str) -> None:
    """Whatever the actor's name and email, neither reaches the leaf or the payload."""
    email = f"{local}@example.test"
    event = validate_event(
        {
            "action": "ticket.viewed",
            "actor": {"id": "agent_42", "type": "agent", "name": name, "email": email},
            "target": {"type": "ticket", "id": "1"},
            "context": {"ip": "192.0.2.1"},
        }
    )
    key = tenant_actor_key(bytes(32), "t_acme")
    payload = payload_bytes(event)
    leaf = encode_leaf(
        header(
            actor_hash=actor_hash(key, event.actor.id) if event.actor else None,
            commitment=payload_commitment(SALT, payload),
        )
    )
    for blob in (leaf, payload):
        assert name.encode() not in blob
        assert email.encode() not in blob
