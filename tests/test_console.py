"""The admin console over HTTP (Starlette TestClient on the console app):
sign-in, the event stream, an event's page, the chart, exports, saved
searches, verification, API keys and users, and the audit trail every use
of the log leaves in it.

Security properties (headers, CSRF, throttling, escaping, isolation, roles)
are in test_console_security.py; the browser flows in
tests/browser/test_console_browser.py.
"""

from __future__ import annotations

import csv
import io
import json
import re
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning
from starlette.routing import Mount

with warnings.catch_warnings():
    # Starlette would rather run its TestClient on `httpx2`; the project uses httpx.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

import kimonaudit
from kimonaudit.console.web import ConsoleSettings, create_console
from tests.consoles import (
    FAST,
    PASSWORD,
    Console,
    csrf_of,
    helpdesk_history,
    make_console,
    sign_in,
)
from tests.helpers import event, raw_db


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    with make_console(tmp_path) as c:
        yield c


def rows_of(html: str) -> list[str]:
    return re.findall(r"<tr class=\"[^\"]*\" data-seq=\"\d+\">.*?</tr>", html, re.S)


def actions_of(html: str) -> list[str]:
    return [re.search(r"<code>([a-z0-9_.]+)</code>", r).group(1) for r in rows_of(html)]  # type: ignore[union-attr]


# -- signing in ------------------------------------------------------------------
def test_signed_out_visitor_is_sent_to_sign_in(console: Console) -> None:
    """Every page needs a session; the redirect remembers where to return."""
    r = console.client().get("/console/events?q=is:security", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/console/signin?next=%2Fconsole%2Fevents%3Fq%3Dis%3Asecurity"


def test_sign_in_sets_a_session_cookie_and_logs_the_sign_in(console: Console) -> None:
    """A good sign-in sets an HttpOnly, SameSite cookie for /console and
    appends auth.login.succeeded via the console."""
    c = console.client()
    r = sign_in(c, console.tenant, "Owner@Acme.test", PASSWORD, next="/console/verify")
    assert r.status_code == 303
    assert r.headers["location"] == "/console/verify"
    cookie = next(h for h in r.headers.get_list("set-cookie") if "kimonaudit_session=" in h)
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie
    row, payload = console.last("auth.login.succeeded")
    assert row.actor_hash == console.log.actor_hash(console.tenant, console.owner.actor["id"])
    assert payload["metadata"] == {"via": "console", "role": "owner"}
    assert c.get("/console/events").status_code == 200


def test_session_cookie_is_secure_under_https(console: Console) -> None:
    """Over HTTPS the session cookie also carries Secure."""
    c = console.client(https=True)
    r = sign_in(c, console.tenant, console.owner.email, PASSWORD)
    cookie = next(h for h in r.headers.get_list("set-cookie") if "kimonaudit_session=" in h)
    assert "Secure" in cookie


def test_failed_sign_ins_say_the_same_and_are_logged(console: Console) -> None:
    """Wrong password, unknown e-mail and unknown tenant get one message;
    failures in the tenant are auth.login.failed entries with a reason."""
    c = console.client()
    messages = []
    for tenant, email, password in [
        (console.tenant, console.owner.email, "wrong password!"),
        (console.tenant, "nobody@acme.test", PASSWORD),
        ("t_nosuchtenant", console.owner.email, PASSWORD),
    ]:
        r = sign_in(c, tenant, email, password)
        assert r.status_code == 401
        messages.append(re.search(r'id="signin-error">(.*?)<', r.text).group(1))  # type: ignore[union-attr]
    assert len(set(messages)) == 1
    failed = [
        json.loads(r.payload or b"") for r in console.entries() if r.action == "auth.login.failed"
    ]
    assert [f["metadata"]["reason"] for f in failed] == ["bad_password", "unknown_user"]
    assert failed[1]["metadata"]["email"] == "nobody@acme.test"
    assert "kimonaudit_session" not in c.cookies


def test_sign_out_ends_the_session_for_good(console: Console) -> None:
    """After signing out, the old cookie is worthless even if replayed."""
    c = console.signed_in()
    cookie = c.cookies["kimonaudit_session"]
    page = c.get("/console/events")
    r = c.post("/console/signout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert r.status_code == 303
    replay = console.client()
    replay.cookies.set("kimonaudit_session", cookie, path="/console")
    assert replay.get("/console/events", follow_redirects=False).status_code == 303
    console.last("auth.logout")


# -- the stream ------------------------------------------------------------------
def test_stream_lists_newest_first_and_logs_the_search(console: Console) -> None:
    """The stream shows entries newest first; loading it appends
    audit_log.searched with the query and the number of rows shown."""
    helpdesk_history(console)
    c = console.signed_in()
    r = c.get("/console/events", params={"q": "action:ticket.*"})
    assert r.status_code == 200
    seqs = [int(s) for s in re.findall(r'data-seq="(\d+)"', r.text)]
    assert seqs == sorted(seqs, reverse=True) and len(seqs) > 10
    assert all(a.startswith("ticket.") for a in actions_of(r.text))
    _, payload = console.last("audit_log.searched")
    assert payload["metadata"]["query"] == "action:ticket.*"
    assert payload["metadata"]["rows"] == len(seqs)
    assert payload["metadata"]["via"] == "console"


def test_who_changed_roles_last_week(console: Console) -> None:
    """`action:role.* created:>-7d` finds the role changes and nothing else,
    with who did it from the directory."""
    helpdesk_history(console)
    c = console.signed_in()
    r = c.get("/console/events", params={"q": "action:role.* created:>-7d"})
    actions = actions_of(r.text)
    assert actions and set(actions) <= {"role.assigned", "role.revoked"}
    assert "role.revoked" in actions
    assert "Root Admin" in r.text


def test_who_viewed_ticket_10482(console: Console) -> None:
    """`action:ticket.viewed target:ticket:10482` lists exactly its viewers by name."""
    helpdesk_history(console)
    c = console.signed_in()
    r = c.get("/console/events", params={"q": "action:ticket.viewed target:ticket:10482"})
    rows = rows_of(r.text)
    assert len(rows) == 2
    assert "Ann Lee" in rows[1] and "Bo Chen" in rows[0]
    assert all("ticket:10482" in row for row in rows)


def test_security_events_are_marked_by_colour_icon_and_label(console: Console) -> None:
    """Security-relevant rows carry the highlight class, the icon and the
    word "Security"; other rows carry none of them."""
    helpdesk_history(console)
    c = console.signed_in()
    rows = rows_of(c.get("/console/events").text)
    for row in rows:
        action = re.search(r"<code>([a-z0-9_.]+)</code>", row).group(1)  # type: ignore[union-attr]
        security = action.startswith(("role.", "audit_log.", "user.")) or action in (
            "auth.login.failed",
        )
        assert ('class="security' in row) == security, action
        assert ("badge-security" in row and "<svg" in row and ">Security</span>" in row) == security


def test_one_click_shows_only_security_events(console: Console) -> None:
    """The "Security only" chip adds is:security; following it leaves only
    security-relevant rows, and clicking it again removes the filter."""
    helpdesk_history(console)
    c = console.signed_in()
    page = c.get("/console/events", params={"q": "created:>-7d"}).text
    href = re.search(r'<a class="chip chip-security" href="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    filtered = c.get(href.replace("&amp;", "&"))
    assert 'aria-pressed="true"' in filtered.text
    rows = rows_of(filtered.text)
    assert rows and all('class="security' in row for row in rows)
    off = re.search(r'<a class="chip on chip-security" href="([^"]+)"', filtered.text).group(1)  # type: ignore[union-attr]
    assert "is%3Asecurity" not in off


def test_filter_chips_show_each_term_with_a_removal_link(console: Console) -> None:
    """Each term of the query is a chip whose link is the query without it."""
    c = console.signed_in()
    page = c.get("/console/events", params={"q": "action:role.* is:failure"}).text
    assert '<a class="chip term" href="/console/events?q=is%3Afailure"' in page
    assert '<a class="chip term" href="/console/events?q=action%3Arole.%2A"' in page


def test_a_bad_query_is_explained_not_run(console: Console) -> None:
    """A query that does not parse gets the parser's message and position,
    and no search is logged."""
    c = console.signed_in()
    before = len(console.entries())
    r = c.get("/console/events", params={"q": "severity:hgh"})
    assert r.status_code == 422
    assert "invalid severity &#39;hgh&#39; at position 9" in r.text
    assert len(console.entries()) == before


def test_older_pages_follow_the_cursor(tmp_path: Path) -> None:
    """ "Older" pages through the results without repeats or gaps."""
    c = make_console(tmp_path, ConsoleSettings(**{**FAST.__dict__, "page_size": 7}))
    try:
        c.log.append(c.tenant, [event(i, action="ticket.viewed") for i in range(20)])
        client = c.signed_in()
        seen: list[int] = []
        url: str | None = "/console/events?q=action:ticket.viewed"
        while url:
            page = client.get(url).text
            seen += [int(s) for s in re.findall(r'data-seq="(\d+)"', page)]
            m = re.search(r'<a href="([^"]+)" rel="next">', page)
            url = m.group(1).replace("&amp;", "&") if m else None
        expected = [r.seq for r in c.entries() if r.action == "ticket.viewed"]
        assert len(expected) == 20
        assert seen == expected[::-1]
    finally:
        c.log.close()


def test_chart_counts_the_query_per_day(console: Console) -> None:
    """The SVG chart has one bar per day; today's bar counts today's matches."""
    helpdesk_history(console)
    c = console.signed_in()
    page = c.get("/console/events", params={"q": "action:ticket.viewed"}).text
    svg = re.search(r"<svg viewBox=[^>]*class=\"bars\">.*?</svg>", page, re.S).group(0)  # type: ignore[union-attr]
    titles = re.findall(r"<title>(\d{4}-\d\d-\d\d): (\d+) events</title>", svg)
    assert len(titles) == 30
    expected = sum(1 for r in console.entries() if r.action == "ticket.viewed")
    assert int(titles[-1][1]) == expected
    assert sum(int(n) for _, n in titles) == expected
    assert "<script" not in svg


# -- one event -------------------------------------------------------------------
def test_event_page_shows_everything_and_is_logged(console: Console) -> None:
    """Header fields, before/after, the actor from the directory, context,
    raw canonical JSON and a verified mark; the view is audit_log.viewed."""
    helpdesk_history(console)
    seq = max(r.seq for r in console.entries() if r.action == "role.revoked")
    c = console.signed_in()
    r = c.get(f"/console/events/{seq}", params={"q": "action:role.*"})
    assert r.status_code == 200
    html = r.text
    assert "<strong>Verified</strong>" in html
    assert '<td class="before">admin</td><td class="after">agent</td>' in html
    assert "Root Admin" in html and "admin_1" in html
    row = console.log.get_entry(console.tenant, seq)
    assert row.leaf_hash.hex() not in html  # shown in base64, as everywhere
    leaf = re.search(r'<pre class="raw" id="leaf-json">(.*?)</pre>', html, re.S).group(1)  # type: ignore[union-attr]
    assert leaf.replace("&#34;", '"').startswith('{"_v":1,"action":"role.revoked"')
    _, payload = console.last("audit_log.viewed")
    assert payload["metadata"]["query"] == "action:role.*"
    assert payload["metadata"]["rows"] == 1


def test_event_page_shows_an_erased_actor_as_erased(console: Console) -> None:
    """After erasure the page says so and shows no name, while the entry
    still verifies."""
    seq = console.log.append(console.tenant, [event(0, action="role.assigned")])[0].seq
    console.log.erase_actor(console.tenant, "agent_1")
    html = console.signed_in().get(f"/console/events/{seq}").text
    assert "Erased from the directory" in html
    assert "Agent Agent_1" not in html
    assert "<strong>Verified</strong>" in html


def test_event_page_flags_an_edited_entry(console: Console) -> None:
    """An entry edited in the database is shown as not verified."""
    seq = console.log.append(console.tenant, [event(i) for i in range(3)])[1].seq
    console.log.checkpoint(console.tenant)
    with raw_db(console.log.store.url) as run:
        run(
            "UPDATE entries SET outcome = 'failure' WHERE tenant_id = ? AND seq = ?",
            (console.tenant, seq),
        )
    html = console.signed_in().get(f"/console/events/{seq}").text
    assert "<strong>Not verified</strong>" in html
    assert "altered" in html


def test_unknown_event_is_a_404_page(console: Console) -> None:
    """A sequence number past the log's end is an HTML 404."""
    r = console.signed_in().get("/console/events/999")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")


# -- exports ---------------------------------------------------------------------
def test_csv_export_downloads_the_query_and_is_audited(console: Console) -> None:
    """The CSV button downloads every matching entry; the export is an
    audit_log.exported entry with the query and the row count."""
    helpdesk_history(console)
    c = console.signed_in()
    page = c.get("/console/events", params={"q": "action:role.*"}).text
    r = c.post(
        "/console/export", data={"csrf": csrf_of(page), "q": "action:role.*", "format": "csv"}
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].startswith("attachment;")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    expected = [e for e in console.entries() if e.action.startswith("role.")]
    assert sorted(int(x["seq"]) for x in rows) == [e.seq for e in expected]
    assert {x["action"] for x in rows} == {"role.assigned", "role.revoked"}
    _, payload = console.last("audit_log.exported")
    assert payload["metadata"]["query"] == "action:role.*"
    assert payload["metadata"]["rows"] == len(rows)


def test_ndjson_export_is_one_entry_per_line(console: Console) -> None:
    """The NDJSON button gives one entry object per line."""
    console.log.append(console.tenant, [event(i) for i in range(5)])
    c = console.signed_in()
    page = c.get("/console/events").text
    r = c.post("/console/export", data={"csrf": csrf_of(page), "q": "", "format": "ndjson"})
    lines = [json.loads(x) for x in r.text.splitlines()]
    assert {x["seq"] for x in lines} >= set(range(5))
    assert all("action" in x and "leaf_hash" in x for x in lines)


# -- saved searches --------------------------------------------------------------
def test_saved_searches_are_personal(console: Console) -> None:
    """A saved search appears as a link for its owner only, and can be deleted."""
    console.add_user("aud@acme.test", "auditor")
    c = console.signed_in()
    page = c.get("/console/events", params={"q": "action:role.*"}).text
    r = c.post(
        "/console/searches",
        data={"csrf": csrf_of(page), "name": "My role search", "q": "action:role.*"},
        follow_redirects=True,
    )
    link = '<a href="/console/events?q=action%3Arole.%2A" title="action:role.*">My role search</a>'
    assert link in r.text
    other = console.signed_in("aud@acme.test")
    assert "My role search" not in other.get("/console/events").text
    search_id = re.search(r"/console/searches/(s_[a-z2-7]+)/delete", r.text).group(1)  # type: ignore[union-attr]
    assert (
        other.post(
            f"/console/searches/{search_id}/delete",
            data={"csrf": csrf_of(other.get("/console/events").text)},
        ).status_code
        == 404
    )
    assert "My role search" in c.get("/console/events").text  # the auditor could not delete it
    c.post(f"/console/searches/{search_id}/delete", data={"csrf": csrf_of(page)})
    assert "My role search" not in c.get("/console/events").text


def test_saving_a_bad_query_is_refused(console: Console) -> None:
    """A saved search must parse."""
    c = console.signed_in()
    page = c.get("/console/events").text
    r = c.post("/console/searches", data={"csrf": csrf_of(page), "name": "x", "q": "foo:bar"})
    assert r.status_code == 422
    assert "unknown key" in r.text


# -- verification ----------------------------------------------------------------
def test_verification_page_shows_checkpoint_and_verifier_key(console: Console) -> None:
    """The newest checkpoint's note and the verifier key are on the page;
    the checkpoint downloads as text."""
    console.log.append(console.tenant, [event(i) for i in range(5)])
    cp = console.log.checkpoint(console.tenant)
    c = console.signed_in()
    html = c.get("/console/verify").text
    assert console.log.keys.verifier_keys()[0] in html
    assert cp.note.splitlines()[2] in html  # the root hash line
    note = c.get("/console/checkpoint.txt")
    assert note.headers["content-disposition"].startswith("attachment;")
    assert console.log.verify_checkpoint_note(note.text).origin.endswith(console.tenant)


def test_verify_now_runs_and_reports_an_intact_log(console: Console) -> None:
    """ "Verify now" runs in the background; the page refreshes itself while
    it runs and then reports the result."""
    console.log.append(console.tenant, [event(i) for i in range(50)])
    c = console.signed_in()
    page = c.get("/console/verify").text
    r = c.post("/console/verify", data={"csrf": csrf_of(page)}, follow_redirects=False)
    assert r.status_code == 303
    deadline = time.monotonic() + 20
    while True:
        html = c.get("/console/verify").text
        if "Verifying" not in html or time.monotonic() > deadline:
            break
        assert '<meta http-equiv="refresh" content="1">' in html
        time.sleep(0.1)
    assert "<strong>Intact.</strong>" in html


def test_verify_now_reports_tampering(console: Console) -> None:
    """A deleted entry is reported with the first bad sequence number."""
    seq = console.log.append(console.tenant, [event(i) for i in range(10)])[4].seq
    console.log.checkpoint(console.tenant)
    with raw_db(console.log.store.url) as run:
        run("DELETE FROM entries WHERE tenant_id = ? AND seq = ?", (console.tenant, seq))
    c = console.signed_in()
    c.post("/console/verify", data={"csrf": csrf_of(c.get("/console/verify").text)})
    deadline = time.monotonic() + 20
    html = ""
    while time.monotonic() < deadline:
        html = c.get("/console/verify").text
        if "Verifying" not in html:
            break
        time.sleep(0.1)
    assert "Problems found." in html and f"First bad sequence number: {seq}" in html
    # the same exact report as `kimonaudit verify`: the entry, and nothing untouched
    assert f"<li>missing entries: {seq}</li>" in html
    assert f"<li>missing: entry {seq} is missing</li>" in html
    assert "tampered" not in html


# -- API keys and users ----------------------------------------------------------
def test_owner_creates_an_api_key_shown_once_and_revokes_it(console: Console) -> None:
    """The key text is on the create response only; creation and revocation
    are auth.api_token.* entries with the console user as actor."""
    c = console.signed_in()
    page = c.get("/console/api-keys").text
    r = c.post(
        "/console/api-keys",
        data={"csrf": csrf_of(page), "name": "helpdesk", "scope": ["events:write", "events:read"]},
    )
    text = re.search(r"kak_[a-z2-7]{12}_[A-Za-z0-9_-]{43}", r.text).group(0)  # type: ignore[union-attr]
    tenant, scopes = console.log.authenticate(text)
    assert (tenant, scopes) == (console.tenant, ("events:write", "events:read"))
    assert text not in c.get("/console/api-keys").text
    row, _ = console.last("auth.api_token.created")
    assert row.actor_hash == console.log.actor_hash(console.tenant, console.owner.actor["id"])
    key_id = text[4:16]
    r = c.post(f"/console/api-keys/{key_id}/revoke", data={"csrf": csrf_of(page)})
    assert "The key was revoked" in r.text
    with pytest.raises(kimonaudit.errors.AuthError):
        console.log.authenticate(text)
    console.last("auth.api_token.revoked")


def test_invalid_api_key_form_is_explained(console: Console) -> None:
    """No scope: the form comes back with the reason."""
    c = console.signed_in()
    page = c.get("/console/api-keys").text
    r = c.post("/console/api-keys", data={"csrf": csrf_of(page), "name": "x"})
    assert r.status_code == 422
    assert "give at least one scope" in r.text


def test_owner_adds_a_user_who_can_sign_in_then_disables_them(console: Console) -> None:
    """A new user gets a one-time password; disabling signs them out and
    stops sign-in; both are entries in the log."""
    c = console.signed_in()
    page = c.get("/console/users").text
    r = c.post(
        "/console/users", data={"csrf": csrf_of(page), "email": "new@acme.test", "role": "admin"}
    )
    password = re.search(
        r'<div class="secret".*?<pre class="raw">([^<]+)</pre>', r.text, re.S
    ).group(1)  # type: ignore[union-attr]
    newcomer = console.client()
    assert sign_in(newcomer, console.tenant, "new@acme.test", password).status_code == 303
    _, created = console.last("user.created")
    assert created["changes"] == [{"field": "role", "from": None, "to": "admin"}]
    user_id = re.search(r"/console/users/(u_[a-z2-7]+)/disable", r.text).group(1)  # type: ignore[union-attr]
    c.post(f"/console/users/{user_id}/disable", data={"csrf": csrf_of(page)})
    assert newcomer.get("/console/events", follow_redirects=False).status_code == 303
    assert sign_in(console.client(), console.tenant, "new@acme.test", password).status_code == 401
    console.last("user.suspended")


def test_console_is_mounted_in_the_http_api(tmp_path: Path) -> None:
    """`create_app` serves the console at /console/, and a key revoked there
    is refused by the API at once (its auth cache forgets it)."""
    from kimonaudit.api import ApiSettings, create_app

    log = kimonaudit.open(f"sqlite:///{tmp_path / 'a.db'}", key_file=str(tmp_path / "k"))
    try:
        tenant = log.create_tenant("acme").id
        key, text = log.create_api_key(tenant, "reader", ["events:read"])
        app = create_app(log, settings=ApiSettings(run_jobs=False, auth_cache_seconds=3600))
        accounts = next(r for r in app.routes if getattr(r, "path", "") == "/console")
        accounts.app.state.console.accounts.create_user(  # type: ignore[attr-defined]
            tenant, "o@acme.test", PASSWORD, "owner"
        )
        with TestClient(app) as c:
            auth = {"Authorization": f"Bearer {text}"}
            assert c.get("/v1/checkpoints/latest", headers=auth).status_code == 200
            assert sign_in(c, tenant, "o@acme.test", PASSWORD).status_code == 303
            page = c.get("/console/api-keys").text
            c.post(f"/console/api-keys/{key.key_id}/revoke", data={"csrf": csrf_of(page)})
            assert c.get("/v1/checkpoints/latest", headers=auth).status_code == 401
            assert c.get("/console/static/console.css").status_code == 200
    finally:
        log.close()


def test_console_flows_on_every_store(db_url: str, tmp_path: Path) -> None:
    """Sign in, search, open a verified event and export, on SQLite and PostgreSQL."""
    log = kimonaudit.open(db_url, key_file=str(tmp_path / "k.key"))
    try:
        tenant = log.create_tenant("acme").id
        console_app = create_console(log, FAST)
        console_app.state.console.accounts.create_user(tenant, "o@acme.test", PASSWORD, "owner")
        log.append(tenant, [event(i) for i in range(30)])
        c = TestClient(Starlette(routes=[Mount("/console", console_app)]))
        assert sign_in(c, tenant, "o@acme.test", PASSWORD).status_code == 303
        page = c.get("/console/events", params={"q": "action:role.* is:security"}).text
        assert set(actions_of(page)) == {"role.assigned"}
        seq = int(re.findall(r'data-seq="(\d+)"', page)[0])
        assert "<strong>Verified</strong>" in c.get(f"/console/events/{seq}").text
        r = c.post("/console/export", data={"csrf": csrf_of(page), "q": "action:role.*"})
        assert len(list(csv.DictReader(io.StringIO(r.text)))) == 6
        actions = [e.action for e in log.store.iter_entries(tenant)]
        assert actions[-3:] == ["audit_log.searched", "audit_log.viewed", "audit_log.exported"]
    finally:
        log.close()


# -- log access: recorded, quiet, hidden unless asked -----------------------------
def _row_classes(html: str) -> dict[str, list[str]]:
    """action -> the class attribute of each row showing it."""
    out: dict[str, list[str]] = {}
    for row in rows_of(html):
        cls = re.match(r'<tr class="([^"]*)"', row).group(1)  # type: ignore[union-attr]
        action = re.search(r"<code>([a-z0-9_.]+)</code>", row).group(1)  # type: ignore[union-attr]
        out.setdefault(action, []).append(cls)
    return out


def test_log_access_is_hidden_by_default_and_quiet_when_included(console: Console) -> None:
    """The viewer's own page views and searches are recorded but do not fill
    the stream: hidden by default, shown on "Include log access" in a quiet
    style without the security highlight; role changes keep theirs."""
    helpdesk_history(console)
    c = console.signed_in()
    for _ in range(3):
        c.get("/console/events")
    c.get(f"/console/events/{console.entries()[3].seq}")
    assert {r.action for r in console.entries()} >= {"audit_log.searched", "audit_log.viewed"}

    page = c.get("/console/events").text
    shown = _row_classes(page)
    assert shown and not {"audit_log.searched", "audit_log.viewed"} & set(shown)
    assert all("security" in cls for cls in shown["role.assigned"])
    toggle = re.search(r'<a class="chip chip-access"[^>]*>', page).group(0)  # type: ignore[union-attr]
    assert 'aria-pressed="false"' in toggle and "access=1" in toggle
    assert "Include log access" in page and 'id="access-note"' in page

    page = c.get("/console/events", params={"access": "1"}).text
    shown = _row_classes(page)
    for action in ("audit_log.searched", "audit_log.viewed"):
        assert shown[action] and all(
            "log-access" in cls and "security" not in cls for cls in shown[action]
        )
    toggle = re.search(r'<a class="chip chip-access on"[^>]*>', page).group(0)  # type: ignore[union-attr]
    assert 'aria-pressed="true"' in toggle and "access=1" not in toggle
    # every link of the stream keeps the toggle on
    assert re.search(r'href="/console/events\?q=is%3Asecurity&amp;access=1"', page)

    # A query about the log's own use shows it without the toggle.
    page = c.get("/console/events", params={"q": "action:audit_log.*"}).text
    assert set(_row_classes(page)) >= {"audit_log.searched", "audit_log.viewed"}
    assert 'class="chip chip-access on forced"' in page


def test_hidden_log_access_pages_and_exports_consistently(console: Console) -> None:
    """With log access hidden, the Older link pages through the same rows,
    the export holds exactly them, and both are recorded with the viewer's
    query and `log_access: hidden`."""
    console.log.append(console.tenant, [event(i) for i in range(150)])
    c = console.signed_in()
    for _ in range(30):
        c.get("/console/events", params={"q": "-action:macro.applied"})
    first = c.get("/console/events", params={"q": "-action:macro.applied"}).text
    older = re.search(r'href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")  # type: ignore[union-attr]
    assert "access" not in older
    second = c.get(older).text
    seen = _row_classes(first) | _row_classes(second)
    assert seen and not {"audit_log.searched", "audit_log.viewed"} & set(seen)
    _, payload = console.last("audit_log.searched")
    assert payload["metadata"]["query"] == "-action:macro.applied"
    assert payload["metadata"]["log_access"] == "hidden"
    r = c.post(
        "/console/export",
        data={"csrf": csrf_of(first), "q": "-action:macro.applied", "format": "ndjson"},
    )
    exported = {json.loads(x)["action"] for x in r.text.splitlines()}
    assert exported and not exported & {"audit_log.searched", "audit_log.viewed"}
    _, payload = console.last("audit_log.exported")
    assert payload["metadata"]["query"] == "-action:macro.applied"
    assert payload["metadata"]["log_access"] == "hidden"
