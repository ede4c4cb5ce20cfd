"""The fast path of POST /v1/events (kimonaudit.api.fastingest) against the
full FastAPI route: the same requests to two identical servers, one with
the fast path and one without, get the same answers, and the fast path
really takes the requests it is meant for.

Also: the authenticator's shared lookup, and AuditLog.submit_validated's
cached-only mode that lets the event loop append without a thread."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

import kimonaudit
from kimonaudit.api import ApiSettings, create_app
from kimonaudit.api.fastingest import INLINE_BYTES
from kimonaudit.core.decode import decode_body
from kimonaudit.errors import AuthError
from tests.helpers import event


class Stack:
    """A log, an app over it and a client; `fallbacks` counts the requests
    the fast path handed to FastAPI."""

    def __init__(self, root: Path, settings: ApiSettings, fast: bool) -> None:
        root.mkdir()
        self.log = kimonaudit.open(f"sqlite:///{root / 'a.db'}", key_file=str(root / "k.key"))
        t = self.log.create_tenant("acme")
        self.keys = {
            "admin": self.log.create_api_key(t.id, "admin", ["admin"])[1],
            "write": self.log.create_api_key(t.id, "writer", ["events:write"])[1],
            "read": self.log.create_api_key(t.id, "reader", ["events:read"])[1],
        }
        self.tenant = t.id
        self.app = create_app(self.log, settings=settings)
        self.fallbacks = 0
        assert self.app.fast is not None  # type: ignore[attr-defined]
        if fast:
            inner = self.app.fast.app  # type: ignore[attr-defined]

            async def counted(scope: Any, receive: Any, send: Any) -> None:
                if scope["type"] == "http" and scope["path"] == "/v1/events":
                    self.fallbacks += 1
                await inner(scope, receive, send)

            self.app.fast.app = counted  # type: ignore[attr-defined]
        else:
            self.app.fast = None  # type: ignore[attr-defined]
        self.client = TestClient(self.app, raise_server_exceptions=False)
        self.client.__enter__()

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.log.close()


@pytest.fixture
def stacks(tmp_path: Path) -> Iterator[Callable[[ApiSettings], tuple[Stack, Stack]]]:
    made: list[Stack] = []

    def make(settings: ApiSettings) -> tuple[Stack, Stack]:
        n = len(made)
        fast = Stack(tmp_path / f"fast{n}", settings, fast=True)
        full = Stack(tmp_path / f"full{n}", settings, fast=False)
        made.extend((fast, full))
        return fast, full

    yield make
    for s in made:
        s.close()


def _normal(resp: Any) -> tuple[int, str, Any, str | None]:
    """What must agree between the two paths: status, media type, body
    (receipts without their times and hashes, which differ by clock) and
    Retry-After."""
    body = resp.json() if resp.content else None
    if isinstance(body, dict) and "receipts" in body:
        body = {**body, "receipts": [(r["seq"], _given(r["id"])) for r in body["receipts"]]}
    media = resp.headers.get("content-type", "")
    return resp.status_code, media, body, resp.headers.get("retry-after")


def _given(event_id: str) -> str:
    """A client's id as it is; one the server made (a UUIDv7) as "uuid"."""
    try:
        uuid.UUID(event_id)
    except ValueError:
        return event_id
    return "uuid"


def _both(stacks: tuple[Stack, Stack], send: Callable[[Stack], Any]) -> Any:
    fast, full = stacks
    a, b = send(fast), send(full)
    assert _normal(a) == _normal(b), (a.text, b.text)
    return a


def _raw(stack: Stack, body: bytes, key: str = "admin", ctype: str = "application/json") -> Any:
    headers = {"Authorization": f"Bearer {stack.keys[key]}", "Content-Type": ctype}
    return stack.client.post("/v1/events", content=body, headers=headers)


def _post(stack: Stack, body: Any, key: str = "admin") -> Any:
    return _raw(stack, json.dumps(body).encode(), key)


FAST_CASES: list[tuple[str, bytes, int]] = [
    ("one event", json.dumps(event(1)).encode(), 201),
    (
        "a batch with ids",
        json.dumps({"events": [event(i, id=f"ev-{i}") for i in range(3)]}).encode(),
        201,
    ),
    ("no action", json.dumps({"actor": {"id": "a"}}).encode(), 422),
    ("not JSON", b'{"action": ', 400),
    ("a duplicate key", b'{"action": "ticket.viewed", "action": "ticket.created"}', 422),
    ("too many events", json.dumps({"events": [event(i) for i in range(5)]}).encode(), 413),
    ("an empty batch", b'{"events": []}', 422),
    ("the tenant in the body", json.dumps({"events": [event(1)], "tenant_id": "x"}).encode(), 422),
    ("a bad IP", json.dumps(event(1, context={"ip": "999.1.1.1"})).encode(), 422),
    ("not UTF-8", b'{"action": "ticket.viewed", "metadata": {"a": "\xff"}}', 400),
]


@pytest.mark.parametrize(("case", "body", "status"), FAST_CASES, ids=[c[0] for c in FAST_CASES])
def test_fast_path_answers_as_the_route_does(
    stacks: Callable[[ApiSettings], tuple[Stack, Stack]], case: str, body: bytes, status: int
) -> None:
    pair = stacks(ApiSettings(max_events=4, run_jobs=False))
    resp = _both(pair, lambda s: _raw(s, body))
    assert resp.status_code == status, resp.text
    assert pair[0].fallbacks == 0  # the fast path answered, success or error
    assert pair[0].log.store.tree_state(pair[0].tenant).size == (
        pair[1].log.store.tree_state(pair[1].tenant).size
    )


SLOW_CASES: list[tuple[str, dict[str, str], str, int]] = [
    ("no key", {"Content-Type": "application/json"}, "", 401),
    ("an unknown key", {"Authorization": "Bearer kak_nope_nope"}, "", 401),
    ("a read-only key", {}, "read", 403),
    ("text/plain", {"Content-Type": "text/plain"}, "write", 415),
    (
        "a charset other than UTF-8",
        {"Content-Type": "application/json; charset=latin-1"},
        "write",
        415,
    ),
]


@pytest.mark.parametrize(
    ("case", "headers", "key", "status"), SLOW_CASES, ids=[c[0] for c in SLOW_CASES]
)
def test_what_the_fast_path_leaves_to_fastapi(
    stacks: Callable[[ApiSettings], tuple[Stack, Stack]],
    case: str,
    headers: dict[str, str],
    key: str,
    status: int,
) -> None:
    pair = stacks(ApiSettings(run_jobs=False))
    before = pair[0].log.store.tree_state(pair[0].tenant).size  # the keys' own entries

    def send(s: Stack) -> Any:
        h = {"Content-Type": "application/json"}
        if key:
            h["Authorization"] = f"Bearer {s.keys[key]}"
        h.update(headers)
        return s.client.post("/v1/events", content=json.dumps(event(1)).encode(), headers=h)

    resp = _both(pair, send)
    assert resp.status_code == status, resp.text
    assert pair[0].fallbacks == 1
    assert pair[0].log.store.tree_state(pair[0].tenant).size == before


def test_a_declared_body_over_the_limit_and_wait_checkpoint_go_to_fastapi(
    stacks: Callable[[ApiSettings], tuple[Stack, Stack]],
) -> None:
    fast, full = stacks(ApiSettings(max_body_bytes=2048, checkpoint_interval=0.05))
    big = json.dumps({"events": [event(i) for i in range(40)]}).encode()
    assert len(big) > 2048
    resp = _both((fast, full), lambda s: _raw(s, big))
    assert resp.status_code == 413
    for s in (fast, full):
        r = s.client.post(
            "/v1/events?wait=checkpoint",
            json=event(2),
            headers={"Authorization": f"Bearer {s.keys['admin']}"},
        )
        assert r.status_code == 201 and "checkpoint" in r.json() and "proofs" in r.json()
    assert fast.fallbacks == 2


def test_retries_conflicts_and_big_bodies_on_the_fast_path(
    stacks: Callable[[ApiSettings], tuple[Stack, Stack]],
) -> None:
    pair = stacks(ApiSettings(run_jobs=False))
    batch = {"events": [event(i, id=f"r-{i}") for i in range(3)]}
    first = _both(pair, lambda s: _post(s, batch))
    again = _both(pair, lambda s: _post(s, batch))
    assert again.json()["receipts"] == first.json()["receipts"]  # the original receipts
    changed = {"events": [event(9, id="r-0")]}
    conflict = _both(pair, lambda s: _post(s, changed))
    assert conflict.status_code == 409
    # A body over INLINE_BYTES is decoded and appended on a thread.
    big = {"events": [event(i, id=f"big-{i}") for i in range(60)]}
    assert len(json.dumps(big)) > INLINE_BYTES
    resp = _both(pair, lambda s: _post(s, big))
    seqs = [r["seq"] for r in resp.json()["receipts"]]
    assert (
        seqs == list(range(seqs[0], seqs[0] + 60)) and seqs[0] > first.json()["receipts"][-1]["seq"]
    )
    assert pair[0].fallbacks == 0
    for s in pair:
        assert s.log.verify(s.tenant).ok


def test_rate_limit_on_the_fast_path(stacks: Callable[[ApiSettings], tuple[Stack, Stack]]) -> None:
    pair = stacks(ApiSettings(rate_limit=0.01, rate_burst=1, run_jobs=False))
    assert _both(pair, lambda s: _post(s, event(1))).status_code == 201
    limited = _both(pair, lambda s: _post(s, event(2)))
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert pair[0].fallbacks == 0
    actions = [r.action for r in pair[0].log.store.iter_entries(pair[0].tenant)]
    assert event(1)["action"] in actions and event(2)["action"] not in actions


def test_metrics_and_access_log_count_fast_requests(
    stacks: Callable[[ApiSettings], tuple[Stack, Stack]], caplog: pytest.LogCaptureFixture
) -> None:
    fast, full = stacks(ApiSettings(run_jobs=False, access_log=True))
    with caplog.at_level(logging.INFO, logger="kimonaudit.access"):
        for s in (fast, full):
            for i in range(3):
                assert _post(s, event(i)).status_code == 201
            assert _raw(s, b"{").status_code == 400
    lines = [r.getMessage() for r in caplog.records if r.name == "kimonaudit.access"]
    assert sum(line.startswith("POST /v1/events 201 ") for line in lines) == 6
    assert sum(line.startswith("POST /v1/events 400 ") for line in lines) == 2

    def counted(s: Stack) -> dict[str, float]:
        text = s.client.get("/metrics").text
        return {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if (
                line.startswith(("kimonaudit_http_requests_total", "kimonaudit_events_appended"))
                and "/v1/events" in line
            )
            or line.startswith("kimonaudit_events_appended_total")
        }

    assert counted(fast) == counted(full)
    assert (
        counted(fast)[
            'kimonaudit_http_requests_total{method="POST",route="/v1/events",status="201"}'
        ]
        == 3
    )
    assert fast.fallbacks == 0


def test_one_lookup_for_a_key_many_requests_meet_at_once(tmp_path: Path) -> None:
    """When a busy key's cache entry runs out, the requests that meet it
    share one database read."""
    log = kimonaudit.open(f"sqlite:///{tmp_path / 'a.db'}", key_file=str(tmp_path / "k.key"))
    try:
        t = log.create_tenant("acme")
        _, secret = log.create_api_key(t.id, "w", ["events:write"])
        app = create_app(log, settings=ApiSettings(run_jobs=False))
        auth = app.state.api.auth
        reads = 0
        real = log.authenticate

        def counting(text: str) -> Any:
            nonlocal reads
            reads += 1
            return real(text)

        log.authenticate = counting  # type: ignore[method-assign]

        async def many() -> list[Any]:
            return await asyncio.gather(*(auth.principal(secret) for _ in range(50)))

        got = asyncio.run(many())
        assert reads == 1
        assert {p.tenant_id for p in got} == {t.id}
        with pytest.raises(AuthError):
            asyncio.run(auth.principal("kak_bad_key"))
        assert auth.cached("kak_bad_key") is None  # failures are never cached
    finally:
        log.close()


def test_submit_validated_cached_only(tmp_path: Path) -> None:
    """cached_only: None while an actor is new (it needs the database),
    a future once the actor is known; the entries are the same either way."""
    log = kimonaudit.open(f"sqlite:///{tmp_path / 'a.db'}", key_file=str(tmp_path / "k.key"))
    try:
        tid = log.create_tenant("acme").id
        first = decode_body(json.dumps(event(1, actor={"id": "agent_7"})).encode())
        assert log.submit_validated(tid, first, cached_only=True) is None
        assert log.store.tree_state(tid).size == 0  # nothing was appended
        (r0,) = log.append_validated(tid, first)
        again = decode_body(json.dumps(event(2, actor={"id": "agent_7"})).encode())
        future = log.submit_validated(tid, again, cached_only=True)
        assert future is not None
        (r1,) = future.result(timeout=10)
        assert (r0.seq, r1.seq) == (0, 1)
        rows = list(log.store.iter_entries(tid))
        assert rows[0].actor_hash == rows[1].actor_hash
        empty = log.submit_validated(tid, [], cached_only=True)
        assert empty is not None and empty.result() == []
        assert log.verify(tid).ok
    finally:
        log.close()


def test_receipts_are_the_bytes_the_route_sends(
    stacks: Callable[[ApiSettings], tuple[Stack, Stack]],
) -> None:
    """The fast path encodes with msgspec; the route with json.dumps (as
    Starlette's JSONResponse does). Ids with quotes, backslashes and
    non-ASCII text come out byte for byte the same."""
    ids = ['q"uote', "back\\slash", "ünïcödé-票", "line\u2028sep", "emoji-\U0001f600"]
    pair = stacks(ApiSettings(run_jobs=False))
    body = {"events": [event(i, id=ident) for i, ident in enumerate(ids)]}
    resp = _both(pair, lambda s: _post(s, body))
    assert resp.status_code == 201
    assert [r["id"] for r in resp.json()["receipts"]] == ids
    as_route = json.dumps(resp.json(), ensure_ascii=False, separators=(",", ":")).encode()
    assert resp.content == as_route
    assert pair[0].fallbacks == 0
