"""The deployment key file: signing keys and the actor secret, on disk.

One small JSON document, written atomically with mode 0600::

    {
      "_warning": "SECRET ...",
      "format": "kimonaudit-keys/1",
      "name": "kimonaudit.local",
      "actor_secret": "<base64 of 32 random bytes>",
      "active": {"skey": "PRIVATE+KEY+<name>+<id>+<key>", "created_at": "...Z"},
      "retired": [{"vkey": "<name>+<id>+<key>", "created_at": "...Z",
                   "retired_at": "...Z"}]
    }

- ``name`` is the signed-note key name and the checkpoint origin prefix.
- ``active.skey`` is the Ed25519 signer in Go's note encoding, so a key can
  be moved to or from Go tooling unchanged.
- ``retired`` (newest first) keeps only *public* verifier keys: an old
  checkpoint needs the public key to verify, nothing ever signs with a retired
  key again, and a rotation done because a key leaked should not keep the
  leaked secret around.
- ``actor_secret`` keys the per-tenant actor pseudonyms; `rotate` keeps it,
  because changing it would give every actor a new pseudonym.
- Fields starting with ``_`` are comments; any other unknown field is an
  error, so a typo cannot silently drop the retired keys.

The file must not be readable or writable by group or others: `load` raises
`ConfigError` telling the user to ``chmod 600`` rather than use a key that
may have leaked. Messages name the path, never the secret material.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import secrets
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kimonaudit.core.note import Signer, Verifier
from kimonaudit.errors import ConfigError, MalformedNote

try:  # POSIX only; elsewhere rotation is simply not serialised.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_NAME",
    "FORMAT",
    "KeyRing",
    "generate",
    "load",
    "load_or_create",
    "rotate",
]

DEFAULT_NAME = "kimonaudit.local"
FORMAT = "kimonaudit-keys/1"
WARNING = (
    "SECRET: signing keys and actor secret of a KimonAudit deployment. "
    "Keep this file mode 0600; never commit, log or share it. Back it up: "
    "without it new checkpoints cannot be signed with a key auditors trust."
)
_MAX_FILE_BYTES = 1 << 20
_TOP_FIELDS = {"format", "name", "actor_secret", "active", "retired"}


@dataclass(repr=False)
class KeyRing:
    """Keys of one deployment. `verifiers` holds every public key, the
    active one first, then retired ones newest first."""

    name: str
    active: Signer
    verifiers: list[Verifier]
    actor_secret: bytes

    @property
    def vkey(self) -> str:
        return self.active.vkey

    def verifier_keys(self) -> list[str]:
        return [v.vkey for v in self.verifiers]

    def __repr__(self) -> str:
        return (
            f"KeyRing(name={self.name!r}, active={self.active.vkey!r}, "
            f"retired={len(self.verifiers) - 1})"
        )

    __str__ = __repr__


# --------------------------------------------------------------------------
# public API


def load(path: str | os.PathLike[str]) -> KeyRing:
    """Read a key file. ConfigError if it is missing, unreadable, corrupt or
    readable by other users."""
    try:
        ring, _ = _read(path)
    except FileNotFoundError:
        raise ConfigError(f"key file {os.fspath(path)} does not exist") from None
    return ring


def load_or_create(path: str | os.PathLike[str], name: str | None = None) -> KeyRing:
    """Load the key file, creating it (mode 0600) when absent. The parent
    directory must exist. When `name` is given it must match the file's."""
    try:
        ring, _ = _read(path)
    except FileNotFoundError:
        ring, doc = _new(DEFAULT_NAME if name is None else name)
        try:
            _write(path, doc, replace=False)
        except FileExistsError:
            # Another process created it first: use theirs.
            ring, _ = _read(path)
        else:
            return ring
    if name is not None and ring.name != name:
        raise ConfigError(
            f"key file {os.fspath(path)} belongs to deployment {ring.name!r}, not {name!r}"
        )
    return ring


def generate(path: str | os.PathLike[str], name: str | None = None, force: bool = False) -> KeyRing:
    """Write a brand-new key file: new signing key, no retired keys, new actor
    secret. With `force` an existing file is replaced, which makes every
    checkpoint signed with its keys unverifiable; `rotate` is the safe way
    to change keys."""
    p = os.fspath(path)
    if not force:
        ring, doc = _new(DEFAULT_NAME if name is None else name)
        try:
            _write(p, doc, replace=False)
        except FileExistsError:
            raise ConfigError(
                f"key file {p} already exists; use `keys rotate` to change the signing "
                "key (replacing the file would orphan every checkpoint signed with it)"
            ) from None
        return ring
    with _exclusive(p):
        if name is None:
            with contextlib.suppress(ConfigError, FileNotFoundError):
                name = _read(p)[0].name
        ring, doc = _new(DEFAULT_NAME if name is None else name)
        _write(p, doc, replace=True)
    return ring


def rotate(path: str | os.PathLike[str]) -> KeyRing:
    """Make a new active signing key; the old one's public key is kept as
    retired so checkpoints it signed still verify. The actor secret stays."""
    p = os.fspath(path)
    if not os.path.exists(p):
        raise ConfigError(f"key file {p} does not exist")
    with _exclusive(p):
        old, doc = _read(p)
        now = _now()
        new_signer = Signer.generate(old.name)
        retired_entry = {
            "vkey": old.active.vkey,
            "created_at": str(doc["active"].get("created_at", "")),
            "retired_at": now,
        }
        doc = {
            **doc,
            "active": {"skey": new_signer.skey, "created_at": now},
            "retired": [retired_entry, *doc.get("retired", [])],
        }
        ring = _ring_from_doc(p, doc)
        _write(p, doc, replace=True)
    return ring


# --------------------------------------------------------------------------
# document <-> KeyRing


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _new(name: str) -> tuple[KeyRing, dict[str, Any]]:
    try:
        signer = Signer.generate(name)
    except MalformedNote:
        raise ConfigError(
            f"deployment name {name!r} must be non-empty, without spaces or '+'"
        ) from None
    doc: dict[str, Any] = {
        "_warning": WARNING,
        "format": FORMAT,
        "name": name,
        "actor_secret": base64.b64encode(secrets.token_bytes(32)).decode("ascii"),
        "active": {"skey": signer.skey, "created_at": _now()},
        "retired": [],
    }
    return _ring_from_doc("<new key file>", doc), doc


def _ring_from_doc(path: str, doc: object) -> KeyRing:
    def bad(what: str) -> ConfigError:
        return ConfigError(f"key file {path} is corrupt: {what}")

    if not isinstance(doc, dict):
        raise bad("not a JSON object")
    unknown = sorted(k for k in doc if k not in _TOP_FIELDS and not str(k).startswith("_"))
    if unknown:
        raise bad(f"unknown field(s) {', '.join(unknown)}")
    if doc.get("format") != FORMAT:
        raise bad(f"format must be {FORMAT!r}")
    name = doc.get("name")
    if not isinstance(name, str):
        raise bad("name is missing")

    secret_b64 = doc.get("actor_secret")
    try:
        actor_secret = base64.b64decode(secret_b64, validate=True)  # type: ignore[arg-type]
    except (binascii.Error, TypeError, ValueError):
        raise bad("actor_secret is not base64") from None
    if len(actor_secret) != 32:
        raise bad("actor_secret must be 32 bytes")

    active_entry = doc.get("active")
    if not isinstance(active_entry, dict) or not isinstance(active_entry.get("skey"), str):
        raise bad("active.skey is missing")
    try:
        active = Signer.from_skey(active_entry["skey"])
    except MalformedNote as exc:
        # The MalformedNote text never contains key material.
        raise bad(f"active.skey: {exc.message}") from None
    if active.name != name:
        raise bad(f"active key is named {active.name!r} but the deployment is {name!r}")

    retired = doc.get("retired", [])
    if not isinstance(retired, list):
        raise bad("retired must be a list")
    verifiers = [active.verifier]
    for i, entry in enumerate(retired):
        if not isinstance(entry, dict) or not isinstance(entry.get("vkey"), str):
            raise bad(f"retired[{i}].vkey is missing")
        try:
            verifiers.append(Verifier.from_vkey(entry["vkey"]))
        except MalformedNote as exc:
            raise bad(f"retired[{i}].vkey: {exc.message}") from None
    idents = [(v.name, v.key_id) for v in verifiers]
    if len(set(idents)) != len(idents):
        raise bad("the same key (name and id) is listed twice")
    return KeyRing(name=name, active=active, verifiers=verifiers, actor_secret=actor_secret)


# --------------------------------------------------------------------------
# file I/O


def _read(path: str | os.PathLike[str]) -> tuple[KeyRing, dict[str, Any]]:
    """Parse the key file; FileNotFoundError passes through for the callers
    that create the file when it is absent."""
    p = os.fspath(path)
    try:
        # O_NONBLOCK: a FIFO at the path must not hang us; the S_ISREG check rejects it.
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot read key file {p}: {exc.strerror}") from None
    # fstat on the open file: the permissions checked are those of the bytes
    # we read, not of whatever the path points to a moment later.
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise ConfigError(f"key file {p} is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if os.name == "posix" and mode & 0o077:
        os.close(fd)
        raise ConfigError(
            f"key file {p} has mode {mode:04o}: other users may read it. "
            f"Run `chmod 600 {p}`, and rotate the key if it may have leaked"
        )
    with os.fdopen(fd, "rb") as f:
        try:
            raw = f.read(_MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read key file {p}: {exc.strerror}") from None
    if len(raw) > _MAX_FILE_BYTES:
        raise ConfigError(f"key file {p} is corrupt: larger than {_MAX_FILE_BYTES} bytes")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"key file {p} is corrupt: not UTF-8") from None
    except json.JSONDecodeError as exc:
        # exc.msg and the position never quote the file's content.
        raise ConfigError(
            f"key file {p} is corrupt: invalid JSON ({exc.msg} at line {exc.lineno})"
        ) from None
    return _ring_from_doc(p, doc), doc


def _write(path: str | os.PathLike[str], doc: dict[str, Any], *, replace: bool) -> None:
    """Write `doc` atomically with mode 0600. Without `replace`, raise
    FileExistsError rather than overwrite an existing file."""
    p = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(p))
    if not os.path.isdir(directory):
        raise ConfigError(f"cannot create key file {p}: directory {directory} does not exist")
    data = (json.dumps(doc, indent=2) + "\n").encode("utf-8")
    try:
        # mkstemp opens with O_EXCL and mode 0600.
        fd, tmp = tempfile.mkstemp(prefix=".kimonaudit-keys-", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise ConfigError(f"cannot create key file {p}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), 0o600)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, p)
        else:
            _link_no_clobber(tmp, p, data)
        _fsync_dir(directory)
    except FileExistsError:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot write key file {p}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _link_no_clobber(tmp: str, path: str, data: bytes) -> None:
    try:
        # link() publishes the complete file in one step and fails if the
        # path exists, so two concurrent creators cannot overwrite each other.
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        # Filesystems without hard links: exclusive create, then write.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def _fsync_dir(directory: str) -> None:
    # Makes the new directory entry durable; not possible everywhere.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _exclusive(path: str) -> Iterator[None]:
    """Serialise read-modify-write of the key file between processes, so
    two concurrent rotations cannot lose a retired key."""
    if fcntl is None or not os.path.exists(path):
        yield
        return
    while True:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise ConfigError(f"cannot read key file {path}: {exc.strerror}") from None
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A writer may have replaced the file while we waited for the lock on
        # the old inode; only a lock on the current file counts.
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(os.fstat(fd), current):
            break
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)
