"""The console's retention and privacy pages (issue 8): plan, retention and
legal hold; erasure with confirmation; owner-only redaction with
confirmation and the reason shown on the entry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.consoles import Console, csrf_of, helpdesk_history, make_console


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    with make_console(tmp_path) as c:
        yield c


def test_retention_page_changes_are_entries(console: Console) -> None:
    """An owner changes plan, own retention and legal hold; each is logged; bad input
    is a 422 page, not a change."""
    c = console.signed_in()
    page = c.get("/console/retention")
    assert page.status_code == 200 and "12 months" in page.text
    assert "Next purge" in page.text and "Purged by policy" in page.text
    token = csrf_of(page.text)
    r = c.post("/console/retention/plan", data={"csrf": token, "plan": "enterprise"})
    assert r.status_code == 200 and "36 months" in r.text
    r = c.post("/console/retention/months", data={"csrf": token, "months": "6"})
    assert r.status_code == 422 and "below 12 months" in r.text
    r = c.post("/console/retention/months", data={"csrf": token, "months": "84"})
    assert "<strong>84 months</strong>" in r.text
    r = c.post("/console/retention/hold", data={"csrf": token, "hold": "on", "reason": "case 7"})
    assert "<strong>on</strong>" in r.text
    rows = [e for e in console.entries() if e.action == "audit.retention.changed"]
    assert len(rows) == 3
    assert all(e.actor_type == "console_user" for e in rows)
    assert console.log.get_tenant(console.tenant).legal_hold


def test_auditor_cannot_change_retention(console: Console) -> None:
    """Auditors see the settings but are refused changes."""
    console.add_user("aud@acme.test", "auditor")
    c = console.signed_in("aud@acme.test")
    page = c.get("/console/retention")
    assert "can see these settings but not change them" in page.text
    r = c.post("/console/retention/plan", data={"csrf": csrf_of(page.text), "plan": "team"})
    assert r.status_code == 403
    assert console.log.get_tenant(console.tenant).plan == "free"


def test_erasure_asks_for_confirmation_then_unlinks(console: Console) -> None:
    """The first post only asks; the confirmed one erases; the stream then shows
    'erased actor' and actor:<id> finds nothing."""
    helpdesk_history(console)
    c = console.signed_in()
    token = csrf_of(c.get("/console/retention").text)
    r = c.post("/console/actors/erase", data={"csrf": token, "actor_id": "agent_9"})
    assert "Erase this person?" in r.text
    assert console.log.search(console.tenant, "actor:agent_9").entries  # not yet
    r = c.post(
        "/console/actors/erase", data={"csrf": token, "actor_id": "agent_9", "confirm": "yes"}
    )
    assert r.status_code == 200 and "was erased from the directory" in r.text
    assert not console.log.search(console.tenant, "actor:agent_9").entries
    stream = c.get("/console/events", params={"q": "target:ticket:10482"}).text
    assert "erased actor" in stream and "Ann Lee" not in stream
    row, payload = console.last("actor.erased")
    assert "agent_9" not in repr(row) + repr(payload)


def test_redaction_is_owner_only_confirmed_and_shows_the_reason(console: Console) -> None:
    """Admins are refused; the owner confirms with a reason; the entry page shows it."""
    ev = {"action": "ticket.viewed", "context": {"ip": "203.0.113.7"}}
    seq = console.log.append(console.tenant, [ev])[0].seq
    console.add_user("adm@acme.test", "admin")
    adm = console.signed_in("adm@acme.test")
    assert adm.get(f"/console/events/{seq}/redact").status_code == 403
    c = console.signed_in()
    event_page = c.get(f"/console/events/{seq}").text
    assert f"/events/{seq}/redact" in event_page
    form = c.get(f"/console/events/{seq}/redact")
    assert "Redact entry" in form.text
    token = csrf_of(form.text)
    r = c.post(f"/console/events/{seq}/redact", data={"csrf": token, "reason": " "})
    assert r.status_code == 422
    r = c.post(f"/console/events/{seq}/redact", data={"csrf": token, "reason": "DPA request 12"})
    assert r.status_code == 200 and "DPA request 12" in r.text and "203.0.113.7" not in r.text
    assert console.log.verify(console.tenant).ok
    row, payload = console.last("audit_log.redacted")
    assert payload["metadata"]["reason"] == "DPA request 12" and row.actor_type == "console_user"
