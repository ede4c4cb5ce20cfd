"""C2SP signed notes (c2sp.org/signed-note) and tlog checkpoints
(c2sp.org/tlog-checkpoint), Ed25519 only.

A signed note is a text ending in a newline, a blank line, then one line per
signature: ``— <key name> base64(uint32 key id BE || signature)``. A checkpoint
is a note whose text is ``origin\\nsize\\nbase64(root)\\n`` plus optional
extension lines. Keys are exchanged in the Go ``golang.org/x/mod/sumdb/note``
encodings, so Go's verifier accepts what we sign and vice versa:

- verifier key ``<name>+<8 hex key id>+base64(0x01 || public key)``
- signer key ``PRIVATE+KEY+<name>+<8 hex key id>+base64(0x01 || seed)``

Every format problem (note, checkpoint, key name, vkey, skey) raises
`MalformedNote`; a signature that does not verify raises `InvalidSignature`.
Error messages never echo secret key material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature as _CryptoInvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kimonaudit.errors import ConfigError, InvalidSignature, MalformedNote

__all__ = [
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "Checkpoint",
    "Note",
    "NoteSignature",
    "Signer",
    "Verifier",
    "key_id",
    "open_checkpoint",
    "open_note",
    "parse_note",
    "sign_checkpoint",
    "sign_note",
]

ALG_ED25519 = 0x01
# The spec says verifiers MUST accept at least 16; 100 is Go's limit, so a
# note Go accepts we accept too.
MAX_SIGNATURES = 100
SIG_PREFIX = "\u2014 "  # em dash, space
_MAX_TREE_SIZE = 2**64 - 1  # RFC 6962 tree sizes are uint64
_SIZE_RE = re.compile(r"0|[1-9][0-9]*")
_HEX8_RE = re.compile(r"[0-9a-fA-F]{8}")
_B64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}")


# --------------------------------------------------------------------------
# small helpers


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode_canonical(text: str) -> bytes | None:
    """Standard base64 (RFC 4648 section 4) in its one canonical spelling, or None.

    Requiring the canonical form (padding present, unused bits zero) means a
    parsed value always serialises back to the same text.
    """
    if not _B64_RE.fullmatch(text) or len(text) % 4:
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if _b64encode(data) == text else None


def _is_valid_name(name: str) -> bool:
    # str.isspace covers the Unicode White_Space set Go's unicode.IsSpace uses.
    return (
        name != ""
        and "+" not in name
        and not any(ch.isspace() for ch in name)
        and not _has_control(name)
        and _is_utf8_encodable(name)
    )


def _check_name(name: object, what: str = "key name") -> str:
    if not isinstance(name, str) or not _is_valid_name(name):
        raise MalformedNote(
            f"{what} must be non-empty text without spaces, '+' or control characters"
        )
    return name


def _has_control(text: str) -> bool:
    return any(ord(ch) < 0x20 and ch != "\n" for ch in text)


def _is_utf8_encodable(text: str) -> bool:
    # A Python str can hold lone surrogates, which have no UTF-8 encoding.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_note_text(text: str, what: str = "note text") -> None:
    if not _is_utf8_encodable(text):
        raise MalformedNote(f"{what} is not valid UTF-8")
    if _has_control(text):
        raise MalformedNote(f"{what} contains a control character other than newline")


def key_id(name: str, public_key: bytes) -> int:
    """Key id recommended by c2sp.org/signed-note for an Ed25519 key:
    the first 4 bytes (big endian) of SHA-256(name || 0x0A || 0x01 || key)."""
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key
    ).digest()
    value: int = struct.unpack(">I", digest[:4])[0]
    return value


# --------------------------------------------------------------------------
# keys


class Signer:
    """An Ed25519 note signer. Holds the private seed: repr never shows it."""

    __slots__ = ("_private", "_seed", "key_id", "name", "public_key")

    name: str
    key_id: int
    public_key: bytes

    def __init__(self, name: str, seed: bytes) -> None:
        _check_name(name)
        if not isinstance(seed, bytes | bytearray) or len(seed) != 32:
            raise MalformedNote("an Ed25519 signing seed must be 32 bytes")
        self.name = name
        self._seed = bytes(seed)
        self._private = Ed25519PrivateKey.from_private_bytes(self._seed)
        self.public_key = self._private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.key_id = key_id(name, self.public_key)

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A new signer with a fresh random seed."""
        seed = Ed25519PrivateKey.generate().private_bytes_raw()
        return cls(name, seed)

    @classmethod
    def from_skey(cls, skey: str) -> Signer:
        """Parse a Go-format signer key ``PRIVATE+KEY+name+hexid+base64(0x01||seed)``."""
        if not isinstance(skey, str):
            raise MalformedNote("signer key must be text")
        # The base64 part may itself contain '+', so split at most 4 times.
        parts = skey.split("+", 4)
        if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
            raise MalformedNote("signer key must look like PRIVATE+KEY+<name>+<id>+<key>")
        _, _, name, hex_id, b64 = parts
        _check_name(name, "signer key name")
        if not _HEX8_RE.fullmatch(hex_id):
            raise MalformedNote("signer key id must be 8 hex digits")
        raw = _b64decode_canonical(b64)
        if raw is None or len(raw) != 33:
            raise MalformedNote("signer key material is not base64 of 33 bytes")
        if raw[0] != ALG_ED25519:
            raise MalformedNote("signer key algorithm is not Ed25519 (0x01)")
        signer = cls(name, raw[1:])
        if signer.key_id != int(hex_id, 16):
            raise MalformedNote("signer key id does not match the key")
        return signer

    @property
    def vkey(self) -> str:
        return _format_vkey(self.name, self.key_id, self.public_key)

    @property
    def skey(self) -> str:
        """The private key in Go's note encoding. Secret: never log it."""
        material = _b64encode(bytes([ALG_ED25519]) + self._seed)
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{material}"

    @property
    def verifier(self) -> Verifier:
        return Verifier(self.name, self.public_key)

    def sign(self, message: bytes) -> bytes:
        """Raw 64-byte Ed25519 signature (RFC 8032, deterministic)."""
        return self._private.sign(message)

    def __repr__(self) -> str:
        return f"Signer(name={self.name!r}, key_id=0x{self.key_id:08x})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Signer):
            return NotImplemented
        return self.name == other.name and self.public_key == other.public_key

    def __hash__(self) -> int:
        return hash((self.name, self.public_key))


def _format_vkey(name: str, kid: int, public_key: bytes) -> str:
    return f"{name}+{kid:08x}+{_b64encode(bytes([ALG_ED25519]) + public_key)}"


@dataclass(frozen=True)
class Verifier:
    """An Ed25519 note verifier; `key_id` is derived from name and key."""

    name: str
    public_key: bytes
    key_id: int = field(init=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != 32:
            raise MalformedNote("an Ed25519 public key must be 32 bytes")
        object.__setattr__(self, "key_id", key_id(self.name, self.public_key))

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """Parse ``<name>+<8 hex id>+base64(0x01 || public key)``."""
        if not isinstance(vkey, str):
            raise MalformedNote("verifier key must be text")
        # Names cannot contain '+', the base64 part can: split twice from the left.
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise MalformedNote(f"verifier key {vkey!r} must look like <name>+<id>+<key>")
        name, hex_id, b64 = parts
        _check_name(name, "verifier key name")
        if not _HEX8_RE.fullmatch(hex_id):
            raise MalformedNote(f"verifier key id {hex_id!r} must be 8 hex digits")
        raw = _b64decode_canonical(b64)
        if raw is None or len(raw) != 33:
            raise MalformedNote("verifier key material is not base64 of 33 bytes")
        if raw[0] != ALG_ED25519:
            raise MalformedNote("verifier key algorithm is not Ed25519 (0x01)")
        verifier = cls(name, raw[1:])
        if verifier.key_id != int(hex_id, 16):
            raise MalformedNote(f"verifier key id {hex_id} does not match the key")
        return verifier

    @property
    def vkey(self) -> str:
        return _format_vkey(self.name, self.key_id, self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        if len(signature) != 64:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (_CryptoInvalidSignature, ValueError):
            return False
        return True


# --------------------------------------------------------------------------
# notes


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: int
    signature: bytes  # the raw signature, without the 4-byte key id

    def to_line(self) -> str:
        blob = struct.pack(">I", self.key_id) + self.signature
        return f"{SIG_PREFIX}{self.name} {_b64encode(blob)}\n"


@dataclass(frozen=True)
class Note:
    """An opened (verified) note.

    `signatures` lists every signature line in note order, including those
    from unknown keys (which were ignored, as the spec requires);
    `verified_by` holds the vkeys of the known verifiers whose signature
    verified, in note order, without repeats (never empty).
    """

    text: str
    signatures: tuple[NoteSignature, ...]
    verified_by: tuple[str, ...]


def sign_note(text: str, signers: Sequence[Signer]) -> str:
    """Sign `text` (non-empty, ending in a newline) with every signer."""
    if not isinstance(text, str) or not text.strip("\n"):
        raise MalformedNote("note text must not be empty")
    if not text.endswith("\n"):
        raise MalformedNote("note text must end with a newline")
    _check_note_text(text)
    if not signers:
        raise MalformedNote("a signed note needs at least one signer")
    if len(signers) > MAX_SIGNATURES:
        raise MalformedNote(f"a note carries at most {MAX_SIGNATURES} signatures")
    seen: set[tuple[str, int]] = set()
    message = text.encode("utf-8")
    lines = []
    for signer in signers:
        ident = (signer.name, signer.key_id)
        if ident in seen:
            raise MalformedNote(f"signer {signer.name}+{signer.key_id:08x} is given twice")
        seen.add(ident)
        lines.append(NoteSignature(signer.name, signer.key_id, signer.sign(message)).to_line())
    return text + "\n" + "".join(lines)


def parse_note(note: str | bytes) -> tuple[str, tuple[NoteSignature, ...]]:
    """Split a signed note into its text and signatures without verifying them."""
    if isinstance(note, bytes | bytearray):
        try:
            note = bytes(note).decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedNote("note is not valid UTF-8") from None
    if not isinstance(note, str):
        raise MalformedNote("note must be text")
    _check_note_text(note, "note")
    # The text ends at the *last* blank line; the text itself may contain some.
    split = note.rfind("\n\n")
    if split < 0:
        raise MalformedNote("note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not text.strip("\n"):
        raise MalformedNote("note text must not be empty")
    if not block:
        raise MalformedNote("note has no signature lines")
    if not block.endswith("\n"):
        raise MalformedNote("note must end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"note has more than {MAX_SIGNATURES} signatures")
    return text, tuple(_parse_signature_line(i, line) for i, line in enumerate(lines, 1))


def _parse_signature_line(number: int, line: str) -> NoteSignature:
    where = f"signature line {number}"
    if not line.startswith(SIG_PREFIX):
        raise MalformedNote(f"{where} does not start with an em dash and a space")
    name, sep, b64 = line[len(SIG_PREFIX) :].partition(" ")
    if not sep:
        raise MalformedNote(f"{where} has no space between key name and signature")
    if not _is_valid_name(name):
        raise MalformedNote(f"{where} has an invalid key name")
    blob = _b64decode_canonical(b64)
    if blob is None:
        raise MalformedNote(f"{where}: signature is not canonical standard base64")
    if len(blob) < 5:
        raise MalformedNote(f"{where}: signature is shorter than a key id plus one byte")
    kid: int = struct.unpack(">I", blob[:4])[0]
    return NoteSignature(name, kid, blob[4:])


def open_note(note: str | bytes, verifiers: Sequence[Verifier]) -> Note:
    """Parse `note` and check it against the trusted `verifiers`.

    Signatures whose (name, key id) match no verifier are ignored. Every
    signature that does match must verify, and at least one must exist.
    """
    text, signatures = parse_note(note)
    known = _index_verifiers(verifiers)
    message = text.encode("utf-8")
    verified: list[str] = []
    for sig in signatures:
        verifier = known.get((sig.name, sig.key_id))
        if verifier is None:
            continue
        if not verifier.verify(message, sig.signature):
            raise InvalidSignature(
                f"signature by {sig.name}+{sig.key_id:08x} does not verify: "
                "the note was altered or not signed by this key"
            )
        if verifier.vkey not in verified:
            verified.append(verifier.vkey)
    if not verified:
        raise InvalidSignature("note has no signature from a trusted key")
    return Note(text=text, signatures=signatures, verified_by=tuple(verified))


def _index_verifiers(verifiers: Sequence[Verifier]) -> dict[tuple[str, int], Verifier]:
    known: dict[tuple[str, int], Verifier] = {}
    for verifier in verifiers:
        ident = (verifier.name, verifier.key_id)
        other = known.setdefault(ident, verifier)
        if other.public_key != verifier.public_key:
            # Two trusted keys share name and id: someone tampered with the
            # trust list, or a key id collided. Either way, do not guess.
            raise ConfigError(f"two different trusted keys share the id {ident[0]}+{ident[1]:08x}")
    return known


# --------------------------------------------------------------------------
# checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint body. Construction validates every field."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        origin = self.origin
        if not isinstance(origin, str) or not origin:
            raise MalformedNote("checkpoint origin must not be empty")
        if "\n" in origin or _has_control(origin) or not _is_utf8_encodable(origin):
            raise MalformedNote("checkpoint origin contains a newline or control character")
        if origin != origin.strip():
            raise MalformedNote("checkpoint origin has leading or trailing whitespace")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise MalformedNote("checkpoint size must be an integer")
        if not 0 <= self.size <= _MAX_TREE_SIZE:
            raise MalformedNote("checkpoint size must be between 0 and 2**64-1")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != 32:
            raise MalformedNote("checkpoint root hash must be 32 bytes")
        if not isinstance(self.extensions, tuple):
            raise MalformedNote("checkpoint extensions must be a tuple of lines")
        for i, ext in enumerate(self.extensions, 1):
            if not isinstance(ext, str) or not ext:
                raise MalformedNote(f"checkpoint extension line {i} is empty")
            if "\n" in ext or _has_control(ext) or not _is_utf8_encodable(ext):
                raise MalformedNote(
                    f"checkpoint extension line {i} contains a newline or control character"
                )

    def to_text(self) -> str:
        lines = [self.origin, str(self.size), _b64encode(self.root_hash), *self.extensions]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        if not isinstance(text, str):
            raise MalformedNote("checkpoint must be text")
        if not text.endswith("\n"):
            raise MalformedNote("checkpoint text must end with a newline")
        _check_note_text(text, "checkpoint text")
        lines = text[:-1].split("\n")
        if len(lines) < 3:
            raise MalformedNote("checkpoint needs origin, size and root hash lines")
        origin, size_text, root_text, *extensions = lines
        # 20 digits hold any uint64; the cap also keeps int() away from huge input.
        if len(size_text) > 20 or not _SIZE_RE.fullmatch(size_text):
            raise MalformedNote(
                f"checkpoint size {size_text!r} is not a decimal without leading zeros"
            )
        root = _b64decode_canonical(root_text)
        if root is None:
            raise MalformedNote("checkpoint root hash is not canonical standard base64")
        if len(root) != 32:
            raise MalformedNote(f"checkpoint root hash is {len(root)} bytes, not 32")
        return cls(origin, int(size_text), root, tuple(extensions))


def sign_checkpoint(cp: Checkpoint, signers: Sequence[Signer]) -> str:
    return sign_note(cp.to_text(), signers)


def open_checkpoint(note: str | bytes, verifiers: Sequence[Verifier]) -> tuple[Checkpoint, Note]:
    """Verify a signed checkpoint and parse its body (only after it verified)."""
    opened = open_note(note, verifiers)
    return Checkpoint.parse(opened.text), opened
