"""The console's defences: response headers, CSRF on every form, cookies
and sessions, sign-in throttling, escaping of hostile event data, tenant
isolation and read-only auditors."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from kimonaudit.console.throttle import Limits
from kimonaudit.console.web import ConsoleSettings
from tests.conftest import FakeClock
from tests.consoles import (
    FAST,
    PASSWORD,
    Console,
    csrf_of,
    helpdesk_history,
    make_console,
    sign_in,
)
from tests.helpers import XSS, event, hostile_events, raw_db

PAGES = ("/console/events", "/console/verify", "/console/api-keys", "/console/users")


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    with make_console(tmp_path) as c:
        yield c


# -- headers ------------------------------------------------------------------------
def test_every_response_forbids_framing_and_inline_script(console: Console) -> None:
    """Pages, error pages, redirects and static files all carry the CSP,
    X-Frame-Options, Referrer-Policy and nosniff; pages are not cached."""
    helpdesk_history(console)
    c = console.signed_in()
    responses = [c.get(p) for p in PAGES]
    responses += [
        c.get("/console/events/1"),
        c.get("/console/events/99999"),
        c.get("/console/nowhere"),
        c.get("/console/static/console.css"),
        console.client().get("/console/signin"),
        console.client().get("/console/events", follow_redirects=False),
    ]
    for r in responses:
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self';" in csp
        assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "same-origin"
        assert r.headers["x-content-type-options"] == "nosniff"
    for r in responses[:4]:
        assert r.headers["cache-control"] == "no-store"


def test_pages_have_no_inline_script_or_style(console: Console) -> None:
    """Nothing in the markup needs 'unsafe-inline': no inline script,
    handler or style attribute."""
    helpdesk_history(console)
    c = console.signed_in()
    for p in (*PAGES, "/console/events/3"):
        html = c.get(p).text
        assert re.search(r"<script(?![^>]*\bsrc=)", html) is None, p
        assert re.search(r"\son[a-z]+=", html) is None, p
        assert re.search(r"\sstyle=", html) is None, p


# -- CSRF ---------------------------------------------------------------------------
def _post_routes(c: Console) -> list[tuple[str, dict[str, Any]]]:
    key = c.log.create_api_key(c.tenant, "k", ["events:read"])[0]
    user = c.add_user("aud@acme.test", "auditor")
    return [
        ("/console/export", {"q": "", "format": "csv"}),
        ("/console/searches", {"name": "n", "q": "is:security"}),
        ("/console/verify", {}),
        ("/console/api-keys", {"name": "n", "scope": "admin"}),
        (f"/console/api-keys/{key.key_id}/revoke", {}),
        ("/console/users", {"email": "x@acme.test", "role": "owner"}),
        (f"/console/users/{user.user_id}/disable", {}),
        ("/console/signout", {}),
    ]


@pytest.mark.parametrize("token", ["missing", "wrong", "other-session"])
def test_every_form_needs_this_sessions_csrf_token(console: Console, token: str) -> None:
    """Each POST without the session's own token is refused with 403 and
    changes nothing."""
    routes = _post_routes(console)
    c = console.signed_in()
    console.add_user("adm@acme.test", "admin")
    other = csrf_of(console.signed_in("adm@acme.test").get("/console/events").text)
    before = len(console.entries())
    for path, data in routes:
        if token == "wrong":
            data = {**data, "csrf": "A" * 43}
        elif token == "other-session":
            data = {**data, "csrf": other}
        r = c.post(path, data=data, follow_redirects=False)
        assert r.status_code == 403, path
        assert "this form has expired" in r.text
    assert len(console.entries()) == before
    assert c.get("/console/events", follow_redirects=False).status_code == 200  # still signed in
    assert not console.log.list_api_keys(console.tenant)[0].revoked_at


def test_a_cross_site_post_is_refused_even_with_a_token(console: Console) -> None:
    """A request the browser marks Sec-Fetch-Site: cross-site is refused."""
    c = console.signed_in()
    token = csrf_of(c.get("/console/users").text)
    r = c.post(
        "/console/users",
        data={"csrf": token, "email": "x@acme.test", "role": "owner"},
        headers={"Sec-Fetch-Site": "cross-site"},
    )
    assert r.status_code == 403
    assert console.log.store.find_console_user(console.tenant, "x@acme.test") is None


def test_the_sign_in_form_needs_its_cookie_bound_token(console: Console) -> None:
    """Login CSRF: a sign-in posted without the form's cookie, or with a
    token made for another cookie, is refused."""
    attacker = console.client()
    token = csrf_of(attacker.get("/console/signin").text)
    victim = console.client()
    data = {
        "csrf": token,
        "tenant": console.tenant,
        "email": console.owner.email,
        "password": PASSWORD,
    }
    assert victim.post("/console/signin", data=data).status_code == 403
    victim.get("/console/signin")  # the victim has a cookie of its own now
    assert victim.post("/console/signin", data=data).status_code == 403
    assert attacker.post("/console/signin", data=data, follow_redirects=False).status_code == 303


def test_next_never_leads_off_the_console(console: Console) -> None:
    """After sign-in, `next` is followed only to a console path."""
    for target in (
        "https://evil.example/",
        "//evil.example/console/",
        "/other",
        "/console/\\evil",
        "javascript:alert(1)",
    ):
        r = sign_in(console.client(), console.tenant, console.owner.email, PASSWORD, next=target)
        assert r.headers["location"] == "/console/events", target


# -- sessions -----------------------------------------------------------------------
def test_sessions_and_passwords_are_stored_only_as_hashes(console: Console) -> None:
    """The database holds the SHA-256 of the session token, never the
    token, and an argon2id hash, never the password."""
    c = console.signed_in()
    token = c.cookies["kimonaudit_session"].split(".", 1)[1]
    with raw_db(console.log.store.url) as run:
        sessions = run("SELECT token_hash FROM console_sessions")
        users = run("SELECT password_hash FROM console_users")
    assert [bytes(s[0]) for s in sessions] == [hashlib.sha256(token.encode()).digest()]
    assert users[0][0].startswith("$argon2id$")
    assert PASSWORD not in users[0][0]


def test_a_session_expires(tmp_path: Path) -> None:
    """A session stops working after its lifetime."""
    clock = FakeClock()
    c = make_console(
        tmp_path, ConsoleSettings(**{**FAST.__dict__, "session_seconds": 3600}), clock=clock
    )
    try:
        client = c.signed_in()
        assert client.get("/console/events", follow_redirects=False).status_code == 200
        clock.advance(minutes=61)
        assert client.get("/console/events", follow_redirects=False).status_code == 303
    finally:
        c.log.close()


def test_a_cookie_cannot_be_moved_to_another_tenant(console: Console) -> None:
    """Swapping the tenant part of a session cookie finds no session."""
    other = console.log.create_tenant("other").id
    c = console.signed_in()
    token = c.cookies["kimonaudit_session"].split(".", 1)[1]
    forged = base64.urlsafe_b64encode(other.encode()).decode().rstrip("=") + "." + token
    intruder = console.client()
    intruder.cookies.set("kimonaudit_session", forged, path="/console")
    assert intruder.get("/console/events", follow_redirects=False).status_code == 303
    for junk in ("", "x", "....", "%C3%A9.x", "A" * 500):
        intruder.cookies.set("kimonaudit_session", junk, path="/console")
        assert intruder.get("/console/events", follow_redirects=False).status_code == 303


# -- throttling ---------------------------------------------------------------------
def test_failed_sign_ins_lock_the_account_with_growing_waits(tmp_path: Path) -> None:
    """After the free failures, even the right password is refused (429 with
    Retry-After) until the lock passes; the first refusal is logged once."""
    limits = Limits(account_free=3, ip_free=100, base=60.0)
    c = make_console(tmp_path, ConsoleSettings(**{**FAST.__dict__, "throttle": limits}))
    try:
        client = c.client()
        for _ in range(3):
            assert sign_in(client, c.tenant, c.owner.email, "bad password!").status_code == 401
        r = sign_in(client, c.tenant, c.owner.email, PASSWORD)
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert "too many failed sign-ins" in r.text
        assert sign_in(client, c.tenant, c.owner.email, PASSWORD).status_code == 429
        reasons = [json_meta(e)["reason"] for e in c.entries() if e.action == "auth.login.failed"]
        assert reasons == ["bad_password"] * 3 + ["throttled"]
        # Another account from the same address is not locked.
        c.add_user("two@acme.test", "auditor")
        assert sign_in(client, c.tenant, "two@acme.test", PASSWORD).status_code == 303
    finally:
        c.log.close()


def test_one_address_guessing_many_accounts_is_locked(tmp_path: Path) -> None:
    """Failures from one address add up across e-mails (password spraying)."""
    limits = Limits(account_free=100, ip_free=4, base=60.0)
    c = make_console(tmp_path, ConsoleSettings(**{**FAST.__dict__, "throttle": limits}))
    try:
        client = c.client()
        for i in range(4):
            assert sign_in(client, c.tenant, f"u{i}@acme.test", "bad password!").status_code == 401
        assert sign_in(client, c.tenant, c.owner.email, PASSWORD).status_code == 429
    finally:
        c.log.close()


def json_meta(row: Any) -> dict[str, Any]:
    return dict(json.loads(row.payload)["metadata"])


# -- isolation and roles ------------------------------------------------------------
def test_a_session_sees_only_its_own_tenant(console: Console) -> None:
    """Search, event pages, exports, keys and users never show another
    tenant's data, even at the same sequence numbers."""
    other = console.log.create_tenant("other").id
    console.log.append(
        other, [event(i, metadata={"secret": "OTHER-TENANT-DATA"}) for i in range(40)]
    )
    console.log.create_api_key(other, "other-key", ["admin"])
    console.state.accounts.create_user(other, "spy@other.test", PASSWORD, "owner")
    console.log.append(console.tenant, [event(i) for i in range(3)])
    c = console.signed_in()
    pages = [c.get(p).text for p in PAGES]
    pages += [c.get(f"/console/events/{seq}").text for seq in range(4)]
    token = csrf_of(pages[0])
    pages.append(c.post("/console/export", data={"csrf": token, "q": "", "format": "ndjson"}).text)
    for html in pages:
        assert "OTHER-TENANT-DATA" not in html
        assert "other-key" not in html and "spy@other.test" not in html
        assert other not in html
    beyond = console.log.store.tree_state(console.tenant).size + 2
    assert beyond < 40  # an entry of the other tenant only
    assert c.get(f"/console/events/{beyond}").status_code == 404
    assert "No events match" in c.get("/console/events?q=OTHER-TENANT-DATA").text


def test_auditors_are_read_only(console: Console) -> None:
    """An auditor sees keys and users without forms, and every change they
    post is refused."""
    key = console.log.create_api_key(console.tenant, "k", ["events:read"])[0]
    console.add_user("aud@acme.test", "auditor")
    c = console.signed_in("aud@acme.test")
    keys_page = c.get("/console/api-keys").text
    users_page = c.get("/console/users").text
    assert "Create key" not in keys_page and "Revoke" not in keys_page
    assert "Add user" not in users_page and "Disable" not in users_page
    token = csrf_of(keys_page)
    for path, data in [
        ("/console/api-keys", {"name": "n", "scope": "admin"}),
        (f"/console/api-keys/{key.key_id}/revoke", {}),
        ("/console/users", {"email": "x@acme.test", "role": "auditor"}),
        (f"/console/users/{console.owner.user_id}/disable", {}),
    ]:
        r = c.post(path, data={"csrf": token, **data})
        assert r.status_code == 403, path
    assert len(console.log.list_api_keys(console.tenant)) == 1
    assert console.log.list_api_keys(console.tenant)[0].revoked_at is None
    assert len(console.state.accounts.list_users(console.tenant)) == 2
    # Reading, searching and exporting are what auditors are for.
    assert c.post("/console/export", data={"csrf": token, "format": "csv"}).status_code == 200


def test_admins_cannot_make_or_unmake_owners(console: Console) -> None:
    """An admin manages admins and auditors, not owners; nobody disables themselves."""
    console.add_user("adm@acme.test", "admin")
    c = console.signed_in("adm@acme.test")
    page = c.get("/console/users").text
    assert '<option value="owner"' not in page
    token = csrf_of(page)
    r = c.post("/console/users", data={"csrf": token, "email": "o2@acme.test", "role": "owner"})
    assert r.status_code == 403
    r = c.post(f"/console/users/{console.owner.user_id}/disable", data={"csrf": token})
    assert r.status_code == 403
    me = console.log.store.find_console_user(console.tenant, "adm@acme.test")
    assert me is not None
    assert c.post(f"/console/users/{me.user_id}/disable", data={"csrf": token}).status_code == 403
    r = c.post("/console/users", data={"csrf": token, "email": "a2@acme.test", "role": "auditor"})
    assert r.status_code == 200


# -- hostile event data -------------------------------------------------------------
class Tags(HTMLParser):
    """Collects markup that would run script: a script without src, an
    img or iframe, an event-handler attribute, a link to another scheme."""

    def __init__(self) -> None:
        super().__init__()
        self.bad: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and not names.get("src", "").startswith("/console/static/"):
            self.bad.append(f"<script {attrs}>")
        if tag in ("img", "iframe", "object", "embed"):
            self.bad.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on"):
                self.bad.append(f"<{tag} {name}=...>")
            link = name in ("href", "src", "action", "formaction") and value is not None
            if link and re.match(r"\s*[a-z][a-z0-9+.-]*:", value or "", re.I):
                self.bad.append(f"<{tag} {name}={value!r}>")


def test_hostile_event_data_is_escaped_on_every_page(console: Console) -> None:
    """Payloads in every field never reach the markup as tags, attributes or
    links: no raw `<script>`, `<img`, `onerror=` or `javascript:` href."""
    console.log.append(console.tenant, hostile_events())
    c = console.signed_in()
    token = csrf_of(c.get("/console/events").text)
    c.post("/console/searches", data={"csrf": token, "name": XSS[1], "q": '"<script>"'})
    c.post("/console/users", data={"csrf": token, "email": '"><img@src=x', "role": "auditor"})
    c.post("/console/api-keys", data={"csrf": token, "name": XSS[0], "scope": "admin"})
    seqs = [r.seq for r in console.entries() if r.action == "role.assigned"]
    pages = [c.get(p).text for p in PAGES]
    pages += [c.get("/console/events", params={"q": f'"{p}"'}).text for p in XSS[:2]]
    details = [c.get(f"/console/events/{s}", params={"q": XSS[0]}).text for s in seqs]
    pages += details
    for html in pages:
        assert "<script>window" not in html
        assert "<img src=x" not in html and "<img@" not in html and "<svg onload" not in html
        tags = Tags()
        tags.feed(html)
        assert tags.bad == [], tags.bad
    # Shown, as text: in the actor's name, the target, each table and the raw JSON.
    assert details[0].count("&lt;script&gt;window.__xss=1&lt;/script&gt;") >= 8
