"""The deployment key file (kimonaudit.keys), on real files under tmp_path."""

from __future__ import annotations

import base64
import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kimonaudit import keys
from kimonaudit.core.note import Checkpoint, open_checkpoint, sign_checkpoint
from kimonaudit.errors import ConfigError, InvalidSignature

ROOT = bytes(range(32))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def secrets_of(ring: keys.KeyRing) -> list[str]:
    """Every spelling of the ring's secret material a leak could take."""
    seed_b64 = ring.active.skey.split("+", 4)[4]
    return [
        ring.active.skey,
        seed_b64,
        base64.b64encode(ring.actor_secret).decode(),
        ring.actor_secret.hex(),
        repr(ring.actor_secret),
    ]


def test_created_file_has_mode_0600_and_documented_shape(tmp_path: Path) -> None:
    """load_or_create writes a 0600 JSON file with a warning, name and keys."""
    path = tmp_path / "kimonaudit.key"
    ring = keys.load_or_create(path)
    assert mode(path) == 0o600
    doc = json.loads(path.read_text())
    assert "SECRET" in doc["_warning"]
    assert doc["format"] == keys.FORMAT
    assert doc["name"] == ring.name == "kimonaudit.local"
    assert doc["active"]["skey"] == ring.active.skey
    assert doc["retired"] == []
    assert len(ring.actor_secret) == 32
    assert ring.verifier_keys() == [ring.active.vkey]
    assert [p.name for p in tmp_path.iterdir()] == ["kimonaudit.key"]  # no temp left


def test_created_file_is_0600_even_with_a_permissive_umask(tmp_path: Path) -> None:
    """The key file is 0600 whatever the process umask."""
    old = os.umask(0)
    try:
        keys.load_or_create(tmp_path / "k")
    finally:
        os.umask(old)
    assert mode(tmp_path / "k") == 0o600


def test_reload_gives_the_same_keys(tmp_path: Path) -> None:
    """Loading an existing file returns the keys it was created with."""
    path = tmp_path / "k"
    first = keys.load_or_create(path, name="audit.acme.example")
    again = keys.load_or_create(path, name="audit.acme.example")
    loaded = keys.load(path)
    for ring in (again, loaded):
        assert ring == first
        assert ring.active.skey == first.active.skey
        assert ring.actor_secret == first.actor_secret
        assert ring.name == "audit.acme.example"


def test_name_mismatch_is_a_config_error(tmp_path: Path) -> None:
    """A key file made for one deployment name is not silently used for another."""
    path = tmp_path / "k"
    keys.load_or_create(path, name="a.example")
    with pytest.raises(ConfigError, match=r"a\.example"):
        keys.load_or_create(path, name="b.example")


def test_invalid_deployment_name_is_a_config_error(tmp_path: Path) -> None:
    """A name with spaces or '+' cannot be a signed-note key name."""
    for bad in ("my deployment", "a+b", ""):
        with pytest.raises(ConfigError, match="deployment name"):
            keys.load_or_create(tmp_path / "k", name=bad)
    assert not (tmp_path / "k").exists()


def test_missing_parent_directory_is_a_config_error(tmp_path: Path) -> None:
    """The parent directory must exist; the error names it."""
    with pytest.raises(ConfigError, match="does not exist"):
        keys.load_or_create(tmp_path / "nope" / "k")


def test_rotation_keeps_old_checkpoints_verifiable(tmp_path: Path) -> None:
    """After rotate, a checkpoint signed with the old key still opens and new
    checkpoints are signed with the new key."""
    path = tmp_path / "k"
    before = keys.load_or_create(path)
    old_note = sign_checkpoint(Checkpoint("kimonaudit.local/tenants/t", 3, ROOT), [before.active])

    after = keys.rotate(path)
    assert mode(path) == 0o600
    assert after.active.key_id != before.active.key_id
    assert after.verifier_keys() == [after.active.vkey, before.active.vkey]
    assert after.actor_secret == before.actor_secret
    assert after.name == before.name

    reloaded = keys.load(path)
    assert reloaded == after
    cp, note = open_checkpoint(old_note, reloaded.verifiers)
    assert cp.size == 3
    assert note.verified_by == (before.active.vkey,)
    new_note = sign_checkpoint(cp, [reloaded.active])
    assert open_checkpoint(new_note, reloaded.verifiers)[1].verified_by == (after.active.vkey,)


def test_retired_keys_keep_only_public_keys(tmp_path: Path) -> None:
    """Rotation drops the old private seed: the file holds only its vkey."""
    path = tmp_path / "k"
    before = keys.load_or_create(path)
    keys.rotate(path)
    third = keys.rotate(path)
    raw = path.read_text()
    assert before.active.skey not in raw
    assert before.active.skey.split("+", 4)[4] not in raw
    doc = json.loads(raw)
    assert [r["vkey"] for r in doc["retired"]] == third.verifier_keys()[1:]
    assert all(set(r) == {"vkey", "created_at", "retired_at"} for r in doc["retired"])
    assert len(third.verifiers) == 3


def test_without_rotation_old_key_is_lost_by_forced_generate(tmp_path: Path) -> None:
    """generate(force=True) starts over: old checkpoints no longer verify
    (which is why generate refuses to overwrite without force)."""
    path = tmp_path / "k"
    before = keys.generate(path, name="x.example")
    note = sign_checkpoint(Checkpoint("x.example/tenants/t", 1, ROOT), [before.active])
    with pytest.raises(ConfigError, match="keys rotate"):
        keys.generate(path)
    assert keys.load(path) == before
    fresh = keys.generate(path, force=True)
    assert fresh.name == "x.example"  # the existing name is kept
    assert fresh.actor_secret != before.actor_secret
    with pytest.raises(InvalidSignature):
        open_checkpoint(note, fresh.verifiers)


def test_repr_and_str_show_no_secret(tmp_path: Path) -> None:
    """repr()/str() of the key ring and signer never contain secret material."""
    ring = keys.load_or_create(tmp_path / "k")
    for text in (repr(ring), str(ring), repr(ring.active), str(ring.active)):
        for secret in secrets_of(ring):
            assert secret not in text
    assert ring.name in repr(ring)


def test_corrupt_file_is_a_config_error_naming_the_path(tmp_path: Path) -> None:
    """Unparseable or inconsistent key files raise ConfigError naming the path,
    without quoting secret material."""
    path = tmp_path / "k"
    good = keys.load_or_create(path)
    doc = json.loads(path.read_text())
    variants = {
        "not json": "{not json",
        "array": "[]",
        "bad format": json.dumps({**doc, "format": "other/9"}),
        "typo field": json.dumps({**doc, "retierd": []}),
        "short secret": json.dumps({**doc, "actor_secret": "AAAA"}),
        "bad secret": json.dumps({**doc, "actor_secret": "***"}),
        "bad skey": json.dumps({**doc, "active": {"skey": doc["active"]["skey"][:-3] + "x"}}),
        "no skey": json.dumps({**doc, "active": {}}),
        "name mismatch": json.dumps({**doc, "name": "other.example"}),
        "bad retired": json.dumps({**doc, "retired": [{"vkey": "nope"}]}),
        "duplicate": json.dumps({**doc, "retired": [{"vkey": good.active.vkey}]}),
        "not utf8": b"\xff\xfe",
    }
    for label, content in variants.items():
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        with pytest.raises(ConfigError) as info:
            keys.load(path)
        message = str(info.value)
        assert str(path) in message, label
        for secret in secrets_of(good):
            assert secret not in message, label


def test_missing_file_load_is_a_config_error(tmp_path: Path) -> None:
    """load() does not create a file; it says the path does not exist."""
    path = tmp_path / "absent.key"
    with pytest.raises(ConfigError, match=f"{path}.*does not exist"):
        keys.load(path)
    with pytest.raises(ConfigError, match="does not exist"):
        keys.rotate(path)
    assert not path.exists()


def test_group_or_world_readable_file_is_refused(tmp_path: Path) -> None:
    """A key file others may read is refused with a `chmod 600` hint; after
    the chmod it loads again. load_or_create never overwrites it."""
    path = tmp_path / "k"
    ring = keys.load_or_create(path)
    for loose in (0o640, 0o604, 0o660):
        path.chmod(loose)
        with pytest.raises(ConfigError, match=f"chmod 600 {path}"):
            keys.load(path)
        with pytest.raises(ConfigError, match="chmod 600"):
            keys.load_or_create(path)
        with pytest.raises(ConfigError, match="chmod 600"):
            keys.rotate(path)
    path.chmod(0o600)
    assert keys.load(path) == ring
    path.chmod(0o400)  # read-only for the owner is fine
    assert keys.load(path) == ring


def test_directory_instead_of_file_is_a_config_error(tmp_path: Path) -> None:
    """A directory at the key path is reported, not crashed on."""
    (tmp_path / "k").mkdir(mode=0o700)
    with pytest.raises(ConfigError, match="not a regular file"):
        keys.load(tmp_path / "k")


def test_concurrent_rotations_lose_no_key(tmp_path: Path) -> None:
    """Rotations racing from several threads keep every retired key."""
    path = tmp_path / "k"
    first = keys.load_or_create(path)
    with ThreadPoolExecutor(max_workers=4) as pool:
        rotated = list(pool.map(lambda _: keys.rotate(path), range(12)))
    final = keys.load(path)
    assert len(final.verifiers) == 13
    expected = {first.active.vkey} | {r.active.vkey for r in rotated}
    assert set(final.verifier_keys()) == expected
