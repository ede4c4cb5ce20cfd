"""Defects the security probe found in the running server (issue 10,
items 4 and 8), against real `kimonaudit serve` processes on loopback:
the access log, X-Forwarded-For, 405 answers and huge integers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kimonaudit import apikeys
from tests.servers import ServeProcess, bearer, make_tenant


class Served:
    def __init__(self, srv: ServeProcess, tenant: str, key: str) -> None:
        self.srv, self.tenant, self.key = srv, tenant, key

    def searched_ip(self, query: str) -> str | None:
        """The client address recorded with the newest search for `query`."""
        with self.srv.open_log() as log:
            rows = [r for r in log.store.iter_entries(self.tenant)]
        for row in reversed(rows):
            payload = json.loads(row.payload or b"{}")
            if row.action == "audit_log.searched" and payload["metadata"]["query"] == query:
                return payload.get("context", {}).get("ip")  # type: ignore[no-any-return]
        raise AssertionError(f"no search for {query!r}")


def _serve(tmp: Path, *options: str) -> Iterator[Served]:
    db, key_file = f"sqlite:///{tmp / 'audit.db'}", str(tmp / "k.key")
    tenant, key = make_tenant(db, key_file, "acme")
    with ServeProcess(db, key_file, tmp, "--access-log", *options) as srv:
        yield Served(srv, tenant, key)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from _serve(tmp_path_factory.mktemp("hardening"))


def test_access_log_has_no_query_string_secret_or_address(served: Served) -> None:
    """The access log names method, route template and status, never the
    query string (a query about an actor, an API key sent as ?api_key=),
    ids in the path or the client's address."""
    secret_key = served.key
    r = httpx.get(
        f"{served.srv.url}/v1/events",
        params={"q": "actor:agent_A1", "api_key": secret_key},
        headers=bearer(served.key),
    )
    assert r.status_code == 200
    httpx.get(f"{served.srv.url}/v1/events/evt-private-17", headers=bearer(served.key))
    served.srv.stop()
    try:
        out = served.srv.output.read_text()
        assert "GET /v1/events 200" in out
        assert "GET /v1/events/{event_id} 404" in out
        # Not split("_"): the secret is urlsafe base64 and may hold "_" itself
        # (it once ended in "_A", and "A" is in every log).
        secret_part = apikeys.parse(secret_key)[1]
        for leak in ("agent_A1", secret_key, secret_part, "api_key=", "127.0.0.1:"):
            assert leak not in out.replace(f"127.0.0.1:{served.srv.port}", ""), leak
        assert "evt-private-17" not in out
    finally:
        served.srv.start()


def test_forwarded_for_is_ignored_unless_configured(served: Served) -> None:
    """By default X-Forwarded-For is not believed, even from loopback: the
    entry records the socket's address."""
    r = httpx.get(
        f"{served.srv.url}/v1/events",
        params={"q": "action:xff.default"},
        headers={**bearer(served.key), "X-Forwarded-For": "203.0.113.66"},
    )
    assert r.status_code == 200
    assert served.searched_ip("action:xff.default") == "127.0.0.1"


def test_forwarded_for_is_believed_from_a_configured_proxy(tmp_path: Path) -> None:
    """With --forwarded-allow-ips naming the proxy, its X-Forwarded-For is
    the client address recorded."""
    for s in _serve(tmp_path, "--forwarded-allow-ips", "127.0.0.1"):
        httpx.get(
            f"{s.srv.url}/v1/events",
            params={"q": "action:xff.proxy"},
            headers={**bearer(s.key), "X-Forwarded-For": "203.0.113.66"},
        )
        assert s.searched_ip("action:xff.proxy") == "203.0.113.66"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/v1/events", {"GET", "POST"}),
        ("DELETE", "/v1/api-keys", {"GET", "POST"}),
        ("PATCH", "/v1/events/some-id", {"GET"}),
        ("PUT", "/console/verify", {"GET", "HEAD", "POST"}),
        ("DELETE", "/console/signin", {"GET", "HEAD", "POST"}),
        ("PUT", "/healthz", {"GET"}),
    ],
)
def test_405_lists_every_allowed_method(
    served: Served, method: str, path: str, allow: set[str]
) -> None:
    """A 405's Allow lists the methods of every route at that path."""
    r = httpx.request(method, served.srv.url + path, headers=bearer(served.key))
    assert r.status_code == 405
    assert {m.strip() for m in r.headers["allow"].split(",")} == allow


def test_a_huge_integer_gets_no_python_advice(served: Served) -> None:
    """A 5,000-digit integer in a body is refused as malformed without
    Python's sys.set_int_max_str_digits() hint."""
    body = '{"action": "a.b", "metadata": {"n": ' + "7" * 5000 + "}}"
    r = httpx.post(
        f"{served.srv.url}/v1/events",
        content=body,
        headers={**bearer(served.key), "Content-Type": "application/json"},
    )
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "set_int_max_str_digits" not in message and "sys." not in message
    assert "digits" in message
