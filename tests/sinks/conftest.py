"""Real entries and checkpoints, from a real log, for the format tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import kimonaudit
from kimonaudit.core.catalogue import CATALOGUE
from kimonaudit.service import AuditLog
from kimonaudit.sinks.events import StreamEvent, from_checkpoint, from_entry


@pytest.fixture(scope="module")
def catalogue_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AuditLog, str]]:
    """One entry per catalogue action, then a custom one and a hostile one."""
    tmp: Path = tmp_path_factory.mktemp("sinks")
    log = kimonaudit.open(f"sqlite:///{tmp / 'a.db'}", key_file=str(tmp / "k.key"))
    tenant = log.create_tenant("acme", plan="business")
    events = []
    for i, action in enumerate(CATALOGUE):
        on_user = action.startswith(("user.", "role.a", "role.r"))
        target = {"type": "user", "id": f"u{i}"} if on_user else {"type": "ticket", "id": f"{i}"}
        events.append(
            {
                "action": action,
                "actor": {"id": f"agent_{i % 3}", "type": "agent", "name": "Ann"},
                "target": target,
                "context": {"ip": "203.0.113.9", "user_agent": "Mozilla/5.0"},
                "changes": [{"field": "status", "from": "open", "to": "pending"}],
                "metadata": {"method": "POST", "path": "/api/v2/tickets"},
                "outcome": "failure" if action == "auth.login.failed" else "success",
            }
        )
    events.append({"action": "billing.invoice.exported", "actor": {"id": "x"}})
    events.append(
        {
            "action": "ticket.field_changed",
            "actor": {"id": "evil", "type": "agent"},
            "target": {"type": "ticket|x\\y", "id": 'a=b c]"d'},
            "context": {"ip": "2001:db8::1", "user_agent": "bad|agent=1\\\r\n"},
            "changes": [{"field": "subject", "from": "x=1", "to": 'é \\ | ] " \n'}],
        }
    )
    log.append(tenant.id, events)
    log.checkpoint(tenant.id)
    yield log, tenant.id
    log.close()


@pytest.fixture(scope="module")
def stream_events(catalogue_log: tuple[AuditLog, str]) -> list[StreamEvent]:
    log, tid = catalogue_log
    out = [from_entry(r) for r in log.store.iter_entries(tid)]
    out += [from_checkpoint(cp) for cp in log.list_checkpoints(tid)]
    return out
