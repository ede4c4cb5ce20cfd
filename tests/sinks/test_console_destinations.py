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
