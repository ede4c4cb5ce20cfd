"""Issue 8 through the CLI and the HTTP API: plans, retention, legal hold,
redaction and erasure, each recorded in the tenant's log."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

import kimonaudit
from kimonaudit.api.app import create_app
from kimonaudit.api.settings import ApiSettings
from tests.helpers import event
from tests.test_cli import kimon


@pytest.fixture
def tenant(tmp_path: Path) -> str:
    proc = kimon(tmp_path, "tenants", "create", "Acme", "--plan", "free", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["id"]


def test_cli_plan_retention_hold_redact_erase(tmp_path, tenant):
    """Each command works, refuses bad input with exit 2, and leaves an entry."""
    lines = "\n".join(json.dumps(event(i)) for i in range(8)) + "\n"
    assert kimon(tmp_path, "ingest", "--tenant", tenant, "-", stdin=lines).returncode == 0
    p = kimon(tmp_path, "tenants", "set-plan", "--tenant", tenant, "enterprise")
    assert p.returncode == 0 and "retention 36 months" in p.stdout, p.stderr
    p = kimon(tmp_path, "retention", "set", "--tenant", tenant, "--months", "6")
    assert p.returncode == 2 and "below 12 months" in p.stderr
    p = kimon(tmp_path, "retention", "set", "--tenant", tenant, "--months", "84")
    assert p.returncode == 0 and "retention 84 months" in p.stdout
    p = kimon(tmp_path, "retention", "hold", "--tenant", tenant, "--on", "--reason", "case 9")
    assert p.returncode == 0 and "legal hold on" in p.stdout
    p = kimon(tmp_path, "redact", "--tenant", tenant, "--seq", "3", "--reason", "court order")
    assert p.returncode == 0 and "redacted entry 3" in p.stdout
    p = kimon(tmp_path, "search", "--tenant", tenant, "--json", "--limit", "50")
    (red,) = [e for e in json.loads(p.stdout)["events"] if e["seq"] == 3]
    assert red["redacted"] is True and red["redaction"]["reason"] == "court order"
    p = kimon(tmp_path, "actors", "erase", "--tenant", tenant, "agent_42")
    assert p.returncode == 0 and "erased" in p.stdout
    p = kimon(tmp_path, "search", "--tenant", tenant, "actor:agent_42", "--json")
    assert json.loads(p.stdout)["events"] == []
    p = kimon(tmp_path, "verify", "--tenant", tenant, "--json")
    assert p.returncode == 0, p.stdout
    (report,) = json.loads(p.stdout)
    assert report["redacted"] == 1 and report["tampered"] == 0
    p = kimon(tmp_path, "search", "--tenant", tenant, "is:security", "--json", "--limit", "50")
    actions = [e["action"] for e in json.loads(p.stdout)["events"]]
    assert actions.count("audit.retention.changed") == 3
    assert "audit_log.redacted" in actions and "actor.erased" in actions


@pytest.fixture
def api(tmp_path: Path):
    log = kimonaudit.open(f"sqlite:///{tmp_path / 'api.db'}", key_file=str(tmp_path / "k.key"))
    t = log.create_tenant("acme")
    admin = log.create_api_key(t.id, "admin", ["admin"])[1]
    reader = log.create_api_key(t.id, "reader", ["events:read"])[1]
    log.append(t.id, [event(i) for i in range(6)])
    app = create_app(log, settings=ApiSettings(checkpoint_interval=0.05))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, log, t.id, admin, reader
    log.close()


def test_api_retention_routes(api):
    """Admin scope changes plan, retention and hold; a reader is refused; bad input is 422."""
    client, log, tid, admin, reader = api
    h = {"Authorization": f"Bearer {admin}"}
    r = client.get("/v1/retention", headers=h)
    assert r.json()["retention_months"] == 12 and r.json()["plan"] == "free"
    r = client.put("/v1/retention/plan", json={"plan": "business"}, headers=h)
    assert r.status_code == 200 and r.json()["retention_months"] == 36
    r = client.put("/v1/retention", json={"months": 11}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"
    r = client.put("/v1/retention", json={"months": 48}, headers=h)
    assert r.json()["retention_months"] == 48 and r.json()["custom_months"] == 48
    r = client.put("/v1/retention/legal-hold", json={"hold": True, "reason": "x"}, headers=h)
    assert r.json()["legal_hold"] is True
    r = client.put(
        "/v1/retention/plan",
        json={"plan": "free"},
        headers={"Authorization": f"Bearer {reader}"},
    )
    assert r.status_code == 403
    changes = [e for e in log.store.iter_entries(tid) if e.action == "audit.retention.changed"]
    assert len(changes) == 3
    assert all(e.actor_type == "api_key" for e in changes)


def test_api_redaction_and_erasure(api):
    """POST /v1/redactions and /v1/erasures work and are logged."""
    client, log, tid, admin, _ = api
    h = {"Authorization": f"Bearer {admin}"}
    r = client.post("/v1/redactions", json={"seq": 2, "reason": "legal"}, headers=h)
    assert r.status_code == 200 and r.json() == {"seq": 2, "redacted": True}
    r = client.post("/v1/redactions", json={"seq": 999, "reason": "legal"}, headers=h)
    assert r.status_code == 404
    r = client.post("/v1/redactions", json={"seq": 2}, headers=h)
    assert r.status_code == 422
    # The entry, read back through every API surface, says it is redacted and why,
    # as its console page does.
    eid = log.get_entry(tid, 2).event_id
    r = client.get(f"/v1/events/{eid}", headers=h)
    assert r.status_code == 200
    red = r.json()["event"]
    assert red["redacted"] is True and red["redaction"]["reason"] == "legal"
    assert red["redaction"]["redacted_at"].endswith("Z") and red["metadata"] == {}
    other = client.get(f"/v1/events/{log.get_entry(tid, 1).event_id}", headers=h).json()
    assert other["event"]["redacted"] is False and other["event"]["redaction"] is None
    found = client.get("/v1/events", params={"q": "seq:2"}, headers=h).json()["events"]
    assert [e["redaction"] for e in found] == [red["redaction"]]
    lines = client.get("/v1/exports/events.ndjson", headers=h).text.splitlines()
    (exported,) = [json.loads(x) for x in lines if json.loads(x)["seq"] == 2]
    assert exported["redaction"] == red["redaction"]
    rows = client.get("/v1/exports/events.csv", headers=h).text.splitlines()
    assert rows[0].endswith('"redaction_reason"') and any(x.endswith(',"legal"') for x in rows)
    r = client.post("/v1/erasures", json={"actor_id": "agent_1"}, headers=h)
    assert r.json() == {"erased": True, "found": True}
    r = client.get("/v1/events", params={"q": "actor:agent_1"}, headers=h)
    assert r.json()["events"] == []
    assert log.verify(tid).ok


def test_api_consistency_from_a_checkpoint_before_the_purge(tmp_path, clock):
    """GET /v1/proofs/consistency?from=M for a checkpoint signed before the purge is one
    RFC 9162 proof that verifies against that checkpoint's root; a size inside the
    purged prefix that was never signed is a 422 naming why."""
    import base64

    from kimonaudit.core.merkle import verify_consistency

    log = kimonaudit.open(
        f"sqlite:///{tmp_path / 'api.db'}", key_file=str(tmp_path / "k.key"), clock=clock
    )
    t = log.create_tenant("acme")
    for _ in range(16):
        log.append(t.id, [event(i) for i in range(7)])
        log.checkpoint(t.id)
        clock.advance(days=31)
    log.run_retention()
    purged = log.store.tree_state(t.id).purged
    old = [cp for cp in log.list_checkpoints(t.id) if cp.size < purged]
    assert purged > 0 and old
    clock.advance(seconds=1)
    reader = log.create_api_key(t.id, "reader", ["events:read"])[1]
    h = {"Authorization": f"Bearer {reader}"}
    app = create_app(log, settings=ApiSettings(run_jobs=False))
    with TestClient(app, raise_server_exceptions=False) as client:
        latest = client.get("/v1/checkpoints/latest", headers=h).json()
        for cp in old:
            r = client.get("/v1/proofs/consistency", params={"from": cp.size}, headers=h)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["new_size"] == latest["tree_size"]
            verify_consistency(
                cp.size,
                body["new_size"],
                cp.root,
                base64.b64decode(latest["root"]),
                [base64.b64decode(x) for x in body["proof"]],
            )
        r = client.get("/v1/proofs/consistency", params={"from": 3}, headers=h)
        assert r.status_code == 422
        assert "no checkpoint was signed at size 3" in r.json()["error"]["message"]
    log.close()
