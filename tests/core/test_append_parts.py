"""The append path's shortcuts give exactly what the plain definitions give:
leaf parts, the Merkle tree extended a batch at a time, retries inside a
batch, and server-made ids."""

from __future__ import annotations

import hashlib
import time
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kimonaudit import ids
from kimonaudit.core.catalogue import Severity
from kimonaudit.core.leaf import (
    leaf_fields,
    leaf_hash_input,
    leaf_head,
    leaf_head_start,
    leaf_middle,
    leaf_tail,
    payload_commitment,
)
from kimonaudit.core.ledger import RowLeaves, leaf_of_row, leaf_parts, plan_append
from kimonaudit.core.merkle import LEAF_PREFIX, CompactRange, is_stored_level
from kimonaudit.core.records import AppendPlan, EntryRow, Prepared, Receipt, TreeState
from kimonaudit.errors import Conflict
from tests.core.leaf_strategies import LEAF_FIELDS, maybe


@settings(max_examples=300, deadline=None)
@given(**LEAF_FIELDS)
def test_leaf_parts_join_to_the_leaf(
    tenant: str, seq: int, ts: int, eid: str | None, action: str, category: str, sev: Severity,
    security: bool, ahash: str | None, atype: str | None, ttype: str | None, tid: str | None,
    outcome: str, commitment: bytes,
) -> None:  # fmt: skip
    """head + middle + seq + tail == LEAF_PREFIX + leaf_fields(...), '%' and all."""
    head = leaf_head(leaf_head_start(action, ahash, atype, category), eid, outcome, commitment)
    tail = leaf_tail(int(sev), tid, ttype, tenant)
    joined = leaf_hash_input(head, leaf_middle(ts), security, seq, tail)
    leaf = leaf_fields(
        tenant, seq, ts, eid, action, category, int(sev), security, ahash, atype, ttype, tid,
        outcome, commitment,
    )  # fmt: skip
    assert joined == LEAF_PREFIX + leaf


def _leaves(n: int, salt: int = 0) -> list[bytes]:
    return [hashlib.sha256(b"leaf %d %d" % (salt, i)).digest() for i in range(n)]


@pytest.mark.parametrize("size", [0, 1, 2, 3, 5, 8, 15, 16, 17, 31, 255, 256, 1000])
@pytest.mark.parametrize("count", [1, 2, 3, 7, 16, 17, 100, 1000])
def test_extend_builds_the_tree_append_builds(size: int, count: int) -> None:
    """extend == append leaf by leaf: frontier, size, root, and the stored
    nodes (those on stored levels among the nodes append completes)."""
    one_by_one = CompactRange()
    for h in _leaves(size):
        one_by_one.append(h)
    batched = one_by_one.copy()
    completed = []
    for h in _leaves(count, 1):
        completed.extend(one_by_one.append(h))
    stored = batched.extend(_leaves(count, 1))
    assert batched == one_by_one
    assert batched.root() == one_by_one.root()
    assert sorted(stored) == sorted(n for n in completed if is_stored_level(n[0]))
    assert len(set((lv, ix) for lv, ix, _ in stored)) == len(stored)


def test_extend_with_nothing_and_bad_hashes() -> None:
    tree = CompactRange()
    tree.extend(_leaves(5))
    before = tree.copy()
    assert tree.extend([]) == [] and tree == before
    with pytest.raises(ValueError, match="32 bytes"):
        tree.extend([b"short"])
    assert tree == before


def _prepared(event_id: str, target: str = "1", payload: bytes = b"{}") -> Prepared:
    salt = b"s" * 32
    return Prepared(
        event_id, "ticket.viewed", "ticket", 0, False, "h" * 64, "agent", "ticket", target,
        "success", None, None, payload, salt, payload_commitment(salt, payload),
    )  # fmt: skip


def _check_rows(plan: AppendPlan) -> None:
    for row in plan.rows:
        assert row.leaf_hash == hashlib.sha256(LEAF_PREFIX + leaf_of_row(row)).digest()


def test_plan_with_given_parts_equals_plan_without() -> None:
    """The service's precomputed parts and the plain ones plan the same rows."""
    events = [_prepared(f"e{i}", target=str(i % 3)) for i in range(40)]
    state = TreeState("t_x", CompactRange(), 5, 0)
    for h in _leaves(13):
        state.tree.append(h)
    plain = plan_append(state, events, {}, 1_700_000_000_000_000)
    given_parts = plan_append(state, events, {}, 1_700_000_000_000_000, leaf_parts("t_x", events))
    assert plain.rows == given_parts.rows and plain.nodes == given_parts.nodes
    assert plain.state.tree == given_parts.state.tree and state.tree.size == 13
    assert [r.seq for r in plain.rows] == list(range(13, 53))
    _check_rows(plain)


def test_retries_inside_a_batch_and_from_the_log_keep_event_order() -> None:
    """An id already stored and an id repeated in the batch get the earlier
    receipt, in place; only the rest become entries, in order."""
    first = plan_append(TreeState("t_x"), [_prepared("a"), _prepared("b")], {}, 10)
    stored = {"b": first.rows[1]}
    batch = [_prepared("c"), _prepared("b"), _prepared("d"), _prepared("c"), _prepared("e")]
    plan = plan_append(first.state, batch, stored, 20)
    assert [r.event_id for r in plan.rows] == ["c", "d", "e"]
    assert [r.seq for r in plan.rows] == [2, 3, 4]
    assert [r.id for r in plan.receipts] == ["c", "b", "d", "c", "e"]
    assert plan.receipts[1] == Receipt("b", 1, 10, first.rows[1].leaf_hash)
    assert plan.receipts[3] == plan.receipts[0]
    assert plan.state.size == 5
    _check_rows(plan)


def test_a_changed_retry_inside_a_batch_is_a_conflict_naming_it() -> None:
    batch = [_prepared("a"), _prepared("b"), _prepared("a", payload=b'{"x":1}')]
    with pytest.raises(Conflict) as exc:
        plan_append(TreeState("t_x"), batch, {}, 10)
    assert exc.value.field == "events[2].id"


def test_a_redacted_stored_entry_is_compared_by_its_header() -> None:
    first = plan_append(TreeState("t_x"), [_prepared("a")], {}, 10)
    redacted: EntryRow = first.rows[0]._replace(payload=None, salt=None)
    plan = plan_append(first.state, [_prepared("a", payload=b'{"y":2}')], {"a": redacted}, 20)
    assert plan.rows == [] and plan.receipts[0].seq == 0
    assert plan.state.last_recorded_at == 10


def test_uuid7_batch_ids_are_ordered_unique_version_7_and_timely() -> None:
    before = time.time_ns() // 1_000_000
    made = ids.uuid7_batch(5000)  # more than one millisecond's 4,096 counter values
    after = ids.uuid7_batch(3)
    assert made == sorted(made) and len(set(made)) == len(made)
    assert after[0] > made[-1]
    for text_id in [*made, *after, ids.uuid7()]:
        u = uuid.UUID(text_id)
        assert str(u) == text_id
        assert u.version == 7 and u.variant == uuid.RFC_4122
        assert before <= u.int >> 80 <= time.time_ns() // 1_000_000 + 5
    # The 62 random bits vary (the variant digit takes all four values).
    assert {m[19] for m in made} == set("89ab")


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["ticket.viewed", "role.assigned", 'a"b%s']),
            st.sampled_from([None, "h" * 64, "ü%d"]),
            st.sampled_from([0, 1, 3, True]),
            st.sampled_from([None, "10482", "x\\y"]),
            st.sampled_from([1_700_000_000_000_000, 1_700_000_000_000_001, 0]),
            st.booleans(),
            maybe,
            st.integers(0, 2**40),
        ),
        max_size=30,
    )
)
def test_row_leaves_hash_every_row_as_leaf_of_row(
    rows: list[tuple[str, str | None, int, str | None, int, bool, str | None, int]],
) -> None:
    """RowLeaves' caches never change a leaf hash, whatever repeats or varies."""
    leaves = RowLeaves("t_%s x")
    for action, ahash, sev, tid, ts, sec, eid, seq in rows:
        salt, payload = b"s" * 32, b"{}"
        row = EntryRow(
            "t_%s x", seq, eid, ts, action, "cat", sev, sec, ahash, "agent", "ticket", tid,  # type: ignore[arg-type]
            "success", None, None, payload, salt, payload_commitment(salt, payload), b"",
        )  # fmt: skip
        assert leaves.leaf_hash(row) == hashlib.sha256(LEAF_PREFIX + leaf_of_row(row)).digest()
