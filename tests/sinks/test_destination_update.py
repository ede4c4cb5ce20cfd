"""Changing a destination: `PATCH /v1/destinations/{id}` in process over
both stores, and what delivery does with a change (the next batch follows
it; a batch saved for retry keeps its bytes)."""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

import kimonaudit
from kimonaudit.api import ApiSettings, create_app
from kimonaudit.core.catalogue import Severity
from kimonaudit.destinations import Destinations
from kimonaudit.service import AuditLog
from kimonaudit.sinks import ssrf
from kimonaudit.sinks.delivery import Deliverer
from tests.helpers import event
from tests.sinks.receivers import HttpReceiver, deliver_until, webhook_checker, webhook_events

LOOPBACK = ssrf.parse_allowlist("127.0.0.0/8")

# Ten quick retries, a short lease: these tests change a destination mid-way.
_drain = functools.partial(
    deliver_until, timeout=15.0, retries=10, lease_s=5, timeout_s=2, pause=0.02
)


class Api:
    def __init__(self, client: TestClient, log: AuditLog, keys: dict[str, str]) -> None:
        self.client, self.log, self.keys = client, log, keys
        self.tenant = log.authenticate(keys["admin"])[0]
        self.other = log.authenticate(keys["other"])[0]

    def h(self, key: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[key]}"}

    def create(self, **body: Any) -> dict[str, Any]:
        r = self.client.post("/v1/destinations", json=body, headers=self.h())
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]

    def patch(self, did: str, body: Any, key: str = "admin") -> Any:
        return self.client.patch(f"/v1/destinations/{did}", json=body, headers=self.h(key))

    def updates(self, tenant: str | None = None) -> list[dict[str, Any]]:
        return [
            {**json.loads(r.payload or b"{}"), "severity": r.severity, "security": r.security}
            for r in self.log.store.iter_entries(tenant or self.tenant)
            if r.action == "audit_stream.updated"
        ]


@pytest.fixture
def api(db_url: str, key_file: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Api]:
    monkeypatch.setenv("KIMONAUDIT_DESTINATION_ALLOWLIST", "127.0.0.0/8")
    log = kimonaudit.open(db_url, key_file=key_file)
    t, other = log.create_tenant("acme"), log.create_tenant("other")
    keys = {
        "admin": log.create_api_key(t.id, "admin", ["admin"])[1],
        "read": log.create_api_key(t.id, "reader", ["events:read"])[1],
        "other": log.create_api_key(other.id, "admin", ["admin"])[1],
    }
    app = create_app(log, settings=ApiSettings(run_jobs=False))
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Api(client, log, keys)
    finally:
        log.close()


def test_patch_changes_fields_and_logs_their_names(api: Api) -> None:
    """Name, format, filter, batching, URL, settings and a secret change;
    the response and the entry name the fields, never the secret."""
    with HttpReceiver() as rx, HttpReceiver() as rx2:
        d = api.create(name="splunk", kind="splunk_hec", url=rx.url,
                       secrets={"token": "old-token-1"}, settings={"index": "a"})  # fmt: skip
        r = api.patch(d["id"], {
            "name": "splunk prod", "format": "cef", "filter": "is:security",
            "batch": {"max_events": 50}, "url": rx2.url.replace("/hook", ""),
            "settings": {"index": "audit", "sourcetype": "cef:audit"},
            "secrets": {"token": "new-token-2"},
        })  # fmt: skip
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["changed"] == ["name", "format", "filter", "batch.max_events",
                                  "settings.index", "settings.sourcetype", "url",
                                  "secrets.token"]  # fmt: skip
        assert got["secrets"] == {} and "token" not in json.dumps(got["settings"])
        assert "new-token-2" not in r.text and "old-token-1" not in r.text
        shown = api.client.get(f"/v1/destinations/{d['id']}", headers=api.h()).json()
        assert shown["name"] == "splunk prod" and shown["format"] == "cef"
        assert shown["filter"] == "is:security" and shown["batch"]["max_events"] == 50
        assert shown["batch"]["max_wait_ms"] == d["batch"]["max_wait_ms"]  # merged, not reset
        assert shown["settings"] == {"index": "audit", "sourcetype": "cef:audit"}
        assert shown["url"].startswith("http://127.0.0.1:") and str(rx2.port) in shown["url"]
        (entry,) = api.updates()
        meta = entry["metadata"]
        assert meta["changed"] == got["changed"]
        assert meta["previous"] == {"name": "splunk", "format": "json", "filter": "",
                                    "host": "127.0.0.1"}  # fmt: skip
        assert entry["severity"] == Severity.HIGH and entry["security"]
        for row in api.log.store.iter_entries(api.tenant):
            assert b"new-token-2" not in (row.payload or b"")
            assert b"old-token-1" not in (row.payload or b"")
        # The sealed secret is the new one.
        rec = api.log.store.get_destination(api.tenant, d["id"])
        assert Destinations(api.log).secrets(rec) == {"token": "new-token-2"}
        # Settings removed with null; nothing changed, nothing appended.
        r = api.patch(d["id"], {"settings": {"sourcetype": None}})
        assert r.json()["changed"] == ["settings.sourcetype"] and r.json()["settings"] == {
            "index": "audit"
        }
        r = api.patch(d["id"], {"name": "splunk prod", "settings": {"index": "audit"}})
        assert r.status_code == 200 and r.json()["changed"] == []
        assert len(api.updates()) == 2


def test_patch_validation_names_the_field(api: Api) -> None:
    """Every refusal is a 4xx naming the field, and changes nothing."""
    with HttpReceiver() as rx:
        wh = api.create(name="hook", kind="webhook", url=rx.url)
        hec = api.create(name="hec", kind="splunk_hec", url=rx.url, secrets={"token": "t"})
        before = api.client.get(f"/v1/destinations/{wh['id']}", headers=api.h()).json()
        cases = [
            (wh, {"format": "cef"}, "format"),
            (wh, {"batch": {"max_events": 0}}, "batch.max_events"),
            (wh, {"batch": {"max_bytes": 10}}, "batch.max_bytes"),
            (wh, {"batch": {"wait": 5}}, "batch"),
            (wh, {"settings": {"index": "x"}}, "settings"),
            (wh, {"filter": "action:("}, "filter"),
            (wh, {"url": "https://10.1.2.3/hook"}, "url"),
            (wh, {"url": "ftp://127.0.0.1/x"}, "url"),
            (wh, {"secrets": {"signing_secret": "not-a-secret"}}, "secrets.signing_secret"),
            (wh, {"secrets": {"token": "x"}}, "secrets"),
            (wh, {"name": ""}, "name"),
            (wh, {"kind": "syslog"}, "kind"),
            (hec, {"secrets": {"token": None}}, "secrets.token"),
            (hec, {"new_signing_secret": True}, "kind"),
            (hec, {"settings": {"ack": "yes"}}, "settings.ack"),
        ]
        for dest, body, field in cases:
            r = api.patch(dest["id"], body)
            assert r.status_code == 422, (body, r.text)
            err = r.json()["error"]
            paths = [f.get("path", f.get("field")) for f in err.get("fields", [])]
            assert field in paths or err["message"].startswith(f"{field}:"), (body, err)
        after = api.client.get(f"/v1/destinations/{wh['id']}", headers=api.h()).json()
        after.pop("health"), before.pop("health")  # lag seconds move on
        assert after == before and api.updates() == []
        r = api.client.patch(f"/v1/destinations/{wh['id']}", content=b"{",
                             headers={**api.h(), "Content-Type": "application/json"})  # fmt: skip
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"


def test_patch_is_admin_only_and_tenant_isolated(api: Api) -> None:
    """Another tenant's destination id is 404 to this tenant's admin (and
    untouched); a key without admin scope is 403; an unknown id 404."""
    with HttpReceiver() as rx:
        d = api.create(name="hook", kind="webhook", url=rx.url)
        r = api.patch(d["id"], {"name": "stolen", "url": "http://127.0.0.1:9/x"}, key="other")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
        assert api.patch(d["id"], {"name": "x"}, key="read").status_code == 403
        assert api.patch("dst_0000000000000000", {"name": "x"}).status_code == 404
        shown = api.client.get(f"/v1/destinations/{d['id']}", headers=api.h()).json()
        assert shown["name"] == "hook" and shown["url"] == rx.url
        assert api.updates() == [] and api.updates(api.other) == []


def test_new_signing_secret_is_shown_once_and_signs(api: Api) -> None:
    """A generated signing secret comes back once; deliveries verify with it
    and no longer with the old one; a given secret is stored, never echoed."""
    from standardwebhooks.webhooks import Webhook

    with HttpReceiver() as rx:
        d = api.create(name="hook", kind="webhook", url=rx.url, batch={"max_wait_ms": 0})
        old = d["secrets"]["signing_secret"]
        r = api.patch(d["id"], {"new_signing_secret": True})
        new = r.json()["secrets"]["signing_secret"]
        assert new.startswith("whsec_") and new != old
        assert r.json()["changed"] == ["secrets.signing_secret"]
        assert new not in api.client.get(f"/v1/destinations/{d['id']}", headers=api.h()).text
        api.log.append(api.tenant, [event(1)])
        dests = Destinations(api.log, LOOPBACK)
        _drain(dests, lambda: len(rx.received) >= 1)
        req = rx.received[0]
        Webhook(new).verify(req.body, req.headers)
        with pytest.raises(Exception, match="signature"):
            Webhook(old).verify(req.body, req.headers)
        given = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
        r = api.patch(d["id"], {"secrets": {"signing_secret": given}})
        assert r.status_code == 200 and given not in r.text and r.json()["secrets"] == {}
        r = api.patch(d["id"], {"secrets": {"signing_secret": given}, "new_signing_secret": True})
        assert r.status_code == 422
        for row in api.log.store.iter_entries(api.tenant):
            for s in (old, new, given):
                assert s.encode() not in (row.payload or b"")


def test_openapi_documents_patch(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    op = spec["paths"]["/v1/destinations/{destination_id}"]["patch"]
    assert {"200", "404", "422"} <= set(op["responses"])
    props = op["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {"name", "format", "url", "filter", "batch", "settings", "secrets",
            "new_signing_secret"} == set(props)  # fmt: skip
    assert op["requestBody"]["required"] is True


@pytest.fixture
def log(db_url: str, key_file: str) -> Iterator[AuditLog]:
    lg = kimonaudit.open(db_url, key_file=key_file)
    yield lg
    lg.close()


def test_change_applies_from_the_next_batch_and_a_saved_batch_keeps_its_bytes(
    log: AuditLog,
) -> None:
    """A batch fails and is saved for retry; the format and the filter are
    changed; the retry sends the same bytes under the same webhook-id, and
    only the batches after it follow the new format and filter."""
    tid = log.create_tenant("acme").id
    dests = Destinations(log, LOOPBACK)
    with HttpReceiver() as rx:
        dest, gen = dests.create(tid, name="hook", kind="webhook", url=rx.url,
                                 batch={"max_wait_ms": 0, "max_events": 100})  # fmt: skip
        rx.check = webhook_checker(gen["signing_secret"])
        log.append(tid, [event(i) for i in range(10)])
        rx.plan.replies = [(503, {}, 0.0)]
        d = Deliverer(dests, schedule=(0.05,) * 10, lease_s=5, timeout_s=2)
        try:
            d.run_once()
        finally:
            d.close()
        assert len(rx.attempts) == 1 and rx.received == []
        failed = rx.attempts[0]
        dests.update(tid, dest.id, format="ocsf", filter="is:security")
        log.append(tid, [event(i) for i in range(10, 20)])
        _drain(dests, lambda: dests.get(tid, dest.id).health.lag_events == 0)
        retried, *later = rx.received
        assert retried.body == failed.body
        assert retried.headers["webhook-id"] == failed.headers["webhook-id"]
        first = retried.json["data"]["events"]
        assert [e["seq"] for e in first] == list(range(11))  # created + 10, native JSON
        assert all(e["type"] == "audit.event" and "data" in e for e in first)
        after = [e for r in later for e in r.json["data"]["events"]]
        entries = [e for e in after if e.get("class_uid") != 1008]  # not checkpoints
        assert entries and all("class_uid" in e for e in entries)  # OCSF now
        assert all(e["unmapped"]["kimonaudit"]["security"] for e in entries)
        actions = [e["metadata"]["event_code"] for e in entries]
        assert "audit_stream.updated" in actions and "ticket.viewed" not in actions
        assert [e["metadata"]["sequence"] for e in entries] == sorted(
            e["metadata"]["sequence"] for e in entries
        )
        assert webhook_events(rx)[0]["seq"] == 0


def test_fixing_the_url_of_a_failing_destination_retries_at_once(log: AuditLog) -> None:
    """A destination failing on a dead URL, its next attempt an hour away:
    a new URL makes it due now, and the waiting entries arrive in order."""
    tid = log.create_tenant("acme").id
    dests = Destinations(log, LOOPBACK)
    with HttpReceiver() as dead, HttpReceiver() as live:
        dead.plan.replies = [(503, {}, 0.0)] * 10
        dest, gen = dests.create(tid, name="hook", kind="webhook", url=dead.url,
                                 batch={"max_wait_ms": 0})  # fmt: skip
        log.append(tid, [event(i) for i in range(5)])
        d = Deliverer(dests, schedule=(3600,) * 3, lease_s=5, timeout_s=2)
        try:
            d.run_once()
            assert dests.get(tid, dest.id).health.delivery.next_attempt_at > log.now_us()
            _, changed, _ = dests.update(tid, dest.id, url=live.url)
            assert changed == ["url"]
            live.check = webhook_checker(gen["signing_secret"])
            d.run_once()
        finally:
            d.close()
        # The saved batch (seq 0-5), then the audit_stream.updated entry.
        events = webhook_events(live)
        assert [e["seq"] for e in events] == list(range(7))
        assert events[6]["data"]["action"] == "audit_stream.updated"
        h = dests.get(tid, dest.id).health
        assert h.status == "ok" and h.lag_events == 0 and h.delivery.failed_attempts == 1


def test_a_url_derived_from_a_setting_follows_it(log: AuditLog) -> None:
    """Datadog's intake URL comes from its site: changing the site moves it
    (checked by the guard; nothing is sent here), an explicit URL stays."""
    tid = log.create_tenant("acme").id
    dests = Destinations(log, (), resolve=lambda host, port: ["93.184.216.34"])
    dest, _ = dests.create(tid, name="dd", kind="datadog", secrets={"api_key": "k"})
    assert dest.to_json()["url"] == "https://http-intake.logs.datadoghq.com/api/v2/logs"
    got, changed, _ = dests.update(tid, dest.id, settings={"site": "datadoghq.eu"})
    assert changed == ["settings.site", "url"]
    assert got.to_json()["url"] == "https://http-intake.logs.datadoghq.eu/api/v2/logs"
    got, changed, _ = dests.update(tid, dest.id, url="https://dd-proxy.example/api/v2/logs")
    got, changed, _ = dests.update(tid, dest.id, settings={"site": "us3.datadoghq.com"})
    assert changed == ["settings.site"]
    assert got.to_json()["url"] == "https://dd-proxy.example/api/v2/logs"
