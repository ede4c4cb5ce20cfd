"""API keys: the key format, hashing and scopes (kimonaudit.apikeys), the
facade methods over every store, and the CLI that creates them."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import kimonaudit
from kimonaudit import apikeys
from kimonaudit.cli import cli
from kimonaudit.errors import AuthError, InvalidInput, NotFound
from tests.helpers import raw_db

KEY_RE = re.compile(r"kak_[a-z2-7]{12}_[A-Za-z0-9_-]{43}")


# -- the key format ----------------------------------------------------------------
def test_generated_keys_parse_back() -> None:
    """A generated key has the documented form and parses back into its id and secret."""
    seen = set()
    for _ in range(200):
        key_id, secret, text = apikeys.generate()
        assert KEY_RE.fullmatch(text)
        assert apikeys.parse(text) == (key_id, secret)
        seen.add(secret)
    assert len(seen) == 200


@settings(max_examples=200)
@given(st.text(max_size=80))
def test_anything_else_is_rejected_without_echo(text: str) -> None:
    """Any text that is not a well-formed key is an AuthError that does not repeat the text."""
    if KEY_RE.fullmatch(text):
        return
    with pytest.raises(AuthError) as info:
        apikeys.parse(text)
    if len(text) > 6:
        assert text not in info.value.message


def test_secret_check_is_sha256_and_exact() -> None:
    """The stored hash is SHA-256 of the secret; any other secret, or no stored key, fails."""
    _, secret, _ = apikeys.generate()
    stored = apikeys.hash_secret(secret)
    assert stored == hashlib.sha256(secret.encode()).digest()
    assert apikeys.secret_matches(secret, stored)
    assert not apikeys.secret_matches(secret[:-1] + ("A" if secret[-1] != "A" else "B"), stored)
    assert not apikeys.secret_matches(secret, None)


def test_scopes() -> None:
    """admin implies every scope; scopes are validated and put in canonical order."""
    assert apikeys.grants(["admin"], "events:write") and apikeys.grants(["admin"], "events:read")
    assert not apikeys.grants(["events:write"], "events:read")
    assert apikeys.normalize_scopes(["admin", "events:read"]) == ("events:read", "admin")
    with pytest.raises(InvalidInput) as info:
        apikeys.normalize_scopes(["events:read", "root"])
    assert info.value.field == "scopes[1]"
    with pytest.raises(InvalidInput):
        apikeys.normalize_scopes([])


# -- the facade, on every store ------------------------------------------------------
def test_create_authenticate_revoke(log, db_url: str) -> None:
    """A new key authenticates to its tenant and scopes; after revocation it does not; only
    the hash of its secret is stored; both actions are entries in that tenant's log."""
    t = log.create_tenant("acme")
    other = log.create_tenant("other")
    rec, text = log.create_api_key(t.id, "ingest", ["events:write", "events:write"])
    assert rec.scopes == ("events:write",) and text.startswith(rec.prefix + "_")
    assert log.authenticate(text) == (t.id, ("events:write",))
    secret = text[17:]
    with raw_db(db_url) as run:
        ((stored, scopes),) = run(
            "SELECT secret_hash, scopes FROM api_keys WHERE key_id = ?", (rec.key_id,)
        )
        dump = repr(run("SELECT * FROM api_keys")) + repr(run("SELECT payload FROM entries"))
    assert bytes(stored) == hashlib.sha256(secret.encode()).digest()
    assert secret not in dump and scopes == "events:write"

    assert [k.key_id for k in log.list_api_keys(t.id)] == [rec.key_id]
    assert log.list_api_keys(other.id) == []
    with pytest.raises(NotFound):
        log.revoke_api_key(other.id, rec.key_id)
    revoked = log.revoke_api_key(t.id, rec.key_id)
    assert revoked.revoked_at is not None
    with pytest.raises(AuthError):
        log.authenticate(text)
    log.revoke_api_key(t.id, rec.key_id)  # idempotent: no second entry
    with pytest.raises(NotFound) as info:
        log.revoke_api_key(t.id, text)  # the whole key pasted by mistake: never echoed
    assert secret not in info.value.message

    entries = list(log.store.iter_entries(t.id))
    assert [(e.action, e.target_type, e.target_id) for e in entries] == [
        ("auth.api_token.created", "api_key", rec.key_id),
        ("auth.api_token.revoked", "api_key", rec.key_id),
    ]
    assert all(e.security for e in entries)
    assert json.loads(entries[0].payload)["metadata"]["scopes"] == ["events:write"]
    assert list(log.store.iter_entries(other.id)) == []
    assert log.verify(t.id).ok


def test_authentication_failures_look_alike(log) -> None:
    """Unknown id, wrong secret and revoked key give the same AuthError message."""
    t = log.create_tenant("acme")
    rec, text = log.create_api_key(t.id, "k", ["admin"])
    unknown = "kak_" + "a" * 12 + text[16:]
    wrong = text[:-1] + ("A" if text[-1] != "A" else "B")
    messages = set()
    for bad in (unknown, wrong):
        with pytest.raises(AuthError) as info:
            log.authenticate(bad)
        messages.add(info.value.message)
    log.revoke_api_key(t.id, rec.key_id)
    with pytest.raises(AuthError) as info:
        log.authenticate(text)
    messages.add(info.value.message)
    assert len(messages) == 1


def test_bad_key_requests_are_input_errors(log) -> None:
    """Unknown tenant, a control character in the name, an unknown scope: refused, nothing
    written."""
    t = log.create_tenant("acme")
    with pytest.raises(NotFound):
        log.create_api_key("t_nope", "k", ["admin"])
    with pytest.raises(InvalidInput):
        log.create_api_key(t.id, "tab\there", ["admin"])
    with pytest.raises(InvalidInput):
        log.create_api_key(t.id, "k", ["superuser"])
    assert log.store.tree_state(t.id).size == 0 and log.list_api_keys(t.id) == []


# -- the CLI ------------------------------------------------------------------------
def test_cli_tenant_admin_key_and_apikeys_commands(tmp_path: Path) -> None:
    """`tenants create` prints a working admin key once; `apikeys create/list/revoke` manage
    keys and never print a secret again."""
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    base = ["--db", db, "--key-file", str(tmp_path / "k.key")]
    runner = CliRunner()
    made = runner.invoke(cli, [*base, "tenants", "create", "acme"])
    assert made.exit_code == 0, made.output
    (admin,) = KEY_RE.findall(made.output)
    assert "shown once" in made.output
    as_json = runner.invoke(cli, [*base, "tenants", "create", "beta", "--json"])
    beta = json.loads(as_json.output)
    assert KEY_RE.fullmatch(beta["api_key"]["key"]) and beta["api_key"]["scopes"] == ["admin"]

    with kimonaudit.open(db, key_file=str(tmp_path / "k.key")) as log:
        tid, scopes = log.authenticate(admin)
    assert scopes == ("admin",)

    new = runner.invoke(
        cli,
        [*base, "apikeys", "create", "--tenant", tid, "--name", "helpdesk", "--scope",
         "events:write", "--scope", "events:read", "--json"],
    )  # fmt: skip
    assert new.exit_code == 0, new.output
    key = json.loads(new.output)
    assert key["scopes"] == ["events:write", "events:read"]
    listed = runner.invoke(cli, [*base, "apikeys", "list", "--tenant", tid, "--json"])
    assert {k["name"] for k in json.loads(listed.output)} == {"admin", "helpdesk"}
    assert key["key"] not in listed.output and admin not in listed.output
    gone = runner.invoke(cli, [*base, "apikeys", "revoke", "--tenant", tid, key["prefix"]])
    assert gone.exit_code == 0 and "revoked" in gone.output
    with kimonaudit.open(db, key_file=str(tmp_path / "k.key")) as log:
        with pytest.raises(AuthError):
            log.authenticate(key["key"])
        assert log.authenticate(admin)[0] == tid
