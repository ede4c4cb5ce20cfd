"""Issue 8, items 1, 4 and 5 through the library on both stores: plans and
retention settings, legal hold, erasure that unlinks, and redaction with a
reason. Each change is an entry in the tenant's own log."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

import kimonaudit
from kimonaudit.core.pseudonym import actor_hash as v1_actor_hash
from kimonaudit.errors import InvalidInput, NotFound
from tests.helpers import event, raw_db


def _last(log, tid):
    return log.get_entry(tid, log.store.tree_state(tid).size - 1)


def _meta(row):
    return json.loads(row.payload)["metadata"]


def test_plans_keep_12_or_36_months(log):
    """free/team keep 12 months, business/enterprise 36."""
    for plan, months in {"free": 12, "team": 12, "business": 36, "enterprise": 36}.items():
        assert log.create_tenant(plan, plan=plan).retention_months == months


def test_set_plan_is_an_entry_and_changes_retention(log):
    """A plan change takes effect and appends a security-relevant audit.retention.changed."""
    t = log.create_tenant("acme", plan="free")
    after = log.set_plan(t.id, "enterprise", actor={"id": "ops_1", "type": "user"})
    assert (after.plan, after.retention_months) == ("enterprise", 36)
    row = _last(log, t.id)
    assert row.action == "audit.retention.changed" and row.security
    assert _meta(row) == {
        "setting": "plan",
        "before": {"plan": "free", "retention_months": 12},
        "after": {"plan": "enterprise", "retention_months": 36},
    }
    size = log.store.tree_state(t.id).size
    log.set_plan(t.id, "enterprise")  # no change: no entry
    assert log.store.tree_state(t.id).size == size
    assert log.verify(t.id).ok


def test_custom_retention_floor_and_plan_default(log):
    """Own retention is never below 12 months; above the plan is fine; it survives a
    plan change; None goes back to the plan's."""
    t = log.create_tenant("acme", plan="team")
    for bad in (0, 11, -5):
        with pytest.raises(InvalidInput, match="below 12 months"):
            log.set_retention(t.id, bad)
    assert log.get_tenant(t.id).retention_months == 12
    assert log.set_retention(t.id, 72).retention_months == 72  # HIPAA's six years
    assert log.set_plan(t.id, "business").retention_months == 72
    s = log.retention_settings(t.id)
    assert (s.plan, s.plan_months, s.custom_months, s.months) == ("business", 36, 72, 72)
    assert log.set_retention(t.id, None).retention_months == 36
    actions = [r.action for r in log.store.iter_entries(t.id)]
    assert actions.count("audit.retention.changed") == 3


def test_legal_hold_on_and_off_are_entries(log):
    """Legal hold toggles and each toggle is logged with its reason."""
    t = log.create_tenant("acme")
    assert log.set_legal_hold(t.id, True, reason="case 2026-114").legal_hold
    row = _last(log, t.id)
    assert _meta(row) == {
        "setting": "legal_hold",
        "before": False,
        "after": True,
        "reason": "case 2026-114",
    }
    assert not log.set_legal_hold(t.id, False).legal_hold
    assert log.retention_settings(t.id).legal_hold is False


# -- erasure -----------------------------------------------------------------------
def test_erasure_unlinks_even_for_the_key_holder(log, db_url):
    """After erasure: actor:<id> finds nothing, the directory holds nothing about the
    person, no key the deployment holds recomputes their hash, the log verifies, and the
    erasure entry names no one."""
    t = log.create_tenant("acme")
    evs = [event(i) for i in range(40)]
    log.append(t.id, evs)
    before = log.search(t.id, "actor:agent_2", limit=100)
    assert len(before) == 10
    h = log.actor_hash(t.id, "agent_2")
    assert all(r.actor_hash == h for r in before.entries)
    cp = log.checkpoint(t.id)

    assert log.erase_actor(t.id, "agent_2", actor={"id": "dpo_1", "type": "user"}) is True

    assert len(log.search(t.id, "actor:agent_2", limit=100)) == 0
    with pytest.raises(NotFound):
        log.actor_hash(t.id, "agent_2")
    rec = log.resolve_actor(t.id, h)
    assert rec is not None and rec.erased_at is not None
    assert (rec.actor_id, rec.name, rec.email) == (None, None, None)
    # Nothing the deployment holds leads from the id to the hash any more.
    key = log.actor_key(t.id)
    secret = log.keys.actor_secret
    candidates = {
        v1_actor_hash(key, "agent_2"),
        v1_actor_hash(secret, "agent_2"),
        hmac.new(key, f"{t.id}\x00agent_2".encode(), hashlib.sha256).hexdigest(),
    }
    assert h not in candidates
    with raw_db(db_url) as run:
        dump = repr(run("SELECT * FROM actors")) + repr(run("SELECT * FROM actor_secrets"))
        assert "agent_2" not in dump and "Agent_2" not in dump
        assert run("SELECT count(*) FROM actor_secrets")[0][0] == 4  # 3 agents + the erasing DPO
    erased = _last(log, t.id)
    assert erased.action == "actor.erased" and erased.security
    assert "agent_2" not in repr(erased) and h not in repr(erased)
    report = log.verify(t.id)
    assert report.ok
    log.prove_consistency(t.id, cp.size, log.checkpoint(t.id).size)
    # Others are untouched.
    assert len(log.search(t.id, "actor:agent_1", limit=100)) == 10


def test_returning_person_gets_a_new_hash(log):
    """Someone erased who acts again is a new pseudonym, not re-linked to the old."""
    t = log.create_tenant("acme")
    log.append(t.id, [event(1)])
    old = log.actor_hash(t.id, "agent_2")
    log.erase_actor(t.id, "agent_2")
    log.append(t.id, [event(1)])  # agent_2 again
    new = log.actor_hash(t.id, "agent_2")
    assert new != old
    found = log.search(t.id, "actor:agent_2", limit=10)
    assert [r.actor_hash for r in found.entries] == [new]
    assert log.resolve_actor(t.id, old).erased_at is not None


def test_erasure_in_another_process_reaches_a_cached_appender(db_url, key_file, clock):
    """A second AuditLog (another process) erasing an actor: the first one's cache
    stops using the old hash within a second, and never re-links it in the directory."""
    import time

    with (
        kimonaudit.open(db_url, key_file=key_file, clock=clock) as a,
        kimonaudit.open(db_url, key_file=key_file, clock=clock) as b,
    ):
        t = a.create_tenant("acme")
        a.append(t.id, [event(1)])
        old = a.actor_hash(t.id, "agent_2")
        b.erase_actor(t.id, "agent_2")
        a.append(t.id, [event(1)])  # may still use the cached hash...
        assert a.resolve_actor(t.id, old).erased_at is not None  # ...but never re-links it
        time.sleep(1.1)
        a.append(t.id, [event(1)])
        assert _last(a, t.id).actor_hash != old
        assert a.verify(t.id).ok


def test_concurrent_new_actor_agrees_on_one_secret(db_url, key_file, clock):
    """Two processes meeting a new actor at once write the same hash."""
    from concurrent.futures import ThreadPoolExecutor

    with (
        kimonaudit.open(db_url, key_file=key_file, clock=clock) as a,
        kimonaudit.open(db_url, key_file=key_file, clock=clock) as b,
    ):
        t = a.create_tenant("acme")
        ev = event(1, actor={"id": "fresh_9", "type": "agent"})
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda lg: lg.append(t.id, [dict(ev)]), [a, b, a, b]))
        hashes = {r.actor_hash for r in a.store.iter_entries(t.id) if r.action == ev["action"]}
        assert len(hashes) == 1


def test_a_batchs_new_actors_get_their_secrets_in_one_transaction(db_url, key_file, clock):
    """A batch meeting many new actors creates their secrets together (one
    transaction, not one per actor), keeps a secret another process made
    first, and every hash is the one a lone append would have written."""
    with (
        kimonaudit.open(db_url, key_file=key_file, clock=clock) as a,
        kimonaudit.open(db_url, key_file=key_file, clock=clock) as b,
    ):
        t = a.create_tenant("acme")
        b.append(t.id, [event(1, actor={"id": "agent_7", "type": "agent"})])  # b's secret first
        first = b.actor_hash(t.id, "agent_7")
        calls: list[int] = []
        store = a.store
        real = store.create_actor_secrets

        def counted(tenant_id, fresh, now):
            calls.append(len(fresh))
            return real(tenant_id, fresh, now)

        store.create_actor_secrets = counted  # type: ignore[method-assign]
        batch = [event(i, actor={"id": f"agent_{i % 40}", "type": "agent"}) for i in range(200)]
        a.append(t.id, batch)
        assert calls == [39]  # forty actors, one of them known already
        rows = [r for r in a.store.iter_entries(t.id)][1:]
        by_actor = {}
        for ev, row in zip(batch, rows, strict=True):
            by_actor.setdefault(ev["actor"]["id"], set()).add(row.actor_hash)
        assert all(len(h) == 1 for h in by_actor.values())
        assert by_actor["agent_7"] == {first}
        # The other process (its cache cold for these actors) agrees on every hash.
        for actor_id, (h,) in by_actor.items():
            assert b.actor_hash(t.id, actor_id) == h
        # One more new actor alone: its own secret, the same for both.
        a.append(t.id, [event(1, actor={"id": "solo", "type": "agent"})])
        assert calls[0] == 39 and sum(calls[1:]) <= 1
        assert _last(a, t.id).actor_hash == b.actor_hash(t.id, "solo")
        assert a.verify(t.id).ok


def _at_once(fn, *args) -> list[BaseException]:
    """fn(arg) for each arg, on threads released together; their errors."""
    import threading

    start = threading.Barrier(len(args))
    errors: list[BaseException] = []

    def run(arg) -> None:
        try:
            start.wait(10)
            fn(arg)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(arg,)) for arg in args]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    return errors


def test_overlapping_batches_of_new_actors_at_once_do_not_deadlock(db_url, key_file, clock):
    """Two transactions storing overlapping sets of new actors' secrets, met
    in opposite orders (two appending threads' first batches): on
    PostgreSQL each insert waits for the other's row, so unless both insert
    in one order, each ends up waiting for the other and one fails
    ("deadlock detected", seen in a two-thread benchmark's first batches).
    The same for the actor directory, which each thread updates after its
    commit."""
    from kimonaudit.core.records import ActorRow

    with kimonaudit.open(db_url, key_file=key_file, clock=clock) as a:
        t = a.create_tenant("acme")
        store = a.store
        for round_ in range(4):
            lookups = [f"r{round_}-{i:04d}" for i in range(1_500)]
            errors = _at_once(
                lambda order: store.create_actor_secrets(
                    t.id, {lk: (b"a" if order[0] < order[-1] else b"b") * 32 for lk in order}, 0
                ),
                lookups,
                lookups[::-1],
            )
            assert not errors, errors
            stored = store.actor_secrets(t.id, lookups)
            assert set(stored) == set(lookups)
            assert set(stored.values()) <= {b"a" * 32, b"b" * 32}
        rows = [ActorRow(f"{i:064x}", f"u{i}", "user", None, None) for i in range(1_500)]
        for _ in range(3):
            errors = _at_once(lambda batch: store.upsert_actors(t.id, batch), rows, rows[::-1])
            assert not errors, errors
        assert store.get_actor(t.id, rows[7].actor_hash) is not None


def test_new_actors_met_by_many_threads_at_once_share_a_transaction(db_url, key_file, clock):
    """Single events of new actors from many threads: while one secret's
    transaction runs, the others gather into the next (not one transaction
    each), and every hash is the one another process computes."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    with (
        kimonaudit.open(db_url, key_file=key_file, clock=clock) as a,
        kimonaudit.open(db_url, key_file=key_file, clock=clock) as b,
    ):
        t = a.create_tenant("acme")
        calls: list[int] = []
        store = a.store
        real = store.create_actor_secrets
        gate = threading.Event()

        def held(tenant_id, fresh, now):
            calls.append(len(fresh))
            gate.wait(10)  # the first transaction runs long; the rest gather behind it
            return real(tenant_id, fresh, now)

        store.create_actor_secrets = held  # type: ignore[method-assign]
        with ThreadPoolExecutor(24) as pool:
            done = [
                pool.submit(a.append, t.id, [event(1, actor={"id": f"p{i}", "type": "agent"})])
                for i in range(24)
            ]
            time.sleep(0.5)
            gate.set()
            receipts = [f.result()[0] for f in done]
        assert sum(calls) == 24 and len(calls) <= 3, calls
        for i, r in enumerate(receipts):
            assert a.get_entry(t.id, r.seq).actor_hash == b.actor_hash(t.id, f"p{i}")
        assert a.verify(t.id).ok


# -- redaction ---------------------------------------------------------------------
def test_redaction_keeps_reason_and_is_an_entry(log):
    """Redaction drops payload and salt, keeps the reason, logs itself, and verify
    counts the entry as redacted, not tampered."""
    t = log.create_tenant("acme")
    log.append(t.id, [event(i) for i in range(5)])
    cp = log.checkpoint(t.id)
    with pytest.raises(InvalidInput, match="reason"):
        log.redact(t.id, 2, "  ")
    assert log.redact(t.id, 2, "GDPR request 77", actor={"id": "dpo_1", "type": "user"})
    assert log.redact(t.id, 2, "again") is False
    row = log.get_entry(t.id, 2)
    assert row.payload is None and row.salt is None
    reason, _ = log.redaction(t.id, 2)
    assert reason == "GDPR request 77"
    entry = _last(log, t.id)
    assert entry.action == "audit_log.redacted" and entry.security
    assert _meta(entry)["reason"] == "GDPR request 77" and _meta(entry)["seq"] == 2
    report = log.verify(t.id)
    assert report.ok and report.redacted == 1 and report.tampered == 0
    p = log.prove_inclusion(t.id, 2, cp.size)
    assert p.root == cp.root
    with pytest.raises(NotFound):
        log.redact(t.id, 999, "no such entry")


def test_searching_an_unknown_or_erased_actor_is_recorded_without_a_hash(log):
    """A recorded query never creates a secret nor fails for an id the directory does not
    hold; after erasure the recorded query cannot name the person either."""
    from kimonaudit.search import record_access

    t = log.create_tenant("acme")
    log.append(t.id, [event(1)])
    who = {"id": "inv_1", "type": "user"}
    record_access(log, t.id, "audit_log.searched", who, "actor:nobody", 0, "cli")
    assert _meta(_last(log, t.id))["query"] == "actor_hash:unknown"
    h = log.actor_hash(t.id, "agent_2")
    record_access(log, t.id, "audit_log.searched", who, "actor:agent_2", 1, "cli")
    assert _meta(_last(log, t.id))["query"] == f"actor_hash:{h}"
    log.erase_actor(t.id, "agent_2")
    record_access(log, t.id, "audit_log.searched", who, "actor:agent_2", 0, "cli")
    assert _meta(_last(log, t.id))["query"] == "actor_hash:unknown"
    with pytest.raises(NotFound):
        log.actor_hash(t.id, "nobody")  # the record did not create a secret
