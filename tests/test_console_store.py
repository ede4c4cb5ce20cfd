"""The console's storage (users, sessions, saved searches) on every store,
and ConsoleAccounts over it: one contract, run on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest

import kimonaudit
from kimonaudit.console.accounts import (
    Client,
    ConsoleAccounts,
    SignInRefused,
    create_first_owner,
    may_manage,
)
from kimonaudit.console.passwords import Passwords
from kimonaudit.console.records import ConsoleSession, ConsoleUser, SavedSearch
from kimonaudit.errors import Conflict, Forbidden, InvalidInput, InvalidQuery, NotFound
from tests.conftest import FakeClock
from tests.helpers import raw_db

PASSWORD = "correct horse battery"


@pytest.fixture
def accounts(log: kimonaudit.AuditLog) -> ConsoleAccounts:
    return ConsoleAccounts(log, passwords=Passwords(1, 1024, 1), session_seconds=3600)


def _user(tenant: str, user_id: str, email: str, role: str = "owner") -> ConsoleUser:
    return ConsoleUser(tenant, user_id, email, "$argon2id$x", role, 1_000)


def test_users_are_unique_by_email_within_a_tenant_only(log: kimonaudit.AuditLog) -> None:
    """The same e-mail may exist once per tenant; a second in one tenant is a Conflict."""
    store = log.store
    a, b = log.create_tenant("a").id, log.create_tenant("b").id
    store.insert_console_user(_user(a, "u_1", "ann@x.test"))
    store.insert_console_user(_user(b, "u_1", "ann@x.test"))
    with pytest.raises(Conflict):
        store.insert_console_user(_user(a, "u_2", "ann@x.test"))
    assert store.find_console_user(a, "ann@x.test") == _user(a, "u_1", "ann@x.test")
    assert store.find_console_user(a, "bob@x.test") is None
    assert store.get_console_user(b, "u_1") == _user(b, "u_1", "ann@x.test")
    assert store.get_console_user(a, "u_9") is None
    assert [u.tenant_id for u in store.list_console_users(a)] == [a]


def test_user_updates_touch_one_tenant(log: kimonaudit.AuditLog) -> None:
    """Disabling or re-hashing a user in one tenant leaves the other alone."""
    store = log.store
    a, b = log.create_tenant("a").id, log.create_tenant("b").id
    for t in (a, b):
        store.insert_console_user(_user(t, "u_1", "ann@x.test"))
    assert store.set_console_user_disabled(a, "u_1", 5)
    assert store.set_console_password(a, "u_1", "$argon2id$new")
    assert not store.set_console_user_disabled(a, "u_404", 5)
    got = store.get_console_user(a, "u_1")
    assert got is not None and got.disabled_at == 5 and got.password_hash == "$argon2id$new"
    assert store.get_console_user(b, "u_1") == _user(b, "u_1", "ann@x.test")
    assert store.set_console_user_disabled(a, "u_1", None)
    assert store.get_console_user(a, "u_1").active  # type: ignore[union-attr]


def test_sessions_are_found_by_tenant_and_token_hash(log: kimonaudit.AuditLog) -> None:
    """A session is found only in its tenant; ending and purging remove it."""
    store = log.store
    a, b = log.create_tenant("a").id, log.create_tenant("b").id
    s1 = ConsoleSession(a, b"\x01" * 32, "u_1", b"c" * 32, 10, 100)
    s2 = ConsoleSession(a, b"\x02" * 32, "u_1", b"d" * 32, 10, 500)
    s3 = ConsoleSession(a, b"\x03" * 32, "u_2", b"e" * 32, 10, 500)
    for s in (s1, s2, s3):
        store.insert_console_session(s)
    assert store.get_console_session(a, b"\x01" * 32) == s1
    assert store.get_console_session(b, b"\x01" * 32) is None
    assert store.purge_console_sessions(a, 100) == 1
    assert store.get_console_session(a, b"\x01" * 32) is None
    assert store.delete_console_sessions(a, "u_1") == 1
    assert store.get_console_session(a, b"\x03" * 32) == s3
    assert store.delete_console_session(a, b"\x03" * 32)
    assert not store.delete_console_session(a, b"\x03" * 32)


def test_saved_searches_belong_to_one_user(log: kimonaudit.AuditLog) -> None:
    """Listed by name for their owner only; names unique per user; only the
    owner deletes."""
    store = log.store
    a = log.create_tenant("a").id
    s1 = SavedSearch(a, "s_1", "u_1", "roles", "action:role.*", 1)
    s2 = SavedSearch(a, "s_2", "u_1", "failures", "is:failure", 2)
    s3 = SavedSearch(a, "s_3", "u_2", "roles", "action:role.*", 3)
    for s in (s1, s2, s3):
        store.insert_saved_search(s)
    with pytest.raises(Conflict):
        store.insert_saved_search(SavedSearch(a, "s_4", "u_1", "roles", "x", 4))
    assert store.list_saved_searches(a, "u_1") == [s2, s1]
    assert not store.delete_saved_search(a, "u_2", "s_1")
    assert store.delete_saved_search(a, "u_1", "s_1")
    assert store.list_saved_searches(a, "u_1") == [s2]


# -- accounts -----------------------------------------------------------------------
def test_sign_in_round_trip(accounts: ConsoleAccounts, log: kimonaudit.AuditLog) -> None:
    """Create, sign in, resume from the cookie, sign out: each step logged."""
    t = log.create_tenant("acme").id
    user = accounts.create_user(t, " Ann@Acme.TEST ", PASSWORD, "admin")
    assert user.email == "ann@acme.test"
    signed = accounts.sign_in(t, "ANN@acme.test", PASSWORD, Client("198.51.100.7", "UA/1"))
    assert accounts.resume(signed.cookie) == (signed.session, user)
    assert accounts.resume(signed.cookie + "x") is None
    accounts.sign_out(signed.session, user, Client("198.51.100.7"))
    assert accounts.resume(signed.cookie) is None
    rows = list(log.store.iter_entries(t))
    assert [r.action for r in rows] == ["user.created", "auth.login.succeeded", "auth.logout"]
    ctx = json.loads(rows[1].payload or b"")["context"]
    assert ctx == {"ip": "198.51.100.7", "user_agent": "UA/1"}


def test_sessions_end_when_they_expire(log: kimonaudit.AuditLog, clock: FakeClock) -> None:
    """resume() refuses a session past its lifetime."""
    accounts = ConsoleAccounts(log, passwords=Passwords(1, 1024, 1), session_seconds=60)
    t = log.create_tenant("acme").id
    accounts.create_user(t, "a@x.test", PASSWORD, "owner")
    signed = accounts.sign_in(t, "a@x.test", PASSWORD, Client())
    clock.advance(seconds=59)
    assert accounts.resume(signed.cookie) is not None
    clock.advance(seconds=2)
    assert accounts.resume(signed.cookie) is None


def test_disabled_users_cannot_sign_in(accounts: ConsoleAccounts, log: kimonaudit.AuditLog) -> None:
    """Disabling ends sessions and refuses the right password (logged as disabled)."""
    t = log.create_tenant("acme").id
    owner = accounts.create_user(t, "o@x.test", PASSWORD, "owner")
    other = accounts.create_user(t, "a@x.test", PASSWORD, "auditor", by=owner)
    signed = accounts.sign_in(t, "a@x.test", PASSWORD, Client())
    accounts.disable_user(t, other.user_id, by=owner)
    assert accounts.resume(signed.cookie) is None
    with pytest.raises(SignInRefused):
        accounts.sign_in(t, "a@x.test", PASSWORD, Client())
    last = list(log.store.iter_entries(t))[-1]
    assert last.action == "auth.login.failed"
    assert json.loads(last.payload or b"")["metadata"]["reason"] == "disabled"


def test_managing_users_follows_the_roles(
    accounts: ConsoleAccounts, log: kimonaudit.AuditLog
) -> None:
    """Owners manage all, admins not owners, auditors nobody, nobody themselves,
    and nobody in another tenant."""
    t, other = log.create_tenant("acme").id, log.create_tenant("other").id
    owner = accounts.create_user(t, "o@x.test", PASSWORD, "owner")
    admin = accounts.create_user(t, "a@x.test", PASSWORD, "admin", by=owner)
    auditor = accounts.create_user(t, "u@x.test", PASSWORD, "auditor", by=admin)
    with pytest.raises(Forbidden):
        accounts.create_user(t, "o2@x.test", PASSWORD, "owner", by=admin)
    with pytest.raises(Forbidden):
        accounts.create_user(t, "x@x.test", PASSWORD, "auditor", by=auditor)
    with pytest.raises(Forbidden):
        accounts.disable_user(t, owner.user_id, by=admin)
    with pytest.raises(Forbidden):
        accounts.disable_user(t, owner.user_id, by=owner)
    with pytest.raises(Forbidden):
        accounts.create_user(other, "z@x.test", PASSWORD, "auditor", by=owner)
    with pytest.raises(NotFound):
        accounts.disable_user(other, admin.user_id, by=owner)
    assert [may_manage(r, "admin") for r in ("owner", "admin", "auditor")] == [True, True, False]


def test_bad_account_input_is_refused(accounts: ConsoleAccounts, log: kimonaudit.AuditLog) -> None:
    """E-mail shape, role, password length and duplicates are checked."""
    t = log.create_tenant("acme").id
    for email, password, role in [
        ("not-an-email", PASSWORD, "owner"),
        ("a b@x.test", PASSWORD, "owner"),
        ("a@x.test", "short", "owner"),
        ("a@x.test", PASSWORD, "root"),
    ]:
        with pytest.raises(InvalidInput):
            accounts.create_user(t, email, password, role)
    accounts.create_user(t, "a@x.test", PASSWORD, "owner")
    with pytest.raises(InvalidInput):
        accounts.create_user(t, "A@X.test", PASSWORD, "owner")
    with pytest.raises(NotFound):
        accounts.create_user("t_missing", "a@x.test", PASSWORD, "owner")


def test_saved_searches_must_parse(accounts: ConsoleAccounts, log: kimonaudit.AuditLog) -> None:
    """Saving checks the query and the name."""
    t = log.create_tenant("acme").id
    user = accounts.create_user(t, "a@x.test", PASSWORD, "auditor")
    s = accounts.save_search(user, "  Roles ", "action:role.*")
    assert (s.name, s.query) == ("Roles", "action:role.*")
    with pytest.raises(InvalidQuery):
        accounts.save_search(user, "bad", "foo:bar")
    with pytest.raises(InvalidInput):
        accounts.save_search(user, "", "is:security")
    assert accounts.saved_searches(user) == [s]


def test_first_owner_gets_a_generated_password(log: kimonaudit.AuditLog) -> None:
    """create_first_owner (what the demo uses) makes an owner who can sign in."""
    t = log.create_tenant("acme").id
    user, password = create_first_owner(log, t, "owner@acme.test")
    assert user.role == "owner" and len(password) >= 20
    signed = ConsoleAccounts(log).sign_in(t, "owner@acme.test", password, Client())
    assert signed.user == user


def test_a_database_from_before_the_console_gains_its_tables(db_url: str, key_file: str) -> None:
    """Opening a database whose schema predates migration 2 adds the console
    tables once, keeping the log."""
    with kimonaudit.open(db_url, key_file=key_file) as log:
        t = log.create_tenant("acme").id
        log.append(t, [{"action": "ticket.viewed"}])
    with raw_db(db_url) as run:
        for table in ("console_saved_searches", "console_sessions", "console_users"):
            run(f"DROP TABLE {table}")
        run("DELETE FROM schema_migrations WHERE version = 2")
    with kimonaudit.open(db_url, key_file=key_file) as log:
        accounts = ConsoleAccounts(log, passwords=Passwords(1, 1024, 1))
        accounts.create_user(t, "a@x.test", PASSWORD, "owner")
        assert accounts.sign_in(t, "a@x.test", PASSWORD, Client()).user.email == "a@x.test"
        assert log.verify(t).ok
    with raw_db(db_url) as run:
        assert [v for (v,) in run("SELECT version FROM schema_migrations ORDER BY version")][
            :2
        ] == [
            1,
            2,
        ]
