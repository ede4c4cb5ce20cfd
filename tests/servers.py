"""Real `python -m kimonaudit serve` processes on 127.0.0.1 for the tests
that talk to the API over sockets, and the small pieces they share: a free
port, a tenant with a key, an Authorization header."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import httpx
import pytest

import kimonaudit
from kimonaudit.core.records import EntryRow

ROOT = Path(__file__).resolve().parent.parent


def child_env() -> dict[str, str]:
    """The environment for a child `python -m kimonaudit`: this checkout's
    own src first (a git worktree beside the installed one tests itself),
    and the repository root for `tests.*`."""
    return {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}


KEY_EVENT = "auth.api_token.created"  # written by create_api_key itself
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


def free_port() -> int:
    """A loopback port nothing listens on now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_tenant(
    db: str,
    key_file: str,
    name: str,
    scopes: Sequence[str] = ("admin",),
    key_name: str = "admin",
) -> tuple[str, str]:
    """A new tenant and one API key for it: (tenant id, key)."""
    with kimonaudit.open(db, key_file=key_file) as log:
        tid = log.create_tenant(name).id
        return tid, log.create_api_key(tid, key_name, list(scopes))[1]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class ServeProcess:
    """`kimonaudit serve` on a loopback port chosen once. After `kill()` or
    `stop()`, `start()` brings the server back on the same port and
    database, so a client sees the same server go away and come back.
    Every run's stdout and stderr are appended to `output`.

    As a context manager it is started on entry and stopped on exit."""

    def __init__(self, db: str, key_file: str, workdir: Path, *options: str) -> None:
        self.db = db
        self.key_file = key_file
        self.workdir = workdir
        self.options = options  # further `serve` options, e.g. --rate-limit 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = workdir / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def open_log(self) -> kimonaudit.AuditLog:
        return kimonaudit.open(self.db, key_file=self.key_file)

    def start(self) -> ServeProcess:
        """Start the process and return once /healthz answers 200."""
        with self.output.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kimonaudit", "--db", self.db, "--key-file", self.key_file,
                 "serve", "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
                 *self.options],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=child_env(),
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                pytest.fail(f"serve exited with {code}:\n{self.output.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"serve did not answer within {START_TIMEOUT} s:\n{self.output.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, requests in flight are cut."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        """SIGTERM and wait for a graceful shutdown; SIGKILL if it hangs."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def __enter__(self) -> ServeProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class IngestServer(ServeProcess):
    """A server on a fresh SQLite log in `directory` with tenant "acme" and
    an events:write key, rate limiting off: what the audit client (and the
    ASGI middleware through it) sends events to."""

    def __init__(self, directory: Path) -> None:
        super().__init__(
            f"sqlite:///{directory / 'audit.db'}",
            str(directory / "kimonaudit.key"),
            directory,
            "--rate-limit",
            "0",
        )
        self.tenant_id, self.api_key = make_tenant(
            self.db, self.key_file, "acme", ["events:write"], key_name="client-tests"
        )

    def entries(self, ids: set[str] | None = None) -> list[EntryRow]:
        """This tenant's entries in seq order (only `ids`, if given),
        without the key-creation entry."""
        with self.open_log() as log:
            rows = [r for r in log.store.iter_entries(self.tenant_id) if r.action != KEY_EVENT]
        return [r for r in rows if ids is None or r.event_id in ids]
