"""A client id makes a retry idempotent, and only a retry: the same id with
other content is refused, so an id cannot be used to suppress an event."""

from __future__ import annotations

import pytest

from kimonaudit.errors import Conflict
from tests.helpers import event


def test_same_id_same_content_returns_the_original_receipt(log):
    """A repeated event with its id appends nothing and gets its first receipt."""
    t = log.create_tenant("acme")
    ev = {**event(1), "id": "a-ev-3"}
    first = log.append(t.id, [ev])[0]
    again = log.append(t.id, [dict(ev)])[0]
    assert again == first
    assert log.store.tree_state(t.id).size == 1


@pytest.mark.parametrize(
    "change",
    [
        {"action": "role.deleted"},
        {"outcome": "failure"},
        {"target": {"type": "ticket", "id": "other"}},
        {"metadata": {"via": "api"}},
        {"actor": {"id": "someone_else", "type": "agent"}},
    ],
)
def test_same_id_other_content_is_a_conflict_naming_the_id(log, change):
    """A retry that changes anything is refused; the log is unchanged."""
    t = log.create_tenant("acme")
    ev = {**event(1), "id": "a-ev-3"}
    log.append(t.id, [ev])
    with pytest.raises(Conflict) as exc:
        log.append(t.id, [event(2), {**ev, **change}])
    assert "a-ev-3" in exc.value.message
    assert exc.value.field == "events[1].id"
    assert log.store.tree_state(t.id).size == 1  # the whole batch was refused


def test_a_redacted_entry_still_refuses_other_content(log):
    """With its payload gone, the header is what a retry is compared with."""
    t = log.create_tenant("acme")
    ev = {**event(1), "id": "a-ev-9"}
    log.append(t.id, [ev])
    log.redact(t.id, 0, "legal request")
    assert log.append(t.id, [dict(ev)])[0].seq == 0
    with pytest.raises(Conflict):
        log.append(t.id, [{**ev, "action": "role.deleted"}])
