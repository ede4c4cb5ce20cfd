"""The AuditLog contract, run against every store (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from kimonaudit.core import merkle
from kimonaudit.core.ledger import leaf_of_row
from kimonaudit.core.note import open_checkpoint
from kimonaudit.errors import InvalidEvent, InvalidInput, NotFound
from tests.helpers import event, raw_db


def test_append_assigns_gap_free_seq_server_time_and_leaf_hashes(log, clock):
    """Receipts carry seq 0..n-1, the server clock's time and the leaf hash of the stored row."""
    t = log.create_tenant("acme", plan="business")
    r1 = log.append(t.id, [event(i) for i in range(5)])
    clock.advance(seconds=3)
    r2 = log.append(t.id, [event(i, occurred_at="2020-01-01T00:00:00Z") for i in range(5, 8)])
    assert [r.seq for r in r1 + r2] == list(range(8))
    assert r2[0].recorded_at - r1[0].recorded_at == 3_000_000
    for r in r1 + r2:
        row = log.get_entry(t.id, r.seq)
        assert row.event_id == r.id
        assert merkle.leaf_hash(leaf_of_row(row)) == r.leaf_hash == row.leaf_hash
    assert log.store.tree_state(t.id).size == 8


def test_recorded_at_never_goes_backwards(log, clock):
    """A clock that steps back does not reorder the log."""
    t = log.create_tenant("acme")
    first = log.append(t.id, [event(0)])[0]
    clock.advance(hours=-2)
    second = log.append(t.id, [event(1)])[0]
    assert second.recorded_at == first.recorded_at
    assert second.seq == first.seq + 1


def test_client_id_makes_retries_idempotent(log):
    """The same client id returns the original receipt and appends nothing."""
    t = log.create_tenant("acme")
    first = log.append(t.id, [event(0, id="req-1"), event(1)])
    again = log.append(t.id, [event(0, id="req-1"), event(2, id="req-2")])
    assert again[0] == first[0]
    assert again[1].seq == 2
    assert log.store.tree_state(t.id).size == 3
    with pytest.raises(InvalidEvent) as exc:  # the same id twice in one batch is a client bug
        log.append(t.id, [event(3, id="req-3"), event(4, id="req-3")])
    assert exc.value.field == "events[1].id"
    assert log.store.tree_state(t.id).size == 3


def test_one_invalid_event_rejects_the_whole_batch(log):
    """A batch is atomic: the error names the bad field and nothing is appended."""
    t = log.create_tenant("acme")
    log.append(t.id, [event(0)])
    with pytest.raises(InvalidEvent) as exc:
        log.append(t.id, [event(1), {"action": "Not An Action"}, event(2)])
    assert exc.value.field == "events[1].action"
    assert log.store.tree_state(t.id).size == 1
    assert log.verify(t.id).ok


def test_tenants_are_isolated(log):
    """Entries, proofs and checkpoints of one tenant are invisible to another."""
    a = log.create_tenant("a")
    b = log.create_tenant("b")
    ra = log.append(a.id, [event(0, id="shared-id")])
    rb = log.append(b.id, [event(1, id="shared-id")])
    assert ra[0].seq == rb[0].seq == 0 and ra[0].leaf_hash != rb[0].leaf_hash
    log.append(a.id, [event(2)])
    with pytest.raises(NotFound):
        log.get_entry(b.id, 1)
    assert log.get_entry_by_id(b.id, "shared-id").action == "ticket.field_changed"
    assert log.checkpoint(a.id).size == 2 and log.checkpoint(b.id).size == 1
    # The same actor id has unrelated pseudonyms in the two tenants.
    assert log.get_entry(a.id, 0).actor_hash != log.get_entry(b.id, 0).actor_hash or (
        event(0)["actor"]["id"] != event(1)["actor"]["id"]
    )
    log.append(b.id, [event(0)])  # agent_1 in both tenants now
    assert log.actor_hash(a.id, "agent_1") != log.actor_hash(b.id, "agent_1")


def test_actor_name_and_email_never_reach_the_log(log, db_url):
    """Only the keyed hash is stored with entries; name and email live in the directory."""
    t = log.create_tenant("acme")
    ev = event(0)
    ev["actor"] = {"id": "agent_9", "type": "agent", "name": "Zoë Quux", "email": "zoe@acme.test"}
    r = log.append(t.id, [ev])[0]
    row = log.get_entry(t.id, r.seq)
    assert row.actor_hash == log.actor_hash(t.id, "agent_9")
    with raw_db(db_url) as run:
        for rec in run("SELECT * FROM entries"):
            text = repr(rec)
            assert "zoe@acme.test" not in text and "Zoë" not in text and "agent_9" not in text
    who = log.resolve_actor(t.id, row.actor_hash)
    assert (who.actor_id, who.name, who.email) == ("agent_9", "Zoë Quux", "zoe@acme.test")


def test_erasing_an_actor_keeps_the_log_verifiable(log):
    """erase_actor removes the directory data; entries and proofs are untouched."""
    t = log.create_tenant("acme")
    log.append(t.id, [event(i) for i in range(6)])
    cp = log.checkpoint(t.id)
    h = log.actor_hash(t.id, "agent_2")
    assert log.erase_actor(t.id, "agent_2") is True
    who = log.resolve_actor(t.id, h)
    assert who.erased_at is not None and who.name is None and who.email is None
    assert who.actor_id is None
    assert log.verify(t.id).ok
    # The erasure is itself an entry (actor.erased), appended after the rest.
    after = log.checkpoint(t.id)
    assert after.size == cp.size + 1
    log.prove_consistency(t.id, cp.size, after.size)
    assert log.get_entry(t.id, cp.size).action == "actor.erased"


def test_checkpoint_is_a_signed_note_for_the_current_tree(log):
    """The checkpoint opens with the deployment's verifier key and commits to the tree."""
    t = log.create_tenant("acme")
    assert log.checkpoint(t.id).size == 0
    receipts = log.append(t.id, [event(i) for i in range(9)])
    cp = log.checkpoint(t.id)
    parsed, _ = open_checkpoint(cp.note, log.keys.verifiers)
    assert parsed.origin == f"{log.keys.name}/tenants/{t.id}"
    assert parsed.size == 9
    assert parsed.root_hash == merkle.root_of([r.leaf_hash for r in receipts])
    assert log.checkpoint(t.id).note == cp.note  # nothing new: the same checkpoint
    assert [c.size for c in log.list_checkpoints(t.id)] == [0, 9]


def test_inclusion_proofs_verify_for_every_entry(log):
    """Every entry's proof verifies against the checkpoint it names, at many tree sizes."""
    t = log.create_tenant("acme")
    for batch in (1, 2, 5, 17, 40):
        log.append(t.id, [event(i) for i in range(batch)])
        cp = log.checkpoint(t.id)
        for seq in range(cp.size):
            p = log.prove_inclusion(t.id, seq)
            assert p.tree_size == cp.size and p.root == cp.root
            merkle.verify_inclusion(p.leaf_hash, seq, p.tree_size, p.proof, p.root)
            assert merkle.leaf_hash(p.leaf) == p.leaf_hash
    # against an older checkpoint too
    p = log.prove_inclusion(t.id, 2, size=8)
    merkle.verify_inclusion(p.leaf_hash, 2, 8, p.proof, p.root)


def test_consistency_proofs_link_every_pair_of_sizes(log):
    """Consistency proofs between stored sizes verify, including from the empty tree."""
    t = log.create_tenant("acme")
    log.append(t.id, [event(i) for i in range(70)])
    roots = {n: merkle.root_of(log.store.leaf_hashes(t.id, 0, n)) for n in range(71)}
    for old in (0, 1, 3, 16, 17, 33, 64, 70):
        for new in (old, 17, 64, 69, 70):
            if new < old:
                continue
            p = log.prove_consistency(t.id, old, new)
            assert p.old_root == roots[old] and p.new_root == roots[new]
            merkle.verify_consistency(old, new, p.old_root, p.new_root, p.proof)
    with pytest.raises(InvalidInput):
        log.prove_consistency(t.id, 5, 71)


def test_redaction_removes_the_payload_and_keeps_proofs(log):
    """A redacted entry loses payload and salt; verify and its proof still pass."""
    t = log.create_tenant("acme")
    log.append(t.id, [event(i) for i in range(4)])
    cp = log.checkpoint(t.id)
    assert log.redact(t.id, 1, "a court order")
    row = log.get_entry(t.id, 1)
    assert row.payload is None and row.salt is None and row.ip is None
    report = log.verify(t.id)
    # present: the 3 others and the audit_log.redacted entry recording it
    assert report.ok and report.redacted == 1 and report.present == 4
    p = log.prove_inclusion(t.id, 1, cp.size)
    merkle.verify_inclusion(p.leaf_hash, 1, cp.size, p.proof, cp.root)


def test_unknown_tenant_is_not_found(log):
    """Operations on a tenant that does not exist raise NotFound."""
    with pytest.raises(NotFound):
        log.append("t_nope", [event(0)])
    with pytest.raises(NotFound):
        log.verify("t_nope")


def test_log_survives_reopen(db_url, key_file, clock):
    """A reopened log continues the same tree and verifies."""
    import kimonaudit

    with kimonaudit.open(db_url, key_file=key_file, clock=clock) as lg:
        t = lg.create_tenant("acme")
        lg.append(t.id, [event(i) for i in range(10)])
        cp = lg.checkpoint(t.id)
    clock.advance(days=40)
    with kimonaudit.open(db_url, key_file=key_file, clock=clock) as lg:
        r = lg.append(t.id, [event(i) for i in range(10, 15)])
        assert r[0].seq == 10
        assert lg.verify(t.id, against=cp.note).ok
        assert lg.prove_consistency(t.id, 10, 15).old_root == cp.root
        assert lg.get_entry(t.id, 14).recorded_at - lg.get_entry(t.id, 0).recorded_at == int(
            timedelta(days=40).total_seconds() * 1e6
        )


def test_concurrent_appends_share_commits(log):
    """Appends from many threads are merged into fewer commits, stay gap-free and verify."""
    import threading

    t = log.create_tenant("acme")
    writer = log.store._writer
    groups0, requests0 = writer.groups, writer.requests
    receipts: list = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        for i in range(15):
            r = log.append(t.id, [event(k * 100 + i)])
            with lock:
                receipts.extend(r)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(r.seq for r in receipts) == list(range(120))
    assert writer.requests - requests0 == 120
    assert writer.groups - groups0 < 120  # some requests shared a commit
    assert log.verify(t.id).ok


def test_one_group_with_retries_a_conflict_and_two_tenants(log):
    """Requests queued behind a busy writer commit as one group, written
    together: a repeated client id inside the group gets the original
    receipt, a conflicting one fails alone, both tenants' trees verify."""
    import threading

    from kimonaudit.core.decode import convert_batch
    from kimonaudit.errors import Conflict

    a, b = log.create_tenant("acme"), log.create_tenant("beta")
    writer = log.store._writer
    started, release = threading.Event(), threading.Event()

    def hold(_session: object) -> None:
        started.set()
        release.wait(10)

    # No transaction: the writer is busy but holds no lock (new actors'
    # secrets are stored meanwhile, on another connection).
    blocker = threading.Thread(target=writer.run, args=(hold,), kwargs={"transaction": False})
    blocker.start()
    assert started.wait(10)
    groups0 = writer.groups
    submit = [
        (a.id, [event(1, id="x-1"), event(2)]),
        (b.id, [event(3)]),
        (a.id, [event(1, id="x-1")]),  # a retry of the first request's event
        (a.id, [event(9, id="x-1")]),  # the same id, other content: 409
        (a.id, [event(4, id="x-2"), event(5)]),
        (b.id, [event(6, id="y-1")]),
    ]
    futures = [log.submit_validated(tid, convert_batch(evs)) for tid, evs in submit]
    release.set()
    blocker.join()
    first, other, retry, _, last, other2 = (f.result(timeout=10) if i != 3 else None
                                            for i, f in enumerate(futures))  # fmt: skip
    with pytest.raises(Conflict):
        futures[3].result(timeout=10)
    assert writer.groups - groups0 == 1  # one commit for all six
    assert retry == first[:1]  # the original receipt, not a new entry
    assert [r.seq for r in first] == [0, 1] and [r.seq for r in last] == [2, 3]
    assert [r.seq for r in other] == [0] and [r.seq for r in other2] == [1]
    for tid, size in ((a.id, 4), (b.id, 2)):
        assert log.store.tree_state(tid).size == size
        assert log.verify(tid).ok
