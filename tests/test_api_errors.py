"""The HTTP API in process (FastAPI TestClient): the one error shape,
limits, receipts, ?wait=checkpoint, API keys over HTTP, metrics.

Real-server tests (uvicorn subprocess, schemathesis, isolation, SIGKILL)
are in test_api_server.py."""

from __future__ import annotations

import base64
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette would rather run its TestClient on `httpx2`; the project uses httpx.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

import kimonaudit
from kimonaudit.api import ApiSettings, create_app
from kimonaudit.core.merkle import verify_inclusion
from tests.helpers import event


class Api:
    def __init__(self, client: TestClient, log: kimonaudit.AuditLog, keys: dict[str, str]):
        self.client = client
        self.log = log
        self.keys = keys
        self.tenant = log.authenticate(keys["admin"])[0]

    def h(self, key: str = "admin", **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[key]}", **extra}

    def post(self, body: Any, key: str = "admin", **kw: Any) -> Any:
        return self.client.post("/v1/events", json=body, headers=self.h(key), **kw)


def _make(tmp_path: Path, settings: ApiSettings) -> Iterator[Api]:
    log = kimonaudit.open(f"sqlite:///{tmp_path / 'api.db'}", key_file=str(tmp_path / "k.key"))
    t = log.create_tenant("acme")
    other = log.create_tenant("other")
    keys = {
        "admin": log.create_api_key(t.id, "admin", ["admin"])[1],
        "write": log.create_api_key(t.id, "writer", ["events:write"])[1],
        "read": log.create_api_key(t.id, "reader", ["events:read"])[1],
        "other": log.create_api_key(other.id, "admin", ["admin"])[1],
    }
    app = create_app(log, settings=settings)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Api(client, log, keys)
    finally:
        log.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from _make(tmp_path, ApiSettings(checkpoint_interval=0.05))


def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert (
        {"status", "code", "message"}
        <= set(err)
        <= {"status", "code", "message", "fields", "receipts"}
    )
    assert err["status"] == status and err["code"] == code
    assert isinstance(err["message"], str) and err["message"]
    assert "Traceback" not in resp.text
    return err


def tree_size(api: Api) -> int:
    return api.log.store.tree_state(api.tenant).size


# -- the error shape ---------------------------------------------------------------
# fmt: off
EV = "/v1/events"
CASES = [
    ("malformed JSON", "POST", EV, {"content": b'{"action": '}, "admin", 400, "bad_request"),
    ("NaN is not JSON", "POST", EV, {"content": b'{"action": NaN}'}, "admin", 400,
     "bad_request"),
    ("not UTF-8", "POST", "/v1/events", {"content": b'{"action": "\xff"}'}, "admin", 400,
     "bad_request"),
    ("deep nesting", "POST", "/v1/events", {"content": b"[" * 100_000}, "admin", 400,
     "bad_request"),
    ("no key", "GET", "/v1/checkpoints/latest", {}, None, 401, "unauthorized"),
    ("garbage key", "GET", "/v1/checkpoints/latest", {}, "garbage", 401, "unauthorized"),
    ("missing scope", "POST", "/v1/events", {"json": event(1)}, "read", 403, "forbidden"),
    ("write cannot read", "GET", "/v1/checkpoints/latest", {}, "write", 403, "forbidden"),
    ("non-admin keys", "GET", "/v1/api-keys", {}, "write", 403, "forbidden"),
    ("unknown event", "GET", "/v1/events/nope", {}, "admin", 404, "not_found"),
    ("unknown route", "GET", "/v1/nothing", {}, "admin", 404, "not_found"),
    ("wrong method", "PUT", "/v1/events", {}, "admin", 405, "method_not_allowed"),
    ("too many events", "POST", EV, {"json": {"events": [event(i) for i in range(1001)]}},
     "admin", 413, "too_large"),
    ("form body", "POST", "/v1/events", {"data": {"action": "x.y"}}, "admin", 415,
     "unsupported_media_type"),
    ("invalid event", "POST", "/v1/events", {"json": {"action": "Bad"}}, "admin", 422,
     "invalid_event"),
    ("bad query", "GET", "/v1/proofs/consistency?from=-1", {}, "admin", 422, "invalid_input"),
    ("wait=other", "POST", "/v1/events?wait=soon", {"json": event(1)}, "admin", 422,
     "invalid_input"),
]
# fmt: on


@pytest.mark.parametrize(
    ("what", "method", "url", "kw", "key", "status", "code"), CASES, ids=[c[0] for c in CASES]
)
def test_error_shape(api: Api, what, method, url, kw, key, status, code) -> None:
    """Every error, whatever produced it, is {"error": {status, code, message[, fields]}}."""
    headers = {}
    if key == "garbage":
        headers["Authorization"] = "Bearer kak_notarealkey"
    elif key is not None:
        headers["Authorization"] = f"Bearer {api.keys[key]}"
    if "content" in kw:
        headers["Content-Type"] = "application/json"
    before = tree_size(api)
    assert_error(api.client.request(method, url, headers=headers, **kw), status, code)
    assert tree_size(api) == before
    if status == 401:
        assert api.client.get(url, headers=headers).headers["www-authenticate"] == "Bearer"


def test_validation_errors_name_every_bad_field(api: Api) -> None:
    """422s carry `fields` with the path of the bad value, for events and for plain bodies."""
    err = assert_error(
        api.post({"events": [event(0), event(1, actor={"id": 7})]}), 422, "invalid_event"
    )
    assert err["fields"] == [{"path": "events[1].actor.id", "message": err["fields"][0]["message"]}]
    assert err["message"].startswith("events[1].actor.id: ")
    err = assert_error(
        api.client.post(
            "/v1/api-keys", json={"name": "x", "scopes": ["root"], "extra": 1}, headers=api.h()
        ),
        422,
        "invalid_input",
    )
    assert {f["path"] for f in err["fields"]} == {"scopes[0]", "extra"}


def test_tenant_field_in_body_is_rejected(api: Api) -> None:
    """The tenant comes from the key: a tenant field, in an event or beside a batch, is a 422."""
    for body, path in [
        ({**event(1), "tenant_id": "t_x"}, "tenant_id"),
        ({**event(1), "tenant": "t_x"}, "tenant"),
        ({"events": [event(1)], "tenant_id": "t_x"}, "tenant_id"),
        ({"events": [{**event(1), "tenant": "t_x"}]}, "events[0].tenant"),
    ]:
        err = assert_error(api.post(body), 422, "invalid_event")
        assert err["fields"][0]["path"] == path
    assert tree_size(api) == 3  # the three key creations only


def test_body_over_1mib_is_refused_while_streaming(api: Api) -> None:
    """A chunked body with no Content-Length is cut off at 1 MiB (413), nothing appended."""
    before = tree_size(api)

    def chunks() -> Iterator[bytes]:
        yield b'{"events": ['
        for _ in range(3000):
            yield b'{"action": "ticket.viewed", "metadata": {"pad": "' + b"x" * 500 + b'"}},'
        yield b'{"action": "ticket.viewed"}]}'

    resp = api.client.post(
        "/v1/events", content=chunks(), headers=api.h(**{"Content-Type": "application/json"})
    )
    assert_error(resp, 413, "too_large")
    resp = api.client.post(
        "/v1/events",
        content=b"{}",
        headers=api.h(**{"Content-Type": "application/json", "Content-Length": str(2 << 20)}),
    )
    assert_error(resp, 413, "too_large")
    assert tree_size(api) == before


def test_a_failed_batch_appends_nothing(api: Api) -> None:
    """All or nothing: one bad event among 500 leaves the log exactly as it was."""
    before = tree_size(api)
    batch = [event(i) for i in range(500)]
    batch[377] = {**batch[377], "outcome": "maybe"}
    err = assert_error(api.post({"events": batch}), 422, "invalid_event")
    assert err["fields"][0]["path"] == "events[377].outcome"
    assert tree_size(api) == before


def test_crash_is_a_generic_500(api: Api) -> None:
    """A bug is a 500 in the error shape, with no exception text or traceback."""

    def boom() -> None:
        raise RuntimeError("secret internals")

    api.client.app.add_api_route("/boom", boom)  # type: ignore[attr-defined]
    err = assert_error(api.client.get("/boom"), 500, "internal_error")
    assert "secret" not in err["message"]


# -- receipts, idempotency, wait=checkpoint --------------------------------------------
def test_receipts_and_idempotent_retry(api: Api) -> None:
    """201 with id, seq, recorded_at, leaf_hash per event; a retried id gets its first receipt."""
    one = api.post(event(1, id="evt-1"))
    assert one.status_code == 201
    (r,) = one.json()["receipts"]
    assert set(r) == {"id", "seq", "recorded_at", "leaf_hash"} and r["id"] == "evt-1"
    assert len(base64.b64decode(r["leaf_hash"])) == 32
    batch = api.post({"events": [event(2), event(1, id="evt-1"), event(3)]}, key="write")
    assert batch.status_code == 201
    receipts = batch.json()["receipts"]
    assert receipts[1] == r
    assert [x["seq"] for x in receipts] == [r["seq"] + 1, r["seq"], r["seq"] + 2]
    got = api.client.get("/v1/events/evt-1", headers=api.h("read")).json()
    assert got["event"]["seq"] == r["seq"] and got["event"]["leaf_hash"] == r["leaf_hash"]
    assert got["event"]["actor"]["name"] == "Agent Agent_2"


def test_a_reused_id_with_other_content_is_409_naming_it(api: Api) -> None:
    """The same id with another action cannot slip through as a "retry"."""
    assert api.post(event(1, id="a-ev-3")).status_code == 201
    size = tree_size(api)
    forged = {**event(1, id="a-ev-3"), "action": "role.deleted"}
    err = assert_error(api.post({"events": [event(2), forged]}), 409, "conflict")
    assert "a-ev-3" in err["message"]
    assert err["fields"][0]["path"] == "events[1].id"
    assert tree_size(api) == size


def test_wait_checkpoint_returns_proofs_that_verify(api: Api) -> None:
    """?wait=checkpoint answers with a signed checkpoint covering the batch and valid proofs."""
    resp = api.post({"events": [event(i) for i in range(7)]}, params={"wait": "checkpoint"})
    assert resp.status_code == 201, resp.text
    body = resp.json()
    cp = api.log.verify_checkpoint_note(body["checkpoint"])
    assert cp.size == body["tree_size"] > max(r["seq"] for r in body["receipts"])
    for r, p in zip(body["receipts"], body["proofs"], strict=True):
        assert p["seq"] == r["seq"] and p["tree_size"] == cp.size
        verify_inclusion(
            base64.b64decode(r["leaf_hash"]),
            r["seq"],
            cp.size,
            [base64.b64decode(h) for h in p["proof"]],
            cp.root_hash,
        )


def test_wait_checkpoint_times_out_with_503(tmp_path: Path) -> None:
    """With no checkpoint job running, ?wait=checkpoint gives 503 carrying the receipts; the
    events are appended all the same."""
    for api in _make(tmp_path, ApiSettings(run_jobs=False, wait_timeout=0.2)):
        before = tree_size(api)
        err = assert_error(api.post(event(1), params={"wait": "checkpoint"}), 503, "unavailable")
        assert err["receipts"][0]["seq"] == before
        assert tree_size(api) == before + 1


# -- API keys over HTTP ---------------------------------------------------------------
def test_api_keys_over_http(api: Api) -> None:
    """admin creates a key (shown once), lists it without secret, revokes it: it stops
    working at once; both actions are log entries with the calling key as actor."""
    made = api.client.post(
        "/v1/api-keys", json={"name": "ci", "scopes": ["events:read"]}, headers=api.h()
    )
    assert made.status_code == 201, made.text
    new = made.json()
    assert new["key"].startswith(f"kak_{new['id']}_") and new["scopes"] == ["events:read"]
    reader = {"Authorization": f"Bearer {new['key']}"}
    assert api.client.get("/v1/checkpoints/latest", headers=reader).status_code == 200
    listed = api.client.get("/v1/api-keys", headers=api.h()).json()["api_keys"]
    assert new["id"] in {k["id"] for k in listed}
    assert new["key"] not in api.client.get("/v1/api-keys", headers=api.h()).text
    gone = api.client.delete(f"/v1/api-keys/{new['id']}", headers=api.h())
    assert gone.status_code == 200 and gone.json()["revoked_at"] is not None
    assert_error(api.client.get("/v1/checkpoints/latest", headers=reader), 401, "unauthorized")
    # another tenant cannot see or revoke it
    assert_error(
        api.client.delete(f"/v1/api-keys/{new['id']}", headers=api.h("other")), 404, "not_found"
    )
    entries = list(api.log.store.iter_entries(api.tenant))
    actions = [(e.action, e.target_id) for e in entries]
    assert ("auth.api_token.created", new["id"]) in actions
    assert ("auth.api_token.revoked", new["id"]) in actions
    assert all(new["key"][17:] not in (e.payload or b"").decode() for e in entries)
    revoked = next(e for e in entries if e.action == "auth.api_token.revoked")
    admin_id = api.keys["admin"][4:16]
    assert revoked.actor_hash == api.log.actor_hash(api.tenant, f"api_key:{admin_id}")


# -- rate limit, metrics, docs ----------------------------------------------------------
def test_rate_limit_is_429_with_retry_after(tmp_path: Path) -> None:
    """Past the bucket a key gets 429 with Retry-After; another key is unaffected."""
    for api in _make(tmp_path, ApiSettings(rate_limit=0.5, rate_burst=2)):
        url = "/v1/checkpoints/latest"
        codes = [api.client.get(url, headers=api.h("read")).status_code for _ in range(2)]
        assert codes == [200, 200]
        resp = api.client.get(url, headers=api.h("read"))
        assert_error(resp, 429, "rate_limited")
        assert int(resp.headers["retry-after"]) >= 1
        assert api.client.get(url, headers=api.h("admin")).status_code == 200


def test_metrics_exposition(api: Api) -> None:
    """/metrics is Prometheus text with the append counter, latency histogram, checkpoint age
    and writer queue depth."""
    api.post({"events": [event(i) for i in range(5)]})
    resp = api.client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert "kimonaudit_events_appended_total 5.0\n" in text
    assert 'kimonaudit_append_duration_seconds_bucket{le="+Inf"} 1.0\n' in text
    assert "kimonaudit_append_duration_seconds_count 1.0\n" in text
    for name in (
        "kimonaudit_checkpoint_age_seconds",
        "kimonaudit_writer_queue_depth",
        "kimonaudit_checkpoint_pending_seconds",
    ):
        assert f"# TYPE {name} gauge" in text
    assert 'route="/v1/events",status="201"' in text


def test_openapi_describes_every_route(api: Api) -> None:
    """/openapi.json lists each route, the bearer scheme and the event body schemas."""
    spec = api.client.get("/openapi.json").json()
    assert {
        "/v1/events",
        "/v1/events/{event_id}",
        "/v1/checkpoints/latest",
        "/v1/checkpoints/{tree_size}",
        "/v1/proofs/consistency",
        "/v1/keys",
        "/v1/api-keys",
        "/v1/api-keys/{key_id}",
        "/healthz",
        "/metrics",
    } <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    body = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert {"$ref": "#/components/schemas/EventBatchIn"} in body["schema"]["anyOf"]
    assert spec["components"]["schemas"]["EventIn"]["additionalProperties"] is False
    err = spec["paths"]["/v1/events"]["post"]["responses"]["422"]
    assert err["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorOut")


def test_public_routes(api: Api) -> None:
    """/healthz and /v1/keys need no key; /v1/keys gives the signed-note verifier keys."""
    assert api.client.get("/healthz").json() == {"status": "ok"}
    keys = api.client.get("/v1/keys").json()
    assert keys["keys"] == api.log.keys.verifier_keys() and keys["active"] == keys["keys"][0]


# -- background checkpointing -------------------------------------------------------------
def test_checkpointer_cadence_and_scan(tmp_path: Path) -> None:
    """While entries arrive a tenant gets a checkpoint at most once per interval; entries
    written past the API (another process, the CLI) are found by the periodic scan."""
    import time

    for api in _make(tmp_path, ApiSettings(checkpoint_interval=0.25, rescan_interval=0.25)):
        start = len(api.log.list_checkpoints(api.tenant))
        started = time.monotonic()
        while time.monotonic() - started < 1.0:
            assert api.post(event(1)).status_code == 201
        elapsed = time.monotonic() - started
        cut = len(api.log.list_checkpoints(api.tenant)) - start
        assert 1 <= cut <= elapsed / 0.25 + 2
        other = api.log.authenticate(api.keys["other"])[0]
        api.log.append(other, [event(i) for i in range(3)])  # not through the API
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            latest = api.log.latest_checkpoint(other)
            if latest is not None and latest.size == api.log.store.tree_state(other).size:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the scan never checkpointed entries appended outside the API")


def test_every_route_is_in_the_contract(api: Api) -> None:
    """docs/http-contract.md names every route of /openapi.json."""
    doc = (Path(__file__).parent.parent / "docs" / "http-contract.md").read_text()
    spec = api.client.get("/openapi.json").json()
    missing = [
        f"{method.upper()} {path}"
        for path, ops in spec["paths"].items()
        for method in ops
        if f"`{method.upper()} {path}" not in doc
    ]
    assert not missing, f"undocumented routes: {missing}"
