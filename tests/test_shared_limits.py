"""Limits that hold across processes (issue 10, item 12): two `kimonaudit
serve` processes on one PostgreSQL share the per-API-key rate limit and the
console's sign-in throttle (kept in the database, migration 8), and a
restart forgets neither."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

import kimonaudit
from kimonaudit.console.accounts import ConsoleAccounts
from tests.servers import ServeProcess, bearer, make_tenant

pytestmark = pytest.mark.postgres

EMAIL, PASSWORD = "owner@acme.test", "correct horse battery"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _pair(pg_url: str, tmp_path: Path, *options: str) -> tuple[ServeProcess, ServeProcess]:
    key_file = str(tmp_path / "k.key")
    return (
        ServeProcess(pg_url, key_file, tmp_path, *options),
        ServeProcess(pg_url, key_file, tmp_path, *options),
    )


def test_api_rate_limit_is_one_across_processes(pg_url: str, tmp_path: Path) -> None:
    """At one request per 20 s per key (a bucket of one), six quick requests
    spread over two processes get one answer between them, not one each;
    a restarted process still remembers the empty bucket."""
    _, key = make_tenant(pg_url, str(tmp_path / "k.key"), "acme")
    a, b = _pair(pg_url, tmp_path, "--rate-limit", "0.05")
    with a, b:
        codes = [
            httpx.get(f"{srv.url}/v1/checkpoints/latest", headers=bearer(key)).status_code
            for srv in (a, b, a, b, a, b)
        ]
        assert codes.count(429) == 5, codes
        assert set(codes) <= {200, 404, 429}
        a.stop()
        a.start()
        assert httpx.get(f"{a.url}/v1/checkpoints/latest", headers=bearer(key)).status_code == 429


def _sign_in(client: httpx.Client, tenant: str, password: str) -> httpx.Response:
    page = client.get("/console/signin").text
    m = _CSRF.search(page)
    assert m is not None
    data = {"csrf": m.group(1), "tenant": tenant, "email": EMAIL, "password": password}
    return client.post("/console/signin", data=data)


def test_sign_in_throttle_is_one_across_processes(pg_url: str, tmp_path: Path) -> None:
    """Five wrong passwords for one account, alternating between two
    processes, lock it (the fifth failure locks for 1 s): the next attempt
    on either is a 429, even with the right password. A restarted process
    still counts those failures: one more wrong password locks again."""
    key_file = str(tmp_path / "k.key")
    with kimonaudit.open(pg_url, key_file=key_file) as log:
        tenant = log.create_tenant("acme").id
        ConsoleAccounts(log).create_user(tenant, EMAIL, PASSWORD, "owner")
    a, b = _pair(pg_url, tmp_path)
    with a, b, httpx.Client(base_url=a.url) as ca, httpx.Client(base_url=b.url) as cb:
        statuses = [
            _sign_in(c, tenant, "wrong password!").status_code for c in (ca, cb, ca, cb, ca)
        ]
        assert statuses == [401] * 5
        r = _sign_in(cb, tenant, PASSWORD)
        assert r.status_code == 429, r.text
        assert int(r.headers["retry-after"]) >= 1
        b.stop()
        b.start()
        time.sleep(1.2)  # the 1 s lockout is over; the count is not
        with httpx.Client(base_url=b.url) as again:
            assert _sign_in(again, tenant, "wrong password!").status_code == 401
            assert _sign_in(again, tenant, PASSWORD).status_code == 429


def test_rate_buckets_skip_the_wal_and_lockouts_do_not(pg_url: str, tmp_path: Path) -> None:
    """Migration 11: the per-request bucket is UNLOGGED (a request never
    waits for a WAL flush); the sign-in throttle stays crash-safe."""
    import psycopg

    with kimonaudit.open(pg_url, key_file=str(tmp_path / "k.key")):
        pass
    with psycopg.connect(pg_url, autocommit=True) as conn:
        kinds = dict(
            conn.execute(
                "SELECT relname, relpersistence FROM pg_class"
                " WHERE oid IN ('api_rate_buckets'::regclass, 'signin_throttle'::regclass)"
            ).fetchall()
        )
    assert kinds == {"api_rate_buckets": "u", "signin_throttle": "p"}
