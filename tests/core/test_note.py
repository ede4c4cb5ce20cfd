"""Signed notes and checkpoints (kimonaudit.core.note).

Published vectors used here, with their sources:

- C2SP signed-note example: C2SP/C2SP `signed-note.md` (c2sp.org/signed-note),
  under the C2SP repository's licence.
- Go `TestSign` vector: golang/mod `sumdb/note/note_test.go`
  (BSD-3-Clause, Copyright The Go Authors). The private key there is a
  published test key, not a secret.
"""

from __future__ import annotations

import base64
import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kimonaudit.core.note import (
    Checkpoint,
    Note,
    NoteSignature,
    Signer,
    Verifier,
    key_id,
    open_checkpoint,
    open_note,
    parse_note,
    sign_checkpoint,
    sign_note,
)
from kimonaudit.errors import ConfigError, InvalidSignature, MalformedNote

C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_TEXT = "This is an example message.\n"
C2SP_SIG_LINE = (
    "— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Z"
    "tg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)
C2SP_NOTE = C2SP_TEXT + "\n" + C2SP_SIG_LINE

GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_SIG_LINE = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2p"
    "ZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)

# Found by trying seeds bytes([i]) * 32: the first whose vkey base64 has a '+'.
PLUS_SEED = bytes([8]) * 32
PLUS_VKEY = "kimonaudit.local+07909c4f+AROY9ixtGkV8UbpqS189vS9p/KkyFiGNyJl+QWvRfZPK"

ROOT = hashlib.sha256(b"root").digest()
ROOT_B64 = base64.b64encode(ROOT).decode()


def signer(name: str = "kimonaudit.local", fill: int = 1) -> Signer:
    return Signer(name, bytes([fill]) * 32)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- published vectors ------------------------------------------------------


def test_c2sp_example_note_verifies() -> None:
    """The C2SP signed-note example opens with its published verifier key."""
    note = open_note(C2SP_NOTE, [Verifier.from_vkey(C2SP_VKEY)])
    assert note.text == C2SP_TEXT
    assert note.verified_by == (C2SP_VKEY,)
    assert [(s.name, s.key_id) for s in note.signatures] == [("example.com/foo", 0x530D903A)]


def test_go_testsign_vector_is_reproduced_exactly() -> None:
    """Signing Go's TestSign text with its skey gives its signature line byte for byte."""
    s = Signer.from_skey(GO_SKEY)
    assert s.vkey == GO_VKEY
    assert s.skey == GO_SKEY
    assert sign_note(GO_TEXT, [s]) == GO_TEXT + "\n" + GO_SIG_LINE


def test_go_vector_opens_with_its_vkey() -> None:
    """The Go vector's note verifies with the published verifier key alone."""
    note = open_note(GO_TEXT + "\n" + GO_SIG_LINE, [Verifier.from_vkey(GO_VKEY)])
    assert note.text == GO_TEXT
    assert note.verified_by == (GO_VKEY,)


def test_key_id_is_truncated_sha256_of_name_newline_alg_key() -> None:
    """key_id is SHA-256(name || 0x0A || 0x01 || pubkey)[:4], big endian."""
    v = Verifier.from_vkey(C2SP_VKEY)
    assert key_id("example.com/foo", v.public_key) == 0x530D903A
    digest = hashlib.sha256(b"n\n\x01" + bytes(32)).digest()
    assert key_id("n", bytes(32)) == struct.unpack(">I", digest[:4])[0]
    assert key_id("n", bytes(32)) != key_id("m", bytes(32))


def test_vkey_with_plus_in_base64_round_trips() -> None:
    """A vkey whose base64 contains '+' parses (split on '+' only twice)."""
    s = Signer("kimonaudit.local", PLUS_SEED)
    assert s.vkey == PLUS_VKEY
    assert "+" in PLUS_VKEY.split("+", 2)[2]
    v = Verifier.from_vkey(PLUS_VKEY)
    assert (v.name, v.key_id, v.public_key) == (s.name, s.key_id, s.public_key)
    assert v.vkey == PLUS_VKEY


# --- keys ---------------------------------------------------------------------


def test_signer_repr_hides_the_seed() -> None:
    """repr/str of a Signer show name and key id, never the private key."""
    s = Signer.from_skey(GO_SKEY)
    secret_part = GO_SKEY.split("+", 4)[4]
    for text in (repr(s), str(s)):
        assert "PeterNeumann" in text
        assert "c74f20a3" in text
        assert secret_part not in text
        assert "PRIVATE" not in text


def test_generated_signers_differ_and_sign_verifiably() -> None:
    """generate() makes a fresh key whose signatures its verifier accepts."""
    a, b = Signer.generate("x.example"), Signer.generate("x.example")
    assert a.public_key != b.public_key
    sig = a.sign(b"msg")
    assert len(sig) == 64
    assert a.verifier.verify(b"msg", sig)
    assert not a.verifier.verify(b"msh", sig)
    assert not b.verifier.verify(b"msg", sig)
    assert Signer.from_skey(a.skey) == a


@pytest.mark.parametrize("name", ["", "a b", "a+b", "tab\there", "nb\u00a0sp", "x\n"])
def test_invalid_key_names_are_rejected(name: str) -> None:
    """Key names must be non-empty, without Unicode spaces or '+'."""
    with pytest.raises(MalformedNote):
        Signer(name, bytes(32))


def test_seed_must_be_32_bytes() -> None:
    """An Ed25519 seed of the wrong length is rejected."""
    with pytest.raises(MalformedNote):
        Signer("n", bytes(31))


@pytest.mark.parametrize(
    "vkey",
    [
        "example.com/foo",
        "example.com/foo+530d903a",
        "+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530d903+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530d903g+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2",
        "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k=",
        "example.com/foo+530d903a+AukyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        "example com+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
    ],
    ids=[
        "no-parts",
        "no-key",
        "empty-name",
        "short-id",
        "non-hex-id",
        "wrong-id",
        "truncated-key",
        "bad-padding",
        "wrong-algorithm",
        "space-in-name",
    ],
)
def test_malformed_vkeys_are_rejected(vkey: str) -> None:
    """from_vkey rejects every malformed or inconsistent verifier key."""
    with pytest.raises(MalformedNote):
        Verifier.from_vkey(vkey)


@pytest.mark.parametrize(
    "skey",
    [
        GO_SKEY.replace("PRIVATE+", "PUBLIC+"),
        GO_SKEY.replace("c74f20a3", "c74f20a4"),
        GO_SKEY[:-2],
        "PRIVATE+KEY+PeterNeumann+c74f20a3",
    ],
    ids=["wrong-prefix", "wrong-id", "truncated", "no-key"],
)
def test_malformed_skeys_are_rejected_without_echoing_them(skey: str) -> None:
    """from_skey rejects bad signer keys and never puts key material in the message."""
    with pytest.raises(MalformedNote) as info:
        Signer.from_skey(skey)
    assert "AYEKFALVFGyNhPJEMzD1QIDr" not in str(info.value)


# --- signing and opening notes -----------------------------------------------------


def test_sign_then_open_with_two_signers() -> None:
    """A note signed by two keys opens with either or both verifiers."""
    a, b = signer("a.example", 1), signer("b.example", 2)
    note = sign_note("hello\n", [a, b])
    assert note.startswith("hello\n\n— a.example ")
    assert open_note(note, [b.verifier]).verified_by == (b.vkey,)
    both = open_note(note, [a.verifier, b.verifier])
    assert both.verified_by == (a.vkey, b.vkey)
    assert len(both.signatures) == 2


def test_text_with_blank_lines_splits_at_the_last_blank_line() -> None:
    """Text may contain blank lines; the signatures start after the last one."""
    s = signer()
    text = "para one\n\npara two\n"
    note = sign_note(text, [s])
    assert parse_note(note)[0] == text
    assert open_note(note, [s.verifier]).text == text


def test_parse_note_accepts_utf8_bytes() -> None:
    """parse_note takes bytes too and decodes them strictly as UTF-8."""
    text, sigs = parse_note(C2SP_NOTE.encode())
    assert text == C2SP_TEXT
    assert sigs[0].key_id == 0x530D903A
    with pytest.raises(MalformedNote, match="UTF-8"):
        parse_note(b"caf\xe9\n\n" + C2SP_SIG_LINE.encode())


@pytest.mark.parametrize(
    "text",
    ["", "\n", "\n\n", "no newline", "bell\x07\n", "tab\there\n", "lone \ud800 surrogate\n"],
    ids=["empty", "only-newline", "only-newlines", "no-final-newline", "bel", "tab", "surrogate"],
)
def test_sign_note_rejects_invalid_text(text: str) -> None:
    """sign_note refuses text that would not make a valid note."""
    with pytest.raises(MalformedNote):
        sign_note(text, [signer()])


def test_sign_note_rejects_no_duplicate_or_too_many_signers() -> None:
    """A note needs 1..100 signers, each (name, key id) once."""
    with pytest.raises(MalformedNote):
        sign_note("x\n", [])
    with pytest.raises(MalformedNote):
        sign_note("x\n", [signer(), signer()])
    many = [Signer(f"k{i}", bytes([i]) * 32) for i in range(101)]
    with pytest.raises(MalformedNote):
        sign_note("x\n", many)
    assert len(parse_note(sign_note("x\n", many[:100]))[1]) == 100


GOOD_SIG_B64 = C2SP_SIG_LINE.split(" ", 2)[2].rstrip("\n")


@pytest.mark.parametrize(
    "note",
    [
        "",
        C2SP_TEXT + C2SP_SIG_LINE,  # no blank line
        C2SP_TEXT + "\n",  # no signatures
        C2SP_TEXT + "\n" + C2SP_SIG_LINE.rstrip("\n"),  # no final newline
        "\n\n" + C2SP_SIG_LINE,  # empty text
        C2SP_TEXT + "\n" + C2SP_SIG_LINE.replace("—", "-"),  # hyphen, not em dash
        C2SP_TEXT + "\n" + C2SP_SIG_LINE.replace("— ", "—"),  # no space after dash
        C2SP_TEXT + "\n" + C2SP_SIG_LINE + "\n",  # trailing blank line
        C2SP_TEXT + "\n" + C2SP_SIG_LINE + "extra\n",  # non-signature line
        C2SP_TEXT + "\n" + f"— example.com/foo {GOOD_SIG_B64} \n",  # trailing space
        C2SP_TEXT + "\n" + f"—  example.com/foo {GOOD_SIG_B64}\n",  # empty name
        C2SP_TEXT + "\n" + "— example.com/foo\n",  # no signature
        C2SP_TEXT + "\n" + "— example.com/foo \n",  # empty signature
        C2SP_TEXT + "\n" + f"— a+b {GOOD_SIG_B64}\n",  # '+' in name
        C2SP_TEXT + "\n" + f"— example.com/foo {GOOD_SIG_B64[:-1]}\n",  # bad padding
        C2SP_TEXT + "\n" + f"— example.com/foo {GOOD_SIG_B64[:-4]}*AA=\n",  # bad alphabet
        C2SP_TEXT + "\n" + "— example.com/foo AAAAAA==\n",  # key id only, 4 bytes
        "bell\x07\n\n" + C2SP_SIG_LINE,  # control character
        C2SP_TEXT.replace("\n", "\r\n") + "\n" + C2SP_SIG_LINE,  # CR
    ],
    ids=[
        "empty",
        "no-blank-line",
        "no-signatures",
        "no-final-newline",
        "empty-text",
        "hyphen",
        "no-space-after-dash",
        "trailing-blank-line",
        "junk-line",
        "trailing-space",
        "empty-name",
        "no-signature",
        "empty-signature",
        "plus-in-name",
        "bad-padding",
        "bad-alphabet",
        "too-short",
        "control-char",
        "carriage-return",
    ],
)
def test_malformed_notes_are_rejected(note: str) -> None:
    """parse_note and open_note reject every malformed note with MalformedNote."""
    with pytest.raises(MalformedNote):
        parse_note(note)
    with pytest.raises(MalformedNote):
        open_note(note, [Verifier.from_vkey(C2SP_VKEY)])


def test_more_than_100_signature_lines_are_rejected() -> None:
    """A note with 101 signature lines is malformed (Go's limit)."""
    note = C2SP_TEXT + "\n" + C2SP_SIG_LINE * 101
    with pytest.raises(MalformedNote, match="100"):
        parse_note(note)
    assert len(parse_note(C2SP_TEXT + "\n" + C2SP_SIG_LINE * 100)[1]) == 100


def test_unknown_signer_only_is_invalid_signature() -> None:
    """A note signed only by keys we do not trust is rejected."""
    with pytest.raises(InvalidSignature, match="trusted"):
        open_note(C2SP_NOTE, [signer().verifier])
    with pytest.raises(InvalidSignature):
        open_note(C2SP_NOTE, [])


def test_unknown_signatures_are_ignored_next_to_a_good_one() -> None:
    """Signatures from unknown keys do not stop a note with a trusted one."""
    s = signer()
    note = sign_note(C2SP_TEXT, [s]) + C2SP_SIG_LINE.replace("Uw2Q", "AAAA")
    opened = open_note(note, [s.verifier])
    assert opened.verified_by == (s.vkey,)
    assert len(opened.signatures) == 2


def test_tampered_text_is_invalid_signature() -> None:
    """Changing one character of the text makes the known signature fail."""
    note = C2SP_NOTE.replace("example message", "example massage")
    with pytest.raises(InvalidSignature, match=r"example\.com/foo"):
        open_note(note, [Verifier.from_vkey(C2SP_VKEY)])


def test_tampered_signature_is_invalid_signature() -> None:
    """Flipping a bit of the signature (key id intact) fails verification."""
    text, (sig,) = parse_note(C2SP_NOTE)
    bad = NoteSignature(sig.name, sig.key_id, bytes([sig.signature[0] ^ 1]) + sig.signature[1:])
    with pytest.raises(InvalidSignature):
        open_note(text + "\n" + bad.to_line(), [Verifier.from_vkey(C2SP_VKEY)])


def test_truncated_signature_from_known_key_is_invalid_signature() -> None:
    """A known key's signature of the wrong length fails rather than being skipped."""
    text, (sig,) = parse_note(C2SP_NOTE)
    short = NoteSignature(sig.name, sig.key_id, sig.signature[:10])
    with pytest.raises(InvalidSignature):
        open_note(text + "\n" + short.to_line(), [Verifier.from_vkey(C2SP_VKEY)])


def test_bad_signature_from_known_key_rejects_even_with_a_good_one() -> None:
    """A failing signature from a known key rejects the whole note."""
    a, b = signer("a.example", 1), signer("b.example", 2)
    note = sign_note("x\n", [a, b])
    forged_b = NoteSignature(b.name, b.key_id, bytes(64)).to_line()
    tampered = note.split("— b.example")[0] + forged_b
    with pytest.raises(InvalidSignature, match=r"b\.example"):
        open_note(tampered, [a.verifier, b.verifier])
    assert open_note(tampered, [a.verifier]).verified_by == (a.vkey,)


def test_wrong_key_id_means_unknown_key() -> None:
    """A signature with the right name but another key id is ignored, so the
    note has no trusted signature."""
    text, (sig,) = parse_note(C2SP_NOTE)
    other = NoteSignature(sig.name, sig.key_id ^ 1, sig.signature)
    with pytest.raises(InvalidSignature, match="trusted"):
        open_note(text + "\n" + other.to_line(), [Verifier.from_vkey(C2SP_VKEY)])


def test_same_name_other_key_does_not_verify() -> None:
    """A verifier with the same name but a different key is not trusted for it."""
    impostor = Signer("example.com/foo", bytes([9]) * 32)
    note = sign_note(C2SP_TEXT, [impostor])
    with pytest.raises(InvalidSignature):
        open_note(note, [Verifier.from_vkey(C2SP_VKEY)])


def test_ambiguous_trusted_keys_are_a_config_error() -> None:
    """Two different trusted keys claiming one (name, key id) are refused."""
    real = Verifier.from_vkey(C2SP_VKEY)
    clash = Verifier("example.com/foo", bytes([7]) * 32)
    object.__setattr__(clash, "key_id", real.key_id)
    with pytest.raises(ConfigError):
        open_note(C2SP_NOTE, [real, clash])
    assert open_note(C2SP_NOTE, [real, real]).verified_by == (C2SP_VKEY,)


def test_open_returns_note_value() -> None:
    """open_note returns a frozen Note value."""
    note = open_note(C2SP_NOTE, [Verifier.from_vkey(C2SP_VKEY)])
    assert isinstance(note, Note)
    with pytest.raises(AttributeError):
        note.text = "x"  # type: ignore[misc]


# --- checkpoints -------------------------------------------------------------------


def test_checkpoint_text_format() -> None:
    """to_text is origin, size, base64 root and extensions, each ending in a newline."""
    cp = Checkpoint("kimonaudit.local/tenants/t1", 20852163, ROOT, ("ext one",))
    assert cp.to_text() == f"kimonaudit.local/tenants/t1\n20852163\n{ROOT_B64}\next one\n"
    assert Checkpoint.parse(cp.to_text()) == cp


def test_c2sp_checkpoint_example_text_parses() -> None:
    """The body of the C2SP tlog-checkpoint example parses and round-trips."""
    text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    cp = Checkpoint.parse(text)
    assert (cp.origin, cp.size, cp.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert cp.to_text() == text


def test_empty_tree_checkpoint() -> None:
    """Size 0 is written and read as "0"."""
    empty_root = hashlib.sha256(b"").digest()
    cp = Checkpoint("o", 0, empty_root)
    assert cp.to_text().split("\n")[1] == "0"
    assert Checkpoint.parse(cp.to_text()).size == 0


def test_sign_and_open_checkpoint() -> None:
    """A signed checkpoint opens to the same checkpoint with its note."""
    s = signer()
    cp = Checkpoint("kimonaudit.local/tenants/acme", 7, ROOT)
    cp2, note = open_checkpoint(sign_checkpoint(cp, [s]), [s.verifier])
    assert cp2 == cp
    assert note.verified_by == (s.vkey,)


def test_checkpoint_with_tampered_size_fails() -> None:
    """Changing the size in a signed checkpoint breaks its signature."""
    s = signer()
    signed = sign_checkpoint(Checkpoint("o", 7, ROOT), [s])
    with pytest.raises(InvalidSignature):
        open_checkpoint(signed.replace("\n7\n", "\n8\n", 1), [s.verifier])


def test_signed_note_that_is_not_a_checkpoint_is_malformed() -> None:
    """open_checkpoint rejects a validly signed note whose text is no checkpoint."""
    s = signer()
    with pytest.raises(MalformedNote):
        open_checkpoint(sign_note("just text\n", [s]), [s.verifier])


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        (f"o\n01\n{ROOT_B64}\n", "leading zeros"),
        (f"o\n00\n{ROOT_B64}\n", "leading zeros"),
        (f"o\n-1\n{ROOT_B64}\n", "decimal"),
        (f"o\n+1\n{ROOT_B64}\n", "decimal"),
        (f"o\n 1\n{ROOT_B64}\n", "decimal"),
        (f"o\n1.0\n{ROOT_B64}\n", "decimal"),
        (f"o\n\u0661\n{ROOT_B64}\n", "decimal"),
        (f"o\n\n{ROOT_B64}\n", "decimal"),
        (f"o\n{2**64}\n{ROOT_B64}\n", "2\\*\\*64"),
        (f"o\n{'9' * 5000}\n{ROOT_B64}\n", "decimal"),
        (f"o\n1\n{ROOT_B64}", "newline"),
        ("o\n1\n", "origin, size and root"),
        (f"\n1\n{ROOT_B64}\n", "origin"),
        (f" o\n1\n{ROOT_B64}\n", "whitespace"),
        (f"o\n1\n{ROOT_B64[:-1]}\n", "base64"),
        (f"o\n1\n{ROOT_B64.rstrip('=')}\n", "base64"),
        (f"o\n1\n{ROOT_B64} \n", "base64"),
        (f"o\n1\n{ROOT_B64[:-2]}B=\n", "base64"),  # non-zero padding bits
        (f"o\n1\n{b64(ROOT[:31])}\n", "31 bytes"),
        (f"o\n1\n{b64(ROOT + b'x')}\n", "33 bytes"),
        (f"o\n1\n{ROOT_B64}\n\n", "extension line 1 is empty"),
        (f"o\n1\n{ROOT_B64}\next\x01\n", "control"),
        (f"o\r\n1\n{ROOT_B64}\n", "control"),
    ],
    ids=[
        "size-leading-zero",
        "size-00",
        "size-negative",
        "size-plus",
        "size-space",
        "size-float",
        "size-arabic-digit",
        "size-empty",
        "size-too-big",
        "size-huge",
        "missing-final-newline",
        "missing-root",
        "empty-origin",
        "origin-leading-space",
        "root-bad-padding",
        "root-no-padding",
        "root-trailing-space",
        "root-non-canonical",
        "root-short",
        "root-long",
        "empty-extension",
        "control-in-extension",
        "carriage-return",
    ],
)
def test_malformed_checkpoints_are_rejected(text: str, complaint: str) -> None:
    """Checkpoint.parse is strict and its message names what is wrong."""
    with pytest.raises(MalformedNote, match=complaint):
        Checkpoint.parse(text)


def test_checkpoint_constructor_validates_fields() -> None:
    """A Checkpoint cannot be built with values that would not serialise."""
    for bad in (
        lambda: Checkpoint("", 1, ROOT),
        lambda: Checkpoint("a\nb", 1, ROOT),
        lambda: Checkpoint("o", -1, ROOT),
        lambda: Checkpoint("o", True, ROOT),
        lambda: Checkpoint("o", 1, ROOT[:16]),
        lambda: Checkpoint("o", 1, ROOT, ("",)),
        lambda: Checkpoint("o", 1, ROOT, ("a\nb",)),
    ):
        with pytest.raises(MalformedNote):
            bad()


# --- properties --------------------------------------------------------------------

_line_chars = st.characters(
    blacklist_categories=("Cc", "Cs"),
)
origins = st.text(_line_chars, min_size=1, max_size=40).filter(lambda s: s == s.strip())
extensions = st.lists(st.text(_line_chars, min_size=1, max_size=30), max_size=3).map(tuple)
checkpoints = st.builds(
    Checkpoint,
    origin=origins,
    size=st.integers(min_value=0, max_value=2**64 - 1),
    root_hash=st.binary(min_size=32, max_size=32),
    extensions=extensions,
)
key_names = st.text(
    st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), min_size=1, max_size=20
).filter(lambda s: "+" not in s and not any(c.isspace() for c in s))


@settings(max_examples=200)
@given(checkpoints)
def test_checkpoint_text_round_trip(cp: Checkpoint) -> None:
    """parse(to_text(cp)) == cp and to_text(parse(t)) == t for any checkpoint."""
    text = cp.to_text()
    assert Checkpoint.parse(text) == cp
    assert Checkpoint.parse(text).to_text() == text


@settings(max_examples=40, deadline=None)
@given(cp=checkpoints, name=key_names, seed=st.binary(min_size=32, max_size=32))
def test_checkpoint_sign_open_round_trip(cp: Checkpoint, name: str, seed: bytes) -> None:
    """Any checkpoint signed by any valid key opens to itself with that key."""
    s = Signer(name, seed)
    opened, note = open_checkpoint(sign_checkpoint(cp, [s]), [Verifier.from_vkey(s.vkey)])
    assert opened == cp
    assert note.verified_by == (s.vkey,)


@settings(max_examples=40, deadline=None)
@given(name=key_names, seed=st.binary(min_size=32, max_size=32))
def test_key_encodings_round_trip(name: str, seed: bytes) -> None:
    """vkey and skey parse back to the same key for any valid name and seed."""
    s = Signer(name, seed)
    assert Signer.from_skey(s.skey) == s
    v = Verifier.from_vkey(s.vkey)
    assert (v.name, v.key_id, v.public_key) == (s.name, s.key_id, s.public_key)
