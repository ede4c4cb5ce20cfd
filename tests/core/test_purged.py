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
    expand,
    prefix_nodes,
    prefix_range,
    resolve,
    roots_before,
    straddles,
    unreachable,
)
from kimonaudit.errors import InvalidProof


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
