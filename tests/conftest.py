"""Shared fixtures. One suite runs against every store: `db_url` is
parametrised over SQLite and PostgreSQL.

PostgreSQL tests read KIMONAUDIT_TEST_POSTGRES_URL. Without it they are
skipped on a developer machine, but under CI (CI=true) a missing variable
or an unreachable server fails the run: the PostgreSQL suite must run.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest

# The SQLite indexer in-process: a child process per opened store would cost
# a Python start-up in each of the suite's thousands of opens. The process
# mode has its own tests (tests/test_projection.py).
os.environ.setdefault("KIMONAUDIT_INDEXER", "thread")

PG_ENV = "KIMONAUDIT_TEST_POSTGRES_URL"

# Network rule: tests reach loopback only. SIEM destinations created by any
# test (the API fuzzer included), in this process or a server it starts,
# resolve names from /etc/hosts alone, so no DNS query leaves the machine
# and no name can lead a delivery off loopback.
os.environ["KIMONAUDIT_DESTINATION_RESOLVE"] = "hosts"


def _pg_base_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set: the PostgreSQL suite must run in CI")
        pytest.skip(f"{PG_ENV} not set")
    return url


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    url = _pg_base_url()
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_ENV} is unreachable: {exc}")
    return url


def _with_schema(url: str, schema: str) -> str:
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after."""
    import psycopg

    schema = "kt_" + secrets.token_hex(6)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield _with_schema(pg_admin_url, schema)
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def key_file(tmp_path: Path) -> str:
    return str(tmp_path / "kimonaudit.key")


class FakeClock:
    """A controllable clock: tests step through months of history."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def log(db_url: str, key_file: str, clock: FakeClock) -> Iterator[object]:
    import kimonaudit

    with kimonaudit.open(db_url, key_file=key_file, clock=clock) as lg:
        yield lg
