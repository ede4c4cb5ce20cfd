"""The Merkle math of a purged prefix: with only the compact range of
[0, P) kept, every proof a retained leaf or a later checkpoint needs is
still served (and equals the proof from the full tree); checkpoints from
before the purge are checked through the kept proof chain."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kimonaudit.core.merkle import (
    CompactRange,
    consistency_ranges,
    inclusion_ranges,
    perfect_nodes,
    range_root,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from kimonaudit.core.purged import (
    PrefixProof,
    checkpoint_nodes,
    expand,
    kept_nodes,
    prefix_nodes,
    prefix_range,
    proof_within,
    resolve,
    roots_before,
    straddles,
    unreachable,
    within,
)
from kimonaudit.errors import InvalidProof
from tests.core.test_merkle import NaiveTree  # the word-for-word RFC 6962 reference


def leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(b"\x00" + i.to_bytes(4, "big")).digest() for i in range(n)]


def full_node(lh: list[bytes], level: int, index: int) -> bytes:
    return root_of(lh[index << level : (index + 1) << level])


def served(lh: list[bytes], purged: int, ranges: list[tuple[int, int]]) -> list[bytes]:
    """Subtree hashes as a purged store serves them: compact-range nodes of the prefix
    and nodes after it only; a straddling node is resolved from its children."""
    kept = {k: full_node(lh, *k) for k in prefix_nodes(purged)}
    out = []
    for s, e in ranges:

        def node(level: int, index: int) -> bytes:
            keys = expand((level, index), purged)
            assert not unreachable(keys, purged), (level, index, purged)
            got = {}
            for k in keys:
                start = k[1] << k[0]
                got[k] = kept[k] if start < purged else full_node(lh, *k)
            return resolve((level, index), purged, got)

        out.append(range_root(s, e, node))
    return out


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_inclusion_of_retained_leaves_after_a_purge(data):
    """Every retained leaf's inclusion proof in every later tree is served from the
    compact range plus retained nodes, equal to the full tree's, and verifies."""
    n = data.draw(st.integers(1, 300))
    purged = data.draw(st.integers(0, n - 1))
    size = data.draw(st.integers(purged + 1, n))
    index = data.draw(st.integers(purged, size - 1))
    lh = leaves(n)
    ranges = inclusion_ranges(index, size)
    proof = served(lh, purged, ranges)
    assert proof == [root_of(lh[s:e]) for s, e in ranges]
    verify_inclusion(lh[index], index, size, proof, root_of(lh[:size]))


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_consistency_from_sizes_at_or_after_the_purge(data):
    """Consistency from any size >= P to any later size is served after the purge."""
    n = data.draw(st.integers(1, 300))
    purged = data.draw(st.integers(0, n))
    old = data.draw(st.integers(max(purged, 1), n)) if n >= max(purged, 1) else n
    new = data.draw(st.integers(old, n))
    lh = leaves(n)
    ranges = consistency_ranges(old, new)
    proof = served(lh, purged, ranges)
    assert proof == [root_of(lh[s:e]) for s, e in ranges]
    old_root, new_root = served(lh, purged, [(0, old), (0, new)])
    assert (old_root, new_root) == (root_of(lh[:old]), root_of(lh[:new]))
    verify_consistency(old, new, old_root, new_root, proof)


def test_compact_range_is_log_sized_and_rebuilds_the_prefix_root():
    """The kept prefix is one hash per set bit of P and gives the prefix's root."""
    lh = leaves(1000)
    for purged in (0, 1, 2, 5, 512, 777, 1000):
        keys = prefix_nodes(purged)
        assert len(keys) == purged.bit_count()
        kept = {k: full_node(lh, *k) for k in keys}
        cr = prefix_range(purged, kept)
        assert cr.root() == root_of(lh[:purged])
        # Appending the retained leaves rebuilds the whole tree.
        for h in lh[purged:]:
            cr.append(h)
        assert cr.root() == root_of(lh)


def test_straddling_nodes():
    """A node straddles the cut exactly when the cut falls strictly inside it."""
    assert straddles((2, 1), 5) and not straddles((2, 1), 4) and not straddles((2, 1), 8)
    assert expand((1, 2), 5) == [(0, 4), (0, 5)]
    assert expand((3, 0), 8) == [(3, 0)]
    assert perfect_nodes(0, 5) == prefix_nodes(5) == [(2, 0), (0, 4)]


def chain(lh: list[bytes], pairs: list[tuple[int, int]]) -> list[PrefixProof]:
    from kimonaudit.core.merkle import consistency_ranges as cr

    return [
        PrefixProof(m, p, root_of(lh[:m]), tuple(root_of(lh[s:e]) for s, e in cr(m, p)))
        for m, p in pairs
    ]


def test_old_checkpoints_prove_through_the_kept_chain():
    """Checkpoints before two purges are proven back from the newest compact range;
    altering a kept root or proof hash, or dropping the link, is caught."""
    lh = leaves(600)
    p1, p2 = 200, 450
    # Checkpoints at 3, 64, 199 (before purge 1) and 201, 300 (before purge 2).
    proofs = chain(lh, [(3, p1), (64, p1), (199, p1), (p1, p2), (201, p2), (300, p2), (p2, p2)])
    proofs = [p for p in proofs if p.old_size != p.new_size]
    prefix = CompactRange(p2, [full_node(lh, *k) for k in prefix_nodes(p2)])
    roots = roots_before(prefix, proofs)
    for size in (3, 64, 199, p1, 201, 300, p2):
        assert roots[size] == root_of(lh[:size])
    bad_root = [replace(p, old_root=lh[0]) if p.old_size == 64 else p for p in proofs]
    with pytest.raises(InvalidProof):
        roots_before(prefix, bad_root)
    flipped = [
        replace(p, proof=(hashlib.sha256(p.proof[0]).digest(), *p.proof[1:]))
        if p.old_size == 3
        else p
        for p in proofs
    ]
    with pytest.raises(InvalidProof):
        roots_before(prefix, flipped)
    without_link = [p for p in proofs if p.old_size != p1]
    with pytest.raises(InvalidProof, match="accounts for"):
        roots_before(prefix, without_link)
    tampered_prefix = CompactRange(p2, [lh[1], *prefix.hashes[1:]])
    with pytest.raises(InvalidProof):
        roots_before(tampered_prefix, proofs)


def served_from(
    lh: list[bytes], purged: int, kept: dict[tuple[int, int], bytes], ranges: list[tuple[int, int]]
) -> list[bytes]:
    """Subtree hashes as a purged store serves them from `kept` (nodes inside the
    prefix, read as stored) and the full tree after it; straddlers resolved."""
    out = []
    for s, e in ranges:

        def node(level: int, index: int) -> bytes:
            got = {}
            for k in expand((level, index), purged):
                if (k[1] + 1) << k[0] <= purged:
                    assert k in kept, (k, purged)  # the purge kept everything a proof reads
                    got[k] = kept[k]
                else:
                    assert k[1] << k[0] >= purged
                    got[k] = full_node(lh, *k)
            return resolve((level, index), purged, got)

        out.append(range_root(s, e, node))
    return out


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_consistency_from_checkpoints_before_the_purge(data):
    """For random N, P <= N and a checkpoint M < P, the proof M -> N built from only
    the nodes the purge keeps (plus what follows P) equals the full tree's, equals the
    naive RFC 6962 reference's and verifies; so does M -> M2 for a kept M2 < P."""
    n = data.draw(st.integers(2, 300))
    purged = data.draw(st.integers(2, n))
    old = data.draw(st.integers(1, purged - 1))
    new = data.draw(st.integers(purged, n))
    other = data.draw(st.integers(old, purged - 1))
    lh = leaves(n)
    keys = kept_nodes(purged, [old, other])
    assert all((i + 1) << lvl <= purged for lvl, i in keys)
    kept = {k: full_node(lh, *k) for k in keys}
    for target in (new, other):
        ranges = consistency_ranges(old, target)
        proof = served_from(lh, purged, kept, ranges)
        assert proof == [root_of(lh[s:e]) for s, e in ranges]
        assert proof == NaiveTree(lh).consistency_proof(old, target)
        old_root, new_root = served_from(lh, purged, kept, [(0, old), (0, target)])
        assert (old_root, new_root) == (root_of(lh[:old]), root_of(lh[:target]))
        verify_consistency(old, target, old_root, new_root, proof)
    # verify's check: the proof to P from kept hashes alone.
    old_root, p_root, proof = proof_within(old, purged, kept)
    verify_consistency(old, purged, root_of(lh[:old]), root_of(lh[:purged]), proof)
    assert (old_root, p_root) == (root_of(lh[:old]), root_of(lh[:purged]))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_later_purges_keep_what_earlier_checkpoints_need(data):
    """Purges at P1 < P2 < P3, each computing what it keeps from what the last one
    kept plus the leaves still there: every checkpoint ever signed still gets its
    proof to the newest tree, equal to the full tree's."""
    n = data.draw(st.integers(4, 300))
    cuts = sorted(data.draw(st.lists(st.integers(1, n), min_size=1, max_size=3, unique=True)))
    sizes = data.draw(st.lists(st.integers(1, n), min_size=1, max_size=6, unique=True))
    lh = leaves(n)
    kept: dict[tuple[int, int], bytes] = {}
    prev = 0
    for cut in cuts:
        below = [s for s in sizes if s < cut]
        # What this purge keeps inside the last prefix, the last purge kept already.
        assert {k for k in kept_nodes(cut, below) if within(k, prev)} <= set(kept)
        nxt = {k: kept[k] for k in kept_nodes(cut, below) if within(k, prev)}
        for k in kept_nodes(cut, below, since=prev):
            assert not within(k, prev)
            # Computed as the purge does: from what the last purge kept (inside
            # [0, prev)) and the nodes after prev.
            (h,) = served_from(lh, prev, kept, [(k[1] << k[0], (k[1] + 1) << k[0])])
            nxt[k] = h
        kept, prev = nxt, cut
    for old in sizes:
        if old >= prev:
            continue
        ranges = consistency_ranges(old, n)
        assert served_from(lh, prev, kept, ranges) == [root_of(lh[s:e]) for s, e in ranges]
        assert served_from(lh, prev, kept, [(0, old)]) == [root_of(lh[:old])]


def test_checkpoint_nodes_are_log_sized():
    """At most two hashes per level: the compact range and the right siblings."""
    for purged in (2, 3, 100, 1000, 4096, 10**6 + 7):
        for size in {1, 2, purged // 3, purged // 2 + 1, purged - 1}:
            keys = checkpoint_nodes(size, purged)
            assert len(keys) <= 2 * purged.bit_length()
            assert len(set(keys)) == len(keys)
    assert checkpoint_nodes(5, 8) == [(2, 0), (0, 4), (0, 5), (1, 3)]
    assert checkpoint_nodes(0, 8) == checkpoint_nodes(8, 8) == []
