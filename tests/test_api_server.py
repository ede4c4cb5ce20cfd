"""The HTTP API as users run it: `python -m kimonaudit serve` in a
subprocess on a free 127.0.0.1 port, driven over real sockets.

- schemathesis fuzzes every operation of /openapi.json (bounded examples,
  a valid admin key): no 5xx, every response conforms to the schema;
- tenant isolation on every route, on SQLite and PostgreSQL;
- SIGKILL during concurrent ingest loses no acknowledged event, and the log
  verifies after a restart.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import kimonaudit
from tests.helpers import event
from tests.servers import ServeProcess, bearer, make_tenant

# A short checkpoint interval: requests that wait for a checkpoint answer quickly.
SERVE_OPTIONS = ("--checkpoint-interval", "0.1")


# -- schemathesis ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, str]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    db, key_file = f"sqlite:///{tmp / 'fuzz.db'}", str(tmp / "fuzz.key")
    tid, key = make_tenant(db, key_file, "fuzz")
    with kimonaudit.open(db, key_file=key_file) as log:
        log.append(tid, [event(i, id=f"evt-{i}") for i in range(20)])
    with ServeProcess(db, key_file, tmp, *SERVE_OPTIONS) as server:
        yield server, key


def test_openapi_fuzz_no_5xx_and_conformant(fuzz_server: tuple[ServeProcess, str]) -> None:
    """Every operation, with valid and invalid generated input and a valid key: never a 5xx,
    status, content type and body always as /openapi.json documents."""
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    # What the API promises: no 5xx, and responses exactly as documented. Whether a request
    # is accepted is not judged from the schema: event validation (severity never lowered,
    # integers within 2**53, nesting depth, IP syntax...) says more than a schema can.
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        response_headers_conformance,
    ]

    server, key = fuzz_server
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = bearer(key)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 11
    failures: list[str] = []
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(generation_mode=mode))
            @settings(
                max_examples=25,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def run(case: schemathesis.Case) -> None:
                case.call_and_validate(
                    base_url=server.url, headers=headers, checks=checks, timeout=10
                )

            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to break in a parameterless GET
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{op.label} [{mode.value}]: {exc}")
    assert not failures, "\n\n".join(failures)
    assert "Traceback" not in server.output.read_text()


# -- tenant isolation ---------------------------------------------------------------------
def test_tenant_isolation_on_every_route(db_url: str, key_file: str, tmp_path: Path) -> None:
    """Tenant A's key never reaches tenant B: B's events, checkpoints, proofs and keys are
    404 to A, the same client id lives independently in both, and a tenant field in A's body
    cannot write to B."""
    a_tid, a_key = make_tenant(db_url, key_file, "tenant-a")
    b_tid, b_key = make_tenant(db_url, key_file, "tenant-b")
    with (
        ServeProcess(db_url, key_file, tmp_path, *SERVE_OPTIONS) as server,
        httpx.Client(base_url=server.url, timeout=15) as c,
    ):
        _isolation_checks(c, a_tid, a_key, b_tid, b_key)
    with kimonaudit.open(db_url, key_file=key_file) as log:
        a_ids = {e.event_id for e in log.store.iter_entries(a_tid)}
        b_ids = {e.event_id for e in log.store.iter_entries(b_tid)}
        assert not {i for i in a_ids if i.startswith("b-")}
        assert not {i for i in b_ids if i.startswith("a-")}
        assert log.verify(a_tid).ok and log.verify(b_tid).ok


def _isolation_checks(c: httpx.Client, a_tid: str, a_key: str, b_tid: str, b_key: str) -> None:
    a, b = bearer(a_key), bearer(b_key)
    ra = c.post("/v1/events", json={"events": [event(0, id="a-1"), event(1, id="shared")]},
                headers=a)  # fmt: skip
    rb = c.post(
        "/v1/events",
        params={"wait": "checkpoint"},
        json={"events": [event(i, id=f"b-{i}") for i in range(30)] + [event(9, id="shared")]},
        headers=b,
    )
    assert ra.status_code == rb.status_code == 201, (ra.text, rb.text)
    b_size = rb.json()["tree_size"]
    a_size = c.get("/v1/checkpoints/latest", headers=a).json()["tree_size"]
    assert a_size < b_size

    def status(url: str, headers: dict[str, str], **kw: object) -> int:
        return c.get(url, headers=headers, **kw).status_code  # type: ignore[arg-type]

    # events by id: each tenant sees only its own
    assert status("/v1/events/b-1", a) == 404 and status("/v1/events/a-1", b) == 404
    assert status("/v1/events/a-1", a) == 200 and status("/v1/events/b-1", b) == 200
    shared_a = c.get("/v1/events/shared", headers=a).json()
    shared_b = c.get("/v1/events/shared", headers=b).json()
    assert shared_a["event"]["seq"] != shared_b["event"]["seq"]
    assert shared_a["inclusion"]["checkpoint"].startswith(f"kimonaudit.local/tenants/{a_tid}")
    # proofs against B's tree sizes
    assert status(f"/v1/checkpoints/{b_size}", a) == 404
    assert status(f"/v1/checkpoints/{b_size}", b) == 200
    assert status("/v1/events/a-1", a, params={"tree_size": b_size}) == 404
    assert status("/v1/proofs/consistency", a, params={"from": 1, "to": b_size}) == 404
    assert status("/v1/proofs/consistency", b, params={"from": 1, "to": b_size}) == 200
    latest_a = c.get("/v1/checkpoints/latest", headers=a).json()
    assert latest_a["tenant_id"] == a_tid and latest_a["origin"].endswith(a_tid)
    # API keys
    b_key_id = b_key[4:16]
    assert c.delete(f"/v1/api-keys/{b_key_id}", headers=a).status_code == 404
    assert {k["tenant_id"] for k in c.get("/v1/api-keys", headers=a).json()["api_keys"]} == {a_tid}
    assert c.get("/v1/checkpoints/latest", headers=b).status_code == 200  # still valid
    # a tenant field in the body is refused, and B is untouched
    for body in ({**event(3), "tenant_id": b_tid}, {"events": [event(3)], "tenant": b_tid}):
        assert c.post("/v1/events", json=body, headers=a).status_code == 422
    assert c.get("/v1/checkpoints/latest", headers=b).json()["tree_size"] == b_size


# -- SIGKILL during ingest --------------------------------------------------------------
def _ingest_until_killed(url: str, key: str, worker: int, acked: dict, stop: threading.Event):
    rnd = random.Random(worker)
    n = 0
    with httpx.Client(base_url=url, headers=bearer(key), timeout=10) as c:
        while not stop.is_set():
            size = rnd.randint(1, 40)
            batch = [event(n + k, id=f"w{worker}-{n + k}") for k in range(size)]
            n += size
            try:
                resp = c.post("/v1/events", json={"events": batch})
            except httpx.HTTPError:
                return  # the server is gone: whatever was not answered was not acknowledged
            assert resp.status_code == 201, resp.text
            for r in resp.json()["receipts"]:
                acked[r["id"]] = (r["seq"], r["leaf_hash"])


@pytest.mark.slow
def test_sigkill_during_ingest_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """Two rounds: 6 clients ingest concurrently, the server is SIGKILLed mid-stream; every
    acknowledged id is stored with its receipt's seq and leaf hash, and verify passes (library
    and `kimonaudit verify`) after a restart."""
    import base64

    db, key_file = f"sqlite:///{tmp_path / 'kill.db'}", str(tmp_path / "kill.key")
    tid, key = make_tenant(db, key_file, "crash")
    acked: dict[str, tuple[int, str]] = {}
    for round_no in range(2):
        server = ServeProcess(db, key_file, tmp_path, *SERVE_OPTIONS).start()
        stop = threading.Event()
        workers = [
            threading.Thread(
                target=_ingest_until_killed, args=(server.url, key, 10 * round_no + w, acked, stop)
            )
            for w in range(6)
        ]
        for w in workers:
            w.start()
        before = len(acked)
        time.sleep(1.0 + round_no * 0.7)
        server.kill()
        stop.set()
        for w in workers:
            w.join(timeout=15)
        assert len(acked) > before  # this round acknowledged events before the kill
    with kimonaudit.open(db, key_file=key_file) as log:
        for event_id, (seq, leaf_hash) in acked.items():
            row = log.get_entry_by_id(tid, event_id)
            assert (row.seq, base64.b64encode(row.leaf_hash).decode()) == (seq, leaf_hash)
        assert log.verify(tid).ok
    with ServeProcess(db, key_file, tmp_path, *SERVE_OPTIONS) as server:
        after = httpx.get(f"{server.url}/v1/events/w0-0", headers=bearer(key), timeout=10)
        assert after.status_code == 200
    check = subprocess.run(
        [sys.executable, "-m", "kimonaudit", "--db", db, "--key-file", key_file, "verify"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert check.returncode == 0, check.stdout + check.stderr
