"""Verifiable archives (issue 8): the bundle format, its signed manifest
and its offline check. Pure: no database, no files; docs/bundles.md
describes the format for checking with other tools.

A bundle is the RFC 8785 canonical JSON of one object, then a newline.
Three things bind every byte:

1. the file must be exactly the canonical encoding of what it parses to
   (so no byte can change without changing the content);
2. `checkpoint` is a signed note (C2SP tlog-checkpoint) and each entry's
   leaf proves into it: by an RFC 9162 inclusion proof (mode "proofs"), or,
   in mode "range", by rebuilding the tree from the compact range of any
   purged prefix and every leaf after it;
3. `signature` is a signed note by the same key over SHA-256 of the
   canonical JSON of everything else, which covers the fields no proof
   reaches (query, time, redaction reasons, keys).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kimonaudit.core.canonical import canonical_json
from kimonaudit.core.leaf import PAYLOAD_COMMITMENT_PREFIX, SALT_BYTES
from kimonaudit.core.merkle import CompactRange, leaf_hash, verify_inclusion
from kimonaudit.core.note import Signer, Verifier, open_checkpoint, open_note, sign_note
from kimonaudit.errors import AuditLogError

FORMAT = "kimonaudit-bundle"
VERSION = 1
MANIFEST_HEADER = f"{FORMAT}/v{VERSION}"
MODES = ("proofs", "range")
_TOP = {
    "format",
    "version",
    "origin",
    "tenant_id",
    "query",
    "created_at",
    "verifier_keys",
    "checkpoint",
    "mode",
    "prefix",
    "entries",
    "signature",
}
_ENTRY = {"seq", "leaf", "payload", "salt", "proof", "redaction"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def manifest_text(origin: str, body: dict[str, Any]) -> str:
    """The signed note text over a bundle `body` (the bundle without its
    `signature`): header, origin, base64 SHA-256 of the canonical body."""
    digest = hashlib.sha256(canonical_json(body)).digest()
    return f"{MANIFEST_HEADER}\n{origin}\n{b64(digest)}\n"


def seal(body: dict[str, Any], signer: Signer) -> bytes:
    """The bundle file's bytes: `body` plus its manifest signature."""
    note = sign_note(manifest_text(body["origin"], body), [signer])
    return canonical_json({**body, "signature": note}) + b"\n"


@dataclass(frozen=True)
class BundleReport:
    ok: bool
    origin: str | None = None
    tree_size: int | None = None
    mode: str | None = None
    query: str | None = None
    entries: int = 0
    redacted: int = 0
    purged_prefix: int = 0
    key_source: str = "given"  # "given" (--vkey) or "bundle" (the keys inside it)
    problems: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "origin": self.origin,
            "tree_size": self.tree_size,
            "mode": self.mode,
            "query": self.query,
            "entries": self.entries,
            "redacted": self.redacted,
            "purged_prefix": self.purged_prefix,
            "key_source": self.key_source,
            "problems": list(self.problems),
        }


class _Bad(Exception):
    pass


def _need(cond: bool, message: str) -> None:
    if not cond:
        raise _Bad(message)


def _bytes(value: object, what: str) -> bytes:
    _need(isinstance(value, str), f"{what} is not base64 text")
    assert isinstance(value, str)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _Bad(f"{what} is not valid base64") from None
    _need(b64(raw) == value, f"{what} is not canonical base64")
    return raw


def _int(value: object, what: str) -> int:
    _need(isinstance(value, int) and not isinstance(value, bool) and value >= 0, what)
    assert isinstance(value, int)
    return value


def verify_bundle(data: bytes, trusted_vkeys: Sequence[str] | None = None) -> BundleReport:
    """Check a bundle file's bytes offline. With `trusted_vkeys` the
    signatures must be by one of them; without, by a key the bundle itself
    lists (which proves integrity, not who made it)."""
    source = "bundle" if not trusted_vkeys else "given"
    try:
        return _verify(data, trusted_vkeys, source)
    except _Bad as exc:
        return BundleReport(False, key_source=source, problems=(str(exc),))
    except AuditLogError as exc:
        return BundleReport(False, key_source=source, problems=(exc.message,))
    except ValueError as exc:  # e.g. a compact range with the wrong number of hashes
        return BundleReport(False, key_source=source, problems=(str(exc),))


def _verify(data: bytes, trusted: Sequence[str] | None, source: str) -> BundleReport:
    _need(data.endswith(b"\n"), "the file does not end with a newline (truncated?)")
    try:
        doc = json.loads(data[:-1].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Bad(f"not a bundle: the file is not UTF-8 JSON ({exc})") from None
    _need(isinstance(doc, dict), "not a bundle: the JSON is not an object")
    _need(doc.get("format") == FORMAT, f"not a bundle: format is not {FORMAT!r}")
    _need(doc.get("version") == VERSION, f"unsupported bundle version {doc.get('version')!r}")
    _need(set(doc) == _TOP, f"unexpected or missing fields: {sorted(set(doc) ^ _TOP)}")
    try:
        canonical = canonical_json(doc)
    except AuditLogError as exc:
        raise _Bad(f"not canonical JSON: {exc.message}") from None
    _need(
        canonical == data[:-1],
        "the file is not in its canonical form: a byte was changed or it was re-formatted",
    )
    origin, tenant_id = doc["origin"], doc["tenant_id"]
    _need(isinstance(origin, str) and isinstance(tenant_id, str), "origin and tenant_id are text")
    _need(origin.endswith(f"/tenants/{tenant_id}"), "origin does not name the bundle's tenant")
    keys = trusted if trusted else doc["verifier_keys"]
    _need(isinstance(keys, list | tuple) and len(keys) > 0, "no verifier keys")
    verifiers = [Verifier.from_vkey(k) for k in keys]

    # The manifest signature covers every field, before anything else is trusted.
    body = {k: v for k, v in doc.items() if k != "signature"}
    manifest = open_note(doc["signature"], verifiers)
    _need(
        manifest.text == manifest_text(origin, body),
        "the manifest signature does not cover this content: the bundle was altered",
    )
    cp, _ = open_checkpoint(doc["checkpoint"], verifiers)
    _need(cp.origin == origin, f"the checkpoint is for {cp.origin!r}, not {origin!r}")

    mode = doc["mode"]
    _need(mode in MODES, f"unknown mode {mode!r}")
    entries = doc["entries"]
    _need(isinstance(entries, list), "entries is not a list")
    prefix = doc["prefix"]
    _need(isinstance(prefix, dict) and set(prefix) == {"size", "hashes"}, "bad prefix")
    p_size = _int(prefix["size"], "prefix.size is not a size")
    p_hashes = prefix["hashes"]
    _need(isinstance(p_hashes, list), "prefix.hashes is not a list")
    tree = (
        CompactRange(p_size, [_bytes(h, "a prefix hash") for h in p_hashes])
        if mode == "range"
        else None
    )
    if tree is None:
        _need(p_size == 0 and not p_hashes, "a prefix belongs to range mode only")
    redacted = 0
    last = -1
    for n, e in enumerate(entries):
        _need(isinstance(e, dict) and set(e) <= _ENTRY, f"entry {n}: unexpected fields")
        _need({"seq", "leaf", "payload", "salt"} <= set(e), f"entry {n}: missing fields")
        seq = _int(e["seq"], f"entry {n}: seq is not a number")
        _need(seq > last, f"entry {n}: seq {seq} is out of order or repeated")
        _need(seq < cp.size, f"entry {seq} lies beyond the checkpoint's tree size {cp.size}")
        last = seq
        leaf = _bytes(e["leaf"], f"entry {seq}: leaf")
        try:
            header = json.loads(leaf)
        except ValueError:
            raise _Bad(f"entry {seq}: the leaf is not JSON") from None
        _need(isinstance(header, dict), f"entry {seq}: the leaf is not a JSON object")
        _need(header.get("seq") == seq, f"entry {seq}: the leaf names seq {header.get('seq')}")
        _need(header.get("tenant") == tenant_id, f"entry {seq}: the leaf is another tenant's")
        if e["payload"] is None and e["salt"] is None:
            redacted += 1
        else:
            payload = _bytes(e["payload"], f"entry {seq}: payload")
            salt = _bytes(e["salt"], f"entry {seq}: salt")
            _need(len(salt) == SALT_BYTES, f"entry {seq}: the salt is not {SALT_BYTES} bytes")
            commitment = hashlib.sha256(PAYLOAD_COMMITMENT_PREFIX + salt + payload).hexdigest()
            _need(
                commitment == header.get("payload_commitment"),
                f"entry {seq}: the payload does not match the leaf's commitment",
            )
        lh = leaf_hash(leaf)
        if tree is None:
            _need("proof" in e, f"entry {seq}: no inclusion proof")
            proof = e["proof"]
            _need(isinstance(proof, list), f"entry {seq}: proof is not a list")
            hashes = [_bytes(h, f"entry {seq}: proof hash") for h in proof]
            verify_inclusion(lh, seq, cp.size, hashes, cp.root_hash)
        else:
            _need("proof" not in e, f"entry {seq}: range mode carries no proofs")
            _need(seq == tree.size, f"entries {tree.size}..{seq - 1} are missing")
            tree.append(lh)
    if tree is not None:
        _need(tree.size == cp.size, f"entries {tree.size}..{cp.size - 1} are missing")
        _need(
            tree.root() == cp.root_hash,
            "the entries do not rebuild the checkpoint's root: a leaf or prefix hash was changed",
        )
    return BundleReport(
        True,
        origin=origin,
        tree_size=cp.size,
        mode=mode,
        query=doc["query"] if isinstance(doc["query"], str) else None,
        entries=len(entries),
        redacted=redacted,
        purged_prefix=p_size,
        key_source=source,
    )
