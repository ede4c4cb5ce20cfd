"""The Merkle leaf: a PII-free header committing to a salted payload.

The header is what the tree hashes. It holds no name, email, IP or free
text from the event: those live in the payload, which the header commits to
through `payload_commitment` = SHA-256(0x02 || salt || payload). Deleting a
payload and its salt (redaction) leaves the leaf, the tree and every proof
intact; the random salt keeps a redacted payload from being guessed back
from its commitment.

The verifier rebuilds headers from stored columns, so `leaf_header` must be
a pure function of its arguments.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from kimonaudit.core.canonical import canonical_json
from kimonaudit.core.catalogue import Severity
from kimonaudit.core.timefmt import format_ts
from kimonaudit.errors import InvalidEvent

if TYPE_CHECKING:
    from kimonaudit.core.events import Event

LEAF_VERSION = 1
MAX_PAYLOAD_BYTES = 32 * 1024
SALT_BYTES = 32
# Domain separation from RFC 6962's 0x00 (leaf) and 0x01 (node) prefixes.
PAYLOAD_COMMITMENT_PREFIX = b"\x02"

_LABELS = {s: s.label for s in Severity}


def payload_of(event: Event) -> dict[str, Any]:
    """The event's payload: everything stored beside the leaf rather than in
    it. Never contains the actor's name or email (those go to the directory)."""
    occurred = event.occurred_at
    return {
        "context": dict(event.context),
        "changes": [{"field": c.field, "from": c.before, "to": c.after} for c in event.changes],
        "metadata": dict(event.metadata),
        "occurred_at": None if occurred is None else format_ts(occurred),
    }


def encode_payload(payload: dict[str, Any]) -> bytes:
    """Canonical bytes of a payload dict; InvalidEvent(field="") when over
    MAX_PAYLOAD_BYTES."""
    data = canonical_json(payload)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise InvalidEvent(
            f"the event's payload (context, changes, metadata and occurred_at) is "
            f"{len(data)} bytes as canonical JSON; at most {MAX_PAYLOAD_BYTES} are allowed",
            field="",
        )
    return data


def payload_bytes(event: Event) -> bytes:
    """canonical_json(payload_of(event)), at most MAX_PAYLOAD_BYTES."""
    # validate_event already encoded (and size-checked) the payload once.
    cached = event._payload
    if cached is not None:
        return cached
    return encode_payload(payload_of(event))


def payload_commitment(salt: bytes, payload: bytes) -> bytes:
    """SHA-256(0x02 || salt || payload); `salt` is 32 random bytes."""
    if len(salt) != SALT_BYTES:
        raise ValueError(f"payload salt must be {SALT_BYTES} bytes, got {len(salt)}")
    return hashlib.sha256(PAYLOAD_COMMITMENT_PREFIX + salt + payload).digest()


def leaf_header(
    *,
    tenant_id: str,
    seq: int,
    recorded_at_us: int,
    event_id: str | None,
    action: str,
    category: str,
    severity: Severity,
    security: bool,
    actor_hash: str | None,
    actor_type: str | None,
    target_type: str | None,
    target_id: str | None,
    outcome: str,
    commitment: bytes,
) -> dict[str, Any]:
    """The leaf header as a dict; `encode_leaf` turns it into leaf bytes.

    "_v" sorts first under RFC 8785 (0x5F is below every lower-case letter),
    so the version is the first field of every leaf."""
    return {
        "_v": LEAF_VERSION,
        "tenant": tenant_id,
        "seq": seq,
        "recorded_at": format_ts(recorded_at_us),
        "id": event_id,
        "action": action,
        "category": category,
        "severity": _LABELS[severity],
        "security": bool(security),
        "actor_hash": actor_hash,
        "actor_type": actor_type,
        "target_type": target_type,
        "target_id": target_id,
        "outcome": outcome,
        "payload_commitment": commitment.hex(),
    }


def encode_leaf(header: dict[str, Any]) -> bytes:
    """The leaf bytes the Merkle tree hashes: RFC 8785 canonical JSON."""
    return canonical_json(header)


# --- the fast path ------------------------------------------------------------
# `leaf_fields` yields exactly the bytes of encode_leaf(leaf_header(...)) (a
# property test pins this) without building a dict or sorting keys: the key
# order is fixed, so the RFC 8785 text is a template. It runs once per append
# and once per verified entry, which is why it exists.

_escape = json.encoder.encode_basestring  # RFC 8785 string escaping (see canonical.py)
_TEMPLATE = (
    '{"_v":%d,"action":%s,"actor_hash":%s,"actor_type":%s,"category":%s,"id":%s,'
    '"outcome":%s,"payload_commitment":"%s","recorded_at":"%s","security":%s,"seq":%d,'
    '"severity":"%s","target_id":%s,"target_type":%s,"tenant":%s}'
)
_strings: dict[str, str] = {}


def _s(value: str | None) -> str:
    if value is None:
        return "null"
    text = _strings.get(value)
    if text is None:
        text = _escape(value)
        if len(value) <= 64 and len(_strings) < 10_000:  # small, repeating values only
            _strings[value] = text
    return text


def json_string(value: str) -> bytes:
    """`value` as the leaf writes it: a JSON string (RFC 8785), UTF-8."""
    return _escape(value).encode("utf-8", "surrogatepass")


_batch_templates: dict[tuple[str, int], str] = {}


def leaf_template(tenant_id: str, recorded_at_us: int) -> str:
    """`_TEMPLATE` with the fields every entry of one batch shares (tenant,
    recorded_at) already in place; `leaf_from_template` fills the rest."""
    key = (tenant_id, recorded_at_us)
    tmpl = _batch_templates.get(key)
    if tmpl is None:
        ts = format_ts(recorded_at_us).replace("%", "%%")
        tenant = _s(tenant_id).replace("%", "%%")
        tmpl = (
            '{"_v":' + str(LEAF_VERSION) + ',"action":%s,"actor_hash":%s,"actor_type":%s,'
            '"category":%s,"id":%s,"outcome":%s,"payload_commitment":"%s","recorded_at":"'
            + ts
            + '","security":%s,"seq":%d,"severity":"%s","target_id":%s,"target_type":%s,'
            '"tenant":' + tenant + "}"
        )
        if len(_batch_templates) > 64:
            _batch_templates.clear()
        _batch_templates[key] = tmpl
    return tmpl


def leaf_from_template(
    tmpl: str,
    seq: int,
    event_id: str | None,
    action: str,
    category: str,
    severity: int,
    security: bool,
    actor_hash: str | None,
    actor_type: str | None,
    target_type: str | None,
    target_id: str | None,
    outcome: str,
    commitment: bytes,
) -> bytes:
    """`leaf_fields` for one entry of a batch whose template is `tmpl`."""
    return (
        tmpl
        % (
            _s(action),
            _s(actor_hash),
            _s(actor_type),
            _s(category),
            _escape(event_id) if event_id is not None else "null",
            _s(outcome),
            commitment.hex(),
            "true" if security else "false",
            seq,
            _SEVERITY_LABELS[severity],
            _s(target_id),
            _s(target_type),
        )
    ).encode("utf-8", "surrogatepass")


def leaf_fields(
    tenant_id: str,
    seq: int,
    recorded_at_us: int,
    event_id: str | None,
    action: str,
    category: str,
    severity: int,
    security: bool,
    actor_hash: str | None,
    actor_type: str | None,
    target_type: str | None,
    target_id: str | None,
    outcome: str,
    commitment: bytes,
) -> bytes:
    """Leaf bytes from the stored fields; identical to
    ``encode_leaf(leaf_header(...))``. Text fields must already be validated
    (no unpaired surrogates), as every stored field is."""
    return (
        _TEMPLATE
        % (
            LEAF_VERSION,
            _s(action),
            _s(actor_hash),
            _s(actor_type),
            _s(category),
            _s(event_id),
            _s(outcome),
            commitment.hex(),
            format_ts(recorded_at_us),
            "true" if security else "false",
            seq,
            _SEVERITY_LABELS[severity],
            _s(target_id),
            _s(target_type),
            _s(tenant_id),
        )
    ).encode("utf-8", "surrogatepass")  # a tampered row must not crash verify


_SEVERITY_LABELS = tuple(s.label for s in Severity)


# --- the leaf in three parts ----------------------------------------------------
# An append knows every field of a leaf but seq and recorded_at before it
# takes the tenant's lock. `leaf_head` and `leaf_tail` are computed then, on
# the caller's thread; under the lock the leaf hash input is
#     head + leaf_middle(recorded_at)[security] + b"%d" % seq + tail,
# one bytes format per entry (`leaf_hash_input`). head starts with the
# RFC 6962 leaf prefix 0x00, so the result is hashed as it is. A property
# test pins LEAF_PREFIX + leaf_fields(...) == leaf_hash_input(...).

_HEAD_OPEN = '\x00{"_v":' + str(LEAF_VERSION) + ',"action":'


def leaf_head_start(
    action: str, actor_hash: str | None, actor_type: str | None, category: str
) -> bytes:
    """The head up to and including ``"id":`` (fields shared by many
    entries of a batch: callers cache it)."""
    return (
        f'{_HEAD_OPEN}{_s(action)},"actor_hash":{_s(actor_hash)},"actor_type":{_s(actor_type)},'
        f'"category":{_s(category)},"id":'
    ).encode("utf-8", "surrogatepass")


def leaf_after_id(outcome: str) -> bytes:
    """The head from the end of the id to the start of the commitment's hex."""
    return f',"outcome":{_s(outcome)},"payload_commitment":"'.encode("utf-8", "surrogatepass")


def leaf_head(start: bytes, event_id: str | None, outcome: str, commitment: bytes) -> bytes:
    """The leaf hash input up to the recorded_at value: `start`
    (`leaf_head_start`), the id, outcome and payload commitment."""
    eid = b"null" if event_id is None else _escape(event_id).encode("utf-8", "surrogatepass")
    return b'%b%b%b%b","recorded_at":"' % (
        start,
        eid,
        leaf_after_id(outcome),
        commitment.hex().encode("ascii"),
    )


def leaf_tail(
    severity: int, target_id: str | None, target_type: str | None, tenant_id: str
) -> bytes:
    """The leaf after the seq value."""
    before, after = leaf_tail_around(severity, target_type, tenant_id)
    return b"%b%b%b" % (before, _s(target_id).encode("utf-8", "surrogatepass"), after)


def leaf_tail_around(severity: int, target_type: str | None, tenant_id: str) -> tuple[bytes, bytes]:
    """The tail before and after the target id's JSON value: what entries
    of one tenant with the same severity and target type share (callers
    cache it; target ids mostly differ)."""
    return (
        f',"severity":"{_SEVERITY_LABELS[severity]}","target_id":'.encode("ascii"),
        f',"target_type":{_s(target_type)},"tenant":{_s(tenant_id)}}}'.encode(
            "utf-8", "surrogatepass"
        ),
    )


def leaf_middle(recorded_at_us: int) -> tuple[bytes, bytes]:
    """The part between head and seq, for security false and true."""
    ts = format_ts(recorded_at_us)
    return (
        f'{ts}","security":false,"seq":'.encode("ascii"),
        f'{ts}","security":true,"seq":'.encode("ascii"),
    )


def leaf_hash_input(
    head: bytes, middle: tuple[bytes, bytes], security: bool, seq: int, tail: bytes
) -> bytes:
    """LEAF_PREFIX + the leaf bytes, from its parts."""
    return b"%b%b%d%b" % (head, middle[1 if security else 0], seq, tail)
