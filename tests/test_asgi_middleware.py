"""AuditMiddleware on a small FastAPI app, recording through a real
AuditClient into a real `kimonaudit serve` process on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from kimonaudit.client import AsyncAuditClient, AuditClient, RetryPolicy
from kimonaudit.integrations.asgi import (
    AuditMiddleware,
    client_ip,
    collapse_ids,
    redact_query,
    route_template,
)
from kimonaudit.integrations.helpdesk import Actor
from tests.servers import IngestServer

TRUSTED = ["10.0.0.0/8", "fd00::/8"]
SECRETS = ("SECRET-QUERY-TOKEN", "SECRET-BEARER", "SECRET-COOKIE", "SECRET-BODY", "SECRET-PASS")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IngestServer]:
    with IngestServer(tmp_path_factory.mktemp("mw-server")) as srv:
        yield srv


def current_actor(scope: Any) -> Actor | None:
    user = scope.get("state", {}).get("user")
    return Actor(user, name="Ann Lee", email="ann@acme.test") if user else None


def make_app(client: Any, **options: Any) -> FastAPI:
    app = FastAPI()

    @app.get("/tickets/{ticket_id}")
    async def get_ticket(ticket_id: int, request: Request) -> dict[str, Any]:
        request.state.user = "agent_42"  # what an auth dependency would set
        return {"id": ticket_id}

    @app.post("/tickets/{ticket_id}/comments", status_code=201)
    async def comment(ticket_id: int, body: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    @app.get("/denied")
    async def denied() -> None:
        raise HTTPException(403, "no")

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("boom")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/internal/stats")
    async def internal() -> dict[str, int]:
        return {"n": 1}

    async def thing(request: Any) -> PlainTextResponse:
        return PlainTextResponse("thing")

    app.mount("/v2", Starlette(routes=[Route("/things/{thing_id}", thing)]))
    app.add_middleware(
        AuditMiddleware,
        client=client,
        actor=current_actor,
        trusted_proxies=TRUSTED,
        exclude_paths=["/healthz", "/internal/*"],
        **options,
    )
    return app


async def call(
    app: Any, method: str, path: str, peer: str = "203.0.113.5", **kw: Any
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(peer, 50123), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as http:
        return await http.request(method, path, **kw)


def recorded(server: IngestServer) -> dict[str, dict[str, Any]]:
    """api.request entries by request id, as the API would show them."""
    from kimonaudit.views import entry_json

    out: dict[str, dict[str, Any]] = {}
    with server.open_log() as log:
        for row in log.store.iter_entries(server.tenant_id):
            if row.action != "api.request":
                continue
            entry = entry_json(row, log.resolve_actor(server.tenant_id, row.actor_hash or ""))
            entry["_raw"] = repr(row)
            out[entry["context"].get("request_id", "")] = entry
    return out


@pytest.fixture(scope="module")
def entries(server: IngestServer) -> dict[str, dict[str, Any]]:
    """Drive one app through every case, then read what was recorded."""
    client = AuditClient(server.url, server.api_key, flush_interval=0.02)
    app = make_app(client)

    async def drive() -> list[httpx.Response]:
        h = {"X-Request-ID": ""}
        return [
            await call(
                app, "GET", "/tickets/10482?page=2&access_token=SECRET-QUERY-TOKEN"
                "&password=SECRET-PASS",
                headers={**h, "X-Request-ID": "r-ticket", "Authorization": "Bearer SECRET-BEARER",
                         "Cookie": "session=SECRET-COOKIE", "User-Agent": "Agent/1.0"},
            ),
            await call(app, "POST", "/tickets/10482/comments", json={"text": "SECRET-BODY"},
                       headers={"X-Request-ID": "r-comment"}),
            await call(app, "GET", "/denied", headers={"X-Request-ID": "r-denied"}),
            await call(app, "GET", "/crash", headers={"X-Request-ID": "r-crash"}),
            await call(app, "GET", "/no/such/98765", headers={"X-Request-ID": "r-404"}),
            await call(app, "GET", "/v2/things/77", headers={"X-Request-ID": "r-mount"}),
            await call(app, "GET", "/healthz", headers={"X-Request-ID": "r-health"}),
            await call(app, "GET", "/internal/stats", headers={"X-Request-ID": "r-internal"}),
            # Behind a trusted proxy: the right-most untrusted hop is the client.
            await call(app, "GET", "/tickets/1", peer="10.1.2.3", headers={
                "X-Request-ID": "r-proxied", "X-Forwarded-For": "1.1.1.1, 198.51.100.8, 10.0.0.9"}),
            # Not from a proxy: X-Forwarded-For is the client's own claim, ignored.
            await call(app, "GET", "/tickets/2", peer="203.0.113.50", headers={
                "X-Request-ID": "r-spoofed", "X-Forwarded-For": "198.51.100.99"}),
        ]  # fmt: skip

    responses = asyncio.run(drive())
    assert [r.status_code for r in responses] == [200, 201, 403, 500, 404, 200, 200, 200, 200, 200]
    assert client.flush(15)
    client.close()
    return recorded(server)


def test_records_route_template_status_and_request_details(
    entries: dict[str, dict[str, Any]], server: IngestServer
) -> None:
    """An api.request entry holds the route template (not the raw path),
    method, status, duration, request id, client IP, user agent and actor."""
    e = entries["r-ticket"]
    ctx = e["context"]
    assert ctx["route"] == "/tickets/{ticket_id}"
    assert (ctx["method"], ctx["status"]) == ("GET", 200)
    assert isinstance(ctx["duration_ms"], int | float) and ctx["duration_ms"] >= 0
    assert ctx["user_agent"] == "Agent/1.0"
    assert e["ip"] == "203.0.113.5"
    assert e["target"] == {"type": "route", "id": "GET /tickets/{ticket_id}"}
    assert e["outcome"] == "success"
    assert e["occurred_at"] is not None
    with server.open_log() as log:
        assert e["actor"]["hash"] == log.actor_hash(server.tenant_id, "agent_42")
    assert e["actor"]["name"] == "Ann Lee"  # from the directory, not the log


def test_never_records_bodies_credentials_cookies_or_token_parameters(
    entries: dict[str, dict[str, Any]],
) -> None:
    """Authorization, cookies, bodies and token-like query values appear
    nowhere in the stored rows; harmless query parameters are kept."""
    blob = json.dumps(entries)
    for secret in SECRETS:
        assert secret not in blob
    assert "10482" not in blob  # the raw path is never stored
    assert entries["r-ticket"]["context"]["query"] == {
        "page": "2",
        "access_token": "[redacted]",
        "password": "[redacted]",
    }
    assert "query" not in entries["r-comment"]["context"]


def test_status_maps_to_outcome(entries: dict[str, dict[str, Any]]) -> None:
    """201 success, 403 denied, 404 failure, an unhandled exception error
    with status 500; an unmatched path is recorded with ids collapsed."""
    assert (entries["r-comment"]["context"]["status"], entries["r-comment"]["outcome"]) == (
        201,
        "success",
    )
    assert entries["r-comment"]["context"]["route"] == "/tickets/{ticket_id}/comments"
    assert entries["r-denied"]["outcome"] == "denied"
    assert (entries["r-crash"]["context"]["status"], entries["r-crash"]["outcome"]) == (
        500,
        "error",
    )
    assert entries["r-404"]["outcome"] == "failure"
    assert entries["r-404"]["context"]["route"] == "/no/such/{id}"


def test_mounted_app_routes_keep_their_prefix(entries: dict[str, dict[str, Any]]) -> None:
    """A route inside a mounted app is recorded with the mount's prefix."""
    assert entries["r-mount"]["context"]["route"] == "/v2/things/{thing_id}"


def test_excluded_paths_are_not_recorded(entries: dict[str, dict[str, Any]]) -> None:
    """Exact paths and shell patterns in exclude_paths record nothing."""
    assert "r-health" not in entries and "r-internal" not in entries


def test_forwarded_for_is_honoured_only_from_trusted_proxies(
    entries: dict[str, dict[str, Any]],
) -> None:
    """From a trusted proxy the right-most untrusted X-Forwarded-For hop is
    the client (a forged left-most hop is ignored); from anyone else the
    header is ignored and the peer is the client."""
    assert entries["r-proxied"]["ip"] == "198.51.100.8"
    assert entries["r-spoofed"]["ip"] == "203.0.113.50"


def test_async_client_works_as_the_recorder(server: IngestServer, tmp_path: Path) -> None:
    """With an AsyncAuditClient the middleware awaits its quick record()."""
    rid = f"r-async-{uuid.uuid4()}"

    async def main() -> int:
        async with AsyncAuditClient(
            server.url, server.api_key, tmp_path / "s.db", flush_interval=0.02
        ) as client:
            app = make_app(client)
            r = await call(app, "GET", "/tickets/5", headers={"X-Request-ID": rid})
            assert await client.flush(10)
            return r.status_code

    assert asyncio.run(main()) == 200
    assert recorded(server)[rid]["context"]["route"] == "/tickets/{ticket_id}"


def test_responses_do_not_wait_for_an_unresponsive_audit_server() -> None:
    """With the audit server accepting connections but never answering,
    every request still succeeds at once: recording is off the response
    path."""
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(64)  # connections complete in the backlog; nothing answers
        url = f"http://127.0.0.1:{blackhole.getsockname()[1]}"
        client = AuditClient(
            url, "k", flush_interval=0, timeout=1.0, retry=RetryPolicy(initial=0.05, maximum=0.1)
        )
        app = make_app(client)

        async def drive() -> list[tuple[int, float]]:
            out = []
            for i in range(20):
                start = time.monotonic()
                r = await call(app, "GET", f"/tickets/{i}")
                out.append((r.status_code, time.monotonic() - start))
            return out

        try:
            results = asyncio.run(drive())
        finally:
            client.close(timeout=1.5)
    assert all(status == 200 for status, _ in results)
    # A request waiting on the audit server would take its 1 s timeout.
    assert max(elapsed for _, elapsed in results) < 0.9
    assert client.stats().recorded == 20


def test_recorder_failure_does_not_break_the_response() -> None:
    """If recording raises (a closed client), the app's response is intact."""
    client = AuditClient("http://127.0.0.1:9", "k")
    client.close(timeout=0)
    app = make_app(client)
    r = asyncio.run(call(app, "GET", "/tickets/3"))
    assert (r.status_code, r.json()) == (200, {"id": 3})


# --- the pieces -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # untrusted peer: header ignored
        ("10.0.0.2", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.2", "198.51.100.1, 10.9.9.9", "198.51.100.1"),  # skip trusted hops
        ("10.0.0.2", "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # forged left part ignored
        ("10.0.0.2", "10.0.0.3, 10.0.0.4", "10.0.0.3"),  # all trusted: left-most
        ("10.0.0.2", "garbage, 198.51.100.1", "198.51.100.1"),
        ("10.0.0.2", "198.51.100.1, garbage", "10.0.0.2"),  # nothing past garbage believed
        ("10.0.0.2", "[2001:db8::7]:443", "2001:db8::7"),
        ("10.0.0.2", "198.51.100.1:5555", "198.51.100.1"),
        ("::ffff:10.0.0.2", "198.51.100.1", "198.51.100.1"),  # IPv4-mapped peer
        ("10.0.0.2", None, "10.0.0.2"),
    ],
)
def test_client_ip(peer: str, xff: str | None, expected: str) -> None:
    """Right-most untrusted X-Forwarded-For address, only from a trusted peer."""
    import ipaddress

    headers = [(b"x-forwarded-for", xff.encode())] if xff else []
    scope = {"client": (peer, 1), "headers": headers}
    nets = [ipaddress.ip_network(c) for c in TRUSTED]
    assert client_ip(scope, nets) == expected


def test_client_ip_without_a_peer_is_none() -> None:
    """Unix sockets and test clients have no IP: nothing is recorded."""
    assert client_ip({"client": None, "headers": []}) is None
    assert client_ip({"client": ("testclient", 1), "headers": []}) is None


def test_redact_query() -> None:
    """Token-like names (and JWT-looking values) are redacted; repeats are
    kept as lists."""
    raw = (
        b"q=refund&token=a&access_token=b&api_key=c&key=d&secret=e&password=f&signature=g"
        b"&code=h&X-Amz-Signature=i&tag=x&tag=y&next=eyJhbGciOi.eyJzdWIiOi.sig"
    )
    q = redact_query(raw)
    assert q["q"] == "refund" and q["tag"] == ["x", "y"]
    for name in ("token", "access_token", "api_key", "key", "secret", "password", "signature",
                 "code", "X-Amz-Signature", "next"):  # fmt: skip
        assert q[name] == "[redacted]", name


def test_collapse_ids() -> None:
    """Numbers, UUIDs, long hex, emails and token-like segments become {id};
    words and versions stay."""
    assert collapse_ids("/tickets/10482") == "/tickets/{id}"
    assert collapse_ids(f"/users/{uuid.uuid4()}/roles") == "/users/{id}/roles"
    assert collapse_ids("/u/ann@acme.test") == "/u/{id}"
    assert collapse_ids("/reset/Zm9vYmFyYmF6cXV4cXV1eA") == "/reset/{id}"
    assert collapse_ids("/v1/api-keys/INV-2024-0001") == "/v1/api-keys/{id}"
    assert collapse_ids("/v2/oauth2/callback") == "/v2/oauth2/callback"


def test_route_template_prefers_the_matched_route() -> None:
    """scope["route"].path wins; without a route the raw path is collapsed."""

    class R:
        path = "/tickets/{ticket_id}"

    assert route_template({"route": R(), "path": "/tickets/9"}) == "/tickets/{ticket_id}"
    assert route_template({"path": "/tickets/9"}) == "/tickets/{id}"
    mount = Mount("/static", app=PlainTextResponse("x"))
    assert route_template({"route": mount, "path": "/static/a/123456"}) == "/static/a/{id}"
