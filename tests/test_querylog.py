"""Recorded queries carry actor hashes, never actor ids (issue 10, item 4):
after an actor's erasure, nothing in the access entries leads to them."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kimonaudit.core.query import parse
from kimonaudit.querylog import pseudonymise
from kimonaudit.search import record_access

ACTOR_IDS = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters='"\\*?,'),
    min_size=3,
    max_size=20,
).filter(lambda s: not s.startswith("-") and ".." not in s)


def _fake_hash(actor_id: str) -> str:
    return f"{abs(hash(actor_id)):064x}"[:64]


@given(ACTOR_IDS, st.booleans())
def test_no_actor_id_survives(actor_id: str, negated: bool) -> None:
    """Whatever the actor id, the recorded query holds its hash instead,
    and the other terms are kept as they were."""
    sign = "-" if negated else ""
    q = f'action:ticket.viewed {sign}actor:"{actor_id}" created:>-7d'
    try:
        parse(q)
    except Exception:
        return
    out = pseudonymise(q, _fake_hash)
    assert f'"{actor_id}"' not in out and f"actor:{actor_id}" not in out
    assert f"{sign}actor_hash:{_fake_hash(actor_id)}" in out
    assert out.startswith("action:ticket.viewed ") and out.endswith(" created:>-7d")


def test_text_that_does_not_parse_loses_its_actor_values() -> None:
    """Even a query that does not parse keeps no actor value."""
    out = pseudonymise('actor:agent_A1 (( actor:"Ann Lee"', _fake_hash)
    assert "agent_A1" not in out and "Ann Lee" not in out


def _metadata(row: Any) -> dict[str, Any]:
    return dict(json.loads(row.payload or b"{}")["metadata"])


def test_erased_actor_cannot_be_found_in_earlier_queries(log: Any) -> None:
    """After `actor:agent_A1` was searched and agent_A1 erased, a free-text
    search for agent_A1 finds no access entry, and none holds the id."""
    t = log.create_tenant("acme").id
    log.append(t, [{"action": "ticket.viewed", "actor": {"id": "agent_A1", "type": "agent"}}])
    auditor = {"id": "console:u1", "type": "console_user"}
    for action in ("audit_log.searched", "audit_log.exported", "audit_log.viewed"):
        page = log.search(t, "actor:agent_A1 action:ticket.viewed")
        record_access(log, t, action, auditor, page.query, len(page), "api")
    rows = [r for r in log.store.iter_entries(t) if r.action.startswith("audit_log.")]
    assert len(rows) == 3
    expected = f"actor_hash:{log.actor_hash(t, 'agent_A1')} action:ticket.viewed"
    assert all(_metadata(r)["query"] == expected for r in rows)
    assert all(b"agent_A1" not in (r.payload or b"") for r in rows)
    log.erase_actor(t, "agent_A1")
    found = log.search(t, "agent_A1", limit=100)
    assert [e for e in found.entries if e.action.startswith("audit_log.")] == []


def test_an_unknown_or_erased_actor_is_recorded_as_unknown(log: Any) -> None:
    """An actor id the directory does not hold is recorded as
    `actor_hash:unknown`, never as the id."""
    t = log.create_tenant("acme").id
    who = {"id": "console:u1", "type": "console_user"}
    r = record_access(log, t, "audit_log.searched", who, "actor:nobody_7", 0, "api")
    row = log.get_entry(t, r.seq)
    assert _metadata(row)["query"] == "actor_hash:unknown"
