"""The console's Destinations page: add (secret shown once), status badge,
lag chart, pause/resume/delete as audited changes, auditors read-only."""

from __future__ import annotations

from pathlib import Path

import pytest

from kimonaudit.destinations import Destinations
from kimonaudit.sinks import ssrf
from kimonaudit.sinks.delivery import Deliverer
from tests.consoles import csrf_of, make_console
from tests.helpers import event
from tests.sinks.receivers import HttpReceiver


@pytest.fixture(autouse=True)
def _loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIMONAUDIT_DESTINATION_ALLOWLIST", "127.0.0.0/8")


def test_admin_adds_sees_health_and_pauses(tmp_path: Path) -> None:
    """The full round: add, deliver, see status and chart, pause, resume, delete."""
    with make_console(tmp_path) as con, HttpReceiver() as rx:
        c = con.signed_in()
        page = c.get("/console/destinations")
        assert page.status_code == 200 and "No destinations yet" in page.text
        r = c.post("/console/destinations", data={
            "csrf": csrf_of(page.text), "name": "siem", "kind": "webhook", "format": "",
            "url": rx.url, "filter": "", "settings": "", "secrets": "",
        })  # fmt: skip
        assert r.status_code == 200, r.text
        assert "shown this once" in r.text and "whsec_" in r.text
        dest_id = r.text.split("(dst_", 1)[1].split(")", 1)[0]
        dest_id = "dst_" + dest_id
        con.log.append(con.tenant, [event(i) for i in range(5)])
        d = Deliverer(Destinations(con.log, ssrf.parse_allowlist("127.0.0.0/8")), timeout_s=2)
        try:
            d.run_once()
            d.run_once()
        finally:
            d.close()
        page = c.get("/console/destinations")
        assert "whsec_" not in page.text  # never again
        assert 'class="badge-access status-ok"' in page.text
        assert "<polyline" in page.text and f'data-destination="{dest_id}"' in page.text
        r = c.post(f"/console/destinations/{dest_id}/pause", data={"csrf": csrf_of(page.text)},
                   follow_redirects=True)  # fmt: skip
        assert "status-paused" in r.text and "paused in the console" in r.text
        r = c.post(f"/console/destinations/{dest_id}/resume", data={"csrf": csrf_of(r.text)},
                   follow_redirects=True)  # fmt: skip
        assert "resumed" in r.text
        r = c.post(f"/console/destinations/{dest_id}/delete", data={"csrf": csrf_of(r.text)},
                   follow_redirects=True)  # fmt: skip
        assert "No destinations yet" in r.text
        row, _ = con.last("audit_stream.deleted")
        assert row.actor_type == "console_user" or row.actor_hash
        actions = [e.action for e in con.entries() if e.action.startswith("audit_stream.")]
        assert actions == ["audit_stream.created", "audit_stream.paused",
                           "audit_stream.resumed", "audit_stream.deleted"]  # fmt: skip


def test_bad_input_is_shown_and_auditors_cannot_change(tmp_path: Path) -> None:
    """A refused URL comes back as a message; an auditor gets no forms."""
    with make_console(tmp_path) as con:
        c = con.signed_in()
        page = c.get("/console/destinations")
        r = c.post("/console/destinations", data={
            "csrf": csrf_of(page.text), "name": "x", "kind": "webhook", "format": "",
            "url": "https://10.1.2.3/hook", "filter": "", "settings": "", "secrets": "",
        })  # fmt: skip
        assert r.status_code == 422 and "refused" in r.text and "10.1.2.3" in r.text
        con.add_user("aud@acme.test", "auditor")
        a = con.signed_in("aud@acme.test")
        page = a.get("/console/destinations")
        assert page.status_code == 200 and "Add a destination" not in page.text


def _edit_form(page: str) -> dict[str, str]:
    """The edit form's fields as the page fills them in."""
    import html
    import re

    form = page.split('id="edit-destination"', 1)[1].split("</form>", 1)[0]
    out = {"csrf": csrf_of(page)}
    for m in re.finditer(r'<input id="[^"]+" name="([^"]+)"[^>]*value="([^"]*)"', form):
        out[m.group(1)] = html.unescape(m.group(2))
    for m in re.finditer(r'<textarea id="[^"]+" name="([^"]+)"[^>]*>([^<]*)</textarea>', form):
        out[m.group(1)] = html.unescape(m.group(2))
    sel = re.search(r'name="format">.*?<option value="([^"]+)" selected', form)
    out["format"] = sel.group(1) if sel else ""
    return out


def test_admin_changes_a_destination_in_the_form(tmp_path: Path) -> None:
    """The edit form shows the settings (never a secret), saves only what
    changed as one audit_stream.updated entry, a refused value comes back
    with the field named and the secrets not echoed, a new signing secret is
    shown once, and markup in a name stays text."""
    hostile = '<img src=x onerror="window.__xss=1">'
    with make_console(tmp_path) as con, HttpReceiver() as rx:
        dests = Destinations(con.log, ssrf.parse_allowlist("127.0.0.0/8"))
        d, _ = dests.create(con.tenant, name=hostile, kind="splunk_hec", url=rx.url,
                              secrets={"token": "tok-secret-1"},
                              settings={"index": "a", "host": "h"})  # fmt: skip
        c = con.signed_in()
        listing = c.get("/console/destinations").text
        assert f'href="/console/destinations/{d.id}/edit"' in listing
        assert hostile not in listing and "&lt;img src=x" in listing
        page = c.get(f"/console/destinations/{d.id}/edit")
        assert page.status_code == 200 and hostile not in page.text and "&lt;img" in page.text
        assert "tok-secret-1" not in page.text
        form = _edit_form(page.text)
        assert form["settings"] == "host=h\nindex=a" and form["max_events"] == "500"
        # A refused URL: 422, the field named, the typed values kept, no secret echoed.
        bad = {**form, "url": "https://10.9.8.7/x", "secrets": "token=tok-secret-2"}
        r = c.post(f"/console/destinations/{d.id}/edit", data=bad)
        assert r.status_code == 422 and "url:" in r.text and "10.9.8.7" in r.text
        assert "tok-secret-2" not in r.text
        r = c.post(f"/console/destinations/{d.id}/edit",
                   data={**_edit_form(r.text), "url": rx.url, "max_events": "x"})  # fmt: skip
        assert r.status_code == 422 and "batch.max_events" in r.text
        # The real change.
        form = {**_edit_form(c.get(f"/console/destinations/{d.id}/edit").text),
                "name": "splunk prod", "format": "cef", "filter": "is:security",
                "max_events": "25", "settings": "index=audit",
                "secrets": "token=tok-secret-2"}  # fmt: skip
        r = c.post(f"/console/destinations/{d.id}/edit", data=form, follow_redirects=True)
        assert r.status_code == 200 and "applies from its next batch" in r.text
        assert "tok-secret-2" not in r.text and "tok-secret-1" not in r.text
        shown = dests.get(con.tenant, d.id).to_json()
        assert shown["name"] == "splunk prod" and shown["format"] == "cef"
        assert shown["filter"] == "is:security" and shown["batch"]["max_events"] == 25
        assert shown["settings"] == {"index": "audit"}  # host removed with its line
        assert dests.secrets(dests.get(con.tenant, d.id).record) == {"token": "tok-secret-2"}
        row, payload = con.last("audit_stream.updated")
        assert payload["metadata"]["changed"] == ["name", "format", "filter",
                                                  "batch.max_events", "settings.host",
                                                  "settings.index", "secrets.token"]  # fmt: skip
        assert row.security and row.actor_hash
        assert all(b"tok-secret" not in (e.payload or b"") for e in con.entries())
        # Saving the form unchanged appends nothing.
        n = len(con.entries())
        r = c.post(f"/console/destinations/{d.id}/edit",
                   data=_edit_form(c.get(f"/console/destinations/{d.id}/edit").text),
                   follow_redirects=True)  # fmt: skip
        assert "Nothing was changed" in r.text and len(con.entries()) == n
        # A webhook's new signing secret: shown on the response, once.
        hook, hgen = dests.create(con.tenant, name="hook", kind="webhook", url=rx.url)
        page = c.get(f"/console/destinations/{hook.id}/edit").text
        assert 'name="new_signing_secret"' in page and 'name="ca_pem"' not in page
        r = c.post(f"/console/destinations/{hook.id}/edit",
                   data={**_edit_form(page), "new_signing_secret": "1"})  # fmt: skip
        assert r.status_code == 200 and "shown this once" in r.text
        new = r.text.split('<code class="secret">', 1)[1].split("<", 1)[0]
        assert new.startswith("whsec_") and new != hgen["signing_secret"]
        assert new not in c.get("/console/destinations").text
        assert new not in c.get(f"/console/destinations/{hook.id}/edit").text


def test_edit_needs_csrf_admin_and_this_tenant(tmp_path: Path) -> None:
    """Without the session's CSRF token: 403 and nothing changes; an
    auditor can neither open nor post the form; another tenant's
    destination is 404."""
    with make_console(tmp_path) as con, HttpReceiver() as rx:
        dests = Destinations(con.log, ssrf.parse_allowlist("127.0.0.0/8"))
        d, _ = dests.create(con.tenant, name="hook", kind="webhook", url=rx.url)
        other = con.log.create_tenant("other").id
        theirs, _ = dests.create(other, name="theirs", kind="webhook", url=rx.url)
        c = con.signed_in()
        form = _edit_form(c.get(f"/console/destinations/{d.id}/edit").text)
        n = len(con.entries())
        for token in ("", "A" * 43):
            r = c.post(f"/console/destinations/{d.id}/edit",
                       data={**form, "csrf": token, "name": "changed"})  # fmt: skip
            assert r.status_code == 403
        assert len(con.entries()) == n and dests.get(con.tenant, d.id).record.name == "hook"
        assert c.get(f"/console/destinations/{theirs.id}/edit").status_code == 404
        r = c.post(f"/console/destinations/{theirs.id}/edit", data={**form, "name": "stolen"})
        assert r.status_code == 404 and dests.get(other, theirs.id).record.name == "theirs"
        con.add_user("aud@acme.test", "auditor")
        a = con.signed_in("aud@acme.test")
        assert a.get(f"/console/destinations/{d.id}/edit").status_code == 403
        token = csrf_of(a.get("/console/events").text)
        r = a.post(f"/console/destinations/{d.id}/edit", data={**form, "csrf": token,
                                                               "name": "aud"})  # fmt: skip
        assert r.status_code == 403 and dests.get(con.tenant, d.id).record.name == "hook"
        assert "Change</a>" not in a.get("/console/destinations").text
