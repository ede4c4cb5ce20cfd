"""The admin console in process for the console test modules: a Starlette
app over a real SQLite log with a tenant and an owner, signed in through the
real sign-in form."""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning
from starlette.routing import Mount

with warnings.catch_warnings():
    # Starlette would rather run its TestClient on `httpx2`; the project uses httpx.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

import kimonaudit
from kimonaudit.console.records import ConsoleUser
from kimonaudit.console.web import ConsoleSettings, ConsoleState, create_console
from kimonaudit.core.records import EntryRow
from tests.helpers import event

PASSWORD = "correct horse battery"
# argon2id at its cheapest: the tests exercise the flow, not the cost.
FAST = ConsoleSettings(password_time_cost=1, password_memory_kib=1024, password_parallelism=1)
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    m = _CSRF.search(html)
    assert m is not None, "page has no form with a CSRF token"
    return m.group(1)


@dataclass
class Console:
    """A console app over a real SQLite log, with a tenant and an owner."""

    log: kimonaudit.AuditLog
    app: Starlette
    tenant: str
    owner: ConsoleUser
    path: Path

    @property
    def state(self) -> ConsoleState:
        return self.app.routes[0].app.state.console  # type: ignore[attr-defined,no-any-return]

    def client(self, https: bool = False) -> TestClient:
        base = "https://console.test" if https else "http://console.test"
        return TestClient(self.app, base_url=base, raise_server_exceptions=True)

    def add_user(self, email: str, role: str, tenant: str | None = None) -> ConsoleUser:
        return self.state.accounts.create_user(tenant or self.tenant, email, PASSWORD, role)

    def signed_in(self, email: str | None = None, https: bool = False) -> TestClient:
        c = self.client(https)
        r = sign_in(c, self.tenant, email or self.owner.email, PASSWORD)
        assert r.status_code == 303, r.text
        return c

    def entries(self, tenant: str | None = None) -> list[EntryRow]:
        return list(self.log.store.iter_entries(tenant or self.tenant))

    def last(self, action: str, tenant: str | None = None) -> tuple[EntryRow, dict[str, Any]]:
        rows = [r for r in self.entries(tenant) if r.action == action]
        assert rows, f"no {action} entry"
        row = rows[-1]
        return row, json.loads(row.payload or b"{}")

    def __enter__(self) -> Console:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.log.close()


def sign_in(c: TestClient, tenant: str, email: str, password: str, **extra: str) -> Any:
    page = c.get("/console/signin")
    data = {"csrf": csrf_of(page.text), "tenant": tenant, "email": email, "password": password}
    return c.post("/console/signin", data={**data, **extra}, follow_redirects=False)


def make_console(tmp_path: Path, settings: ConsoleSettings = FAST, **open_kw: Any) -> Console:
    log = kimonaudit.open(
        f"sqlite:///{tmp_path / 'console.db'}", key_file=str(tmp_path / "k.key"), **open_kw
    )
    tenant = log.create_tenant("acme").id
    console_app = create_console(log, settings)
    app = Starlette(routes=[Mount("/console", console_app)])
    owner = console_app.state.console.accounts.create_user(
        tenant, "owner@acme.test", PASSWORD, "owner"
    )
    return Console(log, app, tenant, owner, tmp_path)


def helpdesk_history(c: Console) -> None:
    """A small helpdesk day: ticket 10482 viewed by two agents, role
    changes, other traffic."""
    events = [event(i) for i in range(40)]
    events += [
        {
            "action": "ticket.viewed",
            "actor": {"id": "agent_9", "type": "agent", "name": "Ann Lee", "email": "ann@a.test"},
            "target": {"type": "ticket", "id": "10482"},
        },
        {
            "action": "ticket.viewed",
            "actor": {"id": "agent_5", "type": "agent", "name": "Bo Chen"},
            "target": {"type": "ticket", "id": "10482"},
        },
        {
            "action": "role.revoked",
            "actor": {"id": "admin_1", "type": "admin", "name": "Root Admin"},
            "target": {"type": "user", "id": "agent_5"},
            "changes": [{"field": "role", "from": "admin", "to": "agent"}],
        },
    ]
    c.log.append(c.tenant, events)
