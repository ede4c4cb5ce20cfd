"""RFC 6962/9162 Merkle tree: public vectors, a naive reference, properties.

The reference below follows RFC 6962 section 2.1's recursive definitions
(MTH, PATH, PROOF/SUBPROOF) literally, with its own hashing, so the module
under test is checked against the text of the RFC rather than against itself.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kimonaudit.core.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    LEAF_PREFIX,
    NODE_PREFIX,
    STORED_LEVEL_STRIDE,
    CompactRange,
    base_hashes_for,
    consistency_ranges,
    fold_perfect,
    inclusion_ranges,
    is_stored_level,
    leaf_hash,
    node_hash,
    perfect_nodes,
    range_root,
    root_from_inclusion_proof,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from kimonaudit.errors import InvalidProof

VECTORS = (
    Path(__file__).resolve().parent.parent / "vectors" / "transparency-dev-merkle" / "testdata"
)

# --- the naive reference (RFC 6962 section 2.1, word for word) ---------------------


def ref_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def ref_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def largest_power_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class NaiveTree:
    """A tree over fixed leaves; MTH(D[start:end]) memoised by range."""

    def __init__(self, leaves: list[bytes]) -> None:
        self.leaves = leaves
        # Every perfect node, level by level: levels[l][i] covers i*2**l.. .
        self.levels = [leaves]
        while len(self.levels[-1]) > 1:
            below = self.levels[-1]
            self.levels.append(
                [ref_node(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)]
            )

    def node(self, level: int, index: int) -> bytes:
        return self.levels[level][index]

    @functools.cache  # noqa: B019 - a handful of module-level trees live for the session
    def mth(self, start: int, end: int) -> bytes:
        n = end - start
        if n == 0:
            return hashlib.sha256(b"").digest()
        if n == 1:
            return self.leaves[start]
        k = largest_power_below(n)
        return ref_node(self.mth(start, start + k), self.mth(start + k, end))

    def path(self, m: int, start: int, end: int) -> list[bytes]:
        """PATH(m, D[start:end]), m relative to start."""
        n = end - start
        if n == 1:
            return []
        k = largest_power_below(n)
        if m < k:
            return [*self.path(m, start, start + k), self.mth(start + k, end)]
        return [*self.path(m - k, start + k, end), self.mth(start, start + k)]

    def subproof(self, m: int, start: int, end: int, whole: bool) -> list[bytes]:
        """SUBPROOF(m, D[start:end], b), m relative to start."""
        n = end - start
        if m == n:
            return [] if whole else [self.mth(start, end)]
        k = largest_power_below(n)
        if m <= k:
            return [*self.subproof(m, start, start + k, whole), self.mth(start + k, end)]
        return [*self.subproof(m - k, start + k, end, False), self.mth(start, start + k)]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self.path(index, 0, size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        if old_size in (0, new_size):
            return []
        return self.subproof(old_size, 0, new_size, True)


MAX_LEAVES = 300
TREE = NaiveTree([ref_leaf(b"leaf %d" % i) for i in range(MAX_LEAVES)])

# The 8 standard leaves and the RFC 6962 roots of their prefixes
# (transparency-dev/merkle testonly/constants.go).
STANDARD_LEAVES = [
    bytes.fromhex(h)
    for h in (
        *("", "00", "10", "2021", "3031", "40414243"),
        *("5051525354555657", "606162636465666768696a6b6c6d6e6f"),
    )
]
STANDARD_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
STANDARD = NaiveTree([ref_leaf(data) for data in STANDARD_LEAVES])


def built_inclusion(index: int, size: int) -> list[bytes]:
    return [range_root(s, e, TREE.node) for s, e in inclusion_ranges(index, size)]


def built_consistency(old_size: int, new_size: int) -> list[bytes]:
    return [range_root(s, e, TREE.node) for s, e in consistency_ranges(old_size, new_size)]


def flip(digest: bytes, bit: int) -> bytes:
    mutated = bytearray(digest)
    mutated[bit // 8] ^= 1 << (bit % 8)
    return bytes(mutated)


# --- constants and primitives --------------------------------------------------


def test_constants() -> None:
    """The prefixes, hash size and empty root are RFC 6962's."""
    assert (LEAF_PREFIX, NODE_PREFIX, HASH_SIZE) == (b"\x00", b"\x01", 32)
    assert EMPTY_ROOT.hex() == STANDARD_ROOTS[0]
    assert STORED_LEVEL_STRIDE == 4


def test_leaf_and_node_hash_use_the_prefixes() -> None:
    """leaf_hash prefixes 0x00 and node_hash 0x01 before SHA-256."""
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    assert (
        node_hash(b"L" * 32, b"R" * 32) == hashlib.sha256(b"\x01" + b"L" * 32 + b"R" * 32).digest()
    )


@pytest.mark.parametrize("n", range(9))
def test_standard_roots_via_root_of(n: int) -> None:
    """root_of gives the published root of the first n standard leaves."""
    hashes = [leaf_hash(data) for data in STANDARD_LEAVES[:n]]
    assert root_of(hashes).hex() == STANDARD_ROOTS[n]


@pytest.mark.parametrize("n", range(9))
def test_standard_roots_via_compact_range(n: int) -> None:
    """Appending the first n standard leaves gives the published root."""
    frontier = CompactRange()
    for data in STANDARD_LEAVES[:n]:
        frontier.append(leaf_hash(data))
    assert frontier.size == n
    assert frontier.root().hex() == STANDARD_ROOTS[n]


def test_root_of_matches_recursive_mth_for_every_size() -> None:
    """Level-by-level pairing builds the RFC 6962 tree for every size up to 300."""
    for n in range(MAX_LEAVES + 1):
        assert root_of(TREE.leaves[:n]) == TREE.mth(0, n), n


def test_root_of_rejects_short_hashes() -> None:
    """A leaf hash that is not 32 bytes is refused, not hashed."""
    with pytest.raises(ValueError, match="32 bytes"):
        root_of([b"short"])


def test_fold_perfect() -> None:
    """fold_perfect roots a perfect subtree and refuses non-powers of two."""
    for level in range(6):
        count = 1 << level
        assert fold_perfect(TREE.leaves[:count]) == TREE.mth(0, count)
    for bad in (0, 3, 6):
        with pytest.raises(ValueError, match="power of two"):
            fold_perfect(TREE.leaves[:bad])


def test_is_stored_level() -> None:
    """Stored levels are 4, 8, 12, ...; leaves (level 0) are not among them."""
    assert [level for level in range(17) if is_stored_level(level)] == [4, 8, 12, 16]


# --- public vectors ----------------------------------------------------------------


def b64(value: str) -> bytes:
    return base64.b64decode(value)


def probes(kind: str) -> list[Path]:
    return sorted((VECTORS / kind).rglob("*.json"))


def probe_id(path: Path) -> str:
    return str(path.relative_to(VECTORS))


def test_vector_files_are_present() -> None:
    """The copied transparency-dev probes are all there (no vacuous pass)."""
    assert len(probes("inclusion")) == 98
    assert len(probes("consistency")) == 98


@pytest.mark.parametrize("path", probes("inclusion"), ids=probe_id)
def test_inclusion_vectors(path: Path) -> None:
    """Each transparency-dev inclusion probe verifies or fails as it says."""
    probe: dict[str, Any] = json.loads(path.read_text())
    args = (
        b64(probe["leafHash"]),
        probe["leafIdx"],
        probe["treeSize"],
        [b64(p) for p in probe["proof"] or []],
        b64(probe["root"]),
    )
    if probe["wantErr"]:
        with pytest.raises(InvalidProof):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", probes("consistency"), ids=probe_id)
def test_consistency_vectors(path: Path) -> None:
    """Each transparency-dev consistency probe verifies or fails as it says."""
    probe: dict[str, Any] = json.loads(path.read_text())
    args = (
        probe["size1"],
        probe["size2"],
        b64(probe["root1"]),
        b64(probe["root2"]),
        [b64(p) for p in probe["proof"] or []],
    )
    if probe["wantErr"]:
        with pytest.raises(InvalidProof):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_leaf_2_of_3_needs_step_4_b_ii() -> None:
    """Leaf 2 of a 3-leaf tree verifies with the one-hash proof [root of 2]."""
    proof = [bytes.fromhex(STANDARD_ROOTS[2])]
    leaf = leaf_hash(STANDARD_LEAVES[2])
    root = bytes.fromhex(STANDARD_ROOTS[3])
    verify_inclusion(leaf, 2, 3, proof, root)
    assert STANDARD.inclusion_proof(2, 3) == proof


def test_standard_tree_proofs_equal_the_reference() -> None:
    """Every inclusion and consistency proof over the 8 standard leaves is RFC 6962's."""
    node = STANDARD.node
    for size in range(1, 9):
        root = bytes.fromhex(STANDARD_ROOTS[size])
        for index in range(size):
            proof = [range_root(s, e, node) for s, e in inclusion_ranges(index, size)]
            assert proof == STANDARD.inclusion_proof(index, size)
            verify_inclusion(STANDARD.leaves[index], index, size, proof, root)
        for old in range(size + 1):
            proof = [range_root(s, e, node) for s, e in consistency_ranges(old, size)]
            assert proof == STANDARD.consistency_proof(old, size)
            old_root = bytes.fromhex(STANDARD_ROOTS[old])
            verify_consistency(old, size, old_root, root, proof)


# --- second preimages ----------------------------------------------------------


def test_interior_node_presented_as_a_leaf_does_not_verify() -> None:
    """The 0x00/0x01 prefixes stop an interior node passing for a leaf.

    Without prefixes, the two-leaf tree whose leaves are the byte strings
    (h0 || h1) and (h2 || h3) has the same root as the four-leaf tree: a
    second preimage. With them, hashing (h0 || h1) as a leaf gives a value
    that is not node (h0, h1), so neither the root nor a proof matches.
    """
    data = [b"alpha", b"beta", b"gamma", b"delta"]

    plain = [hashlib.sha256(d).digest() for d in data]
    plain_root = hashlib.sha256(
        hashlib.sha256(plain[0] + plain[1]).digest() + hashlib.sha256(plain[2] + plain[3]).digest()
    ).digest()
    forged = [plain[0] + plain[1], plain[2] + plain[3]]
    forged_root = hashlib.sha256(
        hashlib.sha256(forged[0]).digest() + hashlib.sha256(forged[1]).digest()
    ).digest()
    assert forged_root == plain_root  # the attack, on an unprefixed tree

    hashes = [leaf_hash(d) for d in data]
    root = root_of(hashes)
    interior = [node_hash(hashes[0], hashes[1]), node_hash(hashes[2], hashes[3])]
    assert root == node_hash(*interior)
    assert root_of([leaf_hash(hashes[0] + hashes[1]), leaf_hash(hashes[2] + hashes[3])]) != root
    with pytest.raises(InvalidProof):
        verify_inclusion(leaf_hash(hashes[0] + hashes[1]), 0, 2, [interior[1]], root)
    with pytest.raises(InvalidProof):
        verify_inclusion(leaf_hash(hashes[0] + hashes[1]), 0, 4, [interior[1]], root)


# --- proofs against the reference, and their mutations -----------------------------

SIZES = st.integers(min_value=1, max_value=MAX_LEAVES)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_inclusion_proofs_match_reference_and_resist_mutation(data: st.DataObject) -> None:
    """Built inclusion proofs equal RFC 6962 PATH, verify, and break when altered."""
    size = data.draw(SIZES, "size")
    index = data.draw(st.integers(0, size - 1), "index")
    ranges = inclusion_ranges(index, size)
    assert [range_root(s, e, TREE.node) for s, e in ranges] == [TREE.mth(s, e) for s, e in ranges]
    proof = built_inclusion(index, size)
    assert proof == TREE.inclusion_proof(index, size)
    leaf, root = TREE.leaves[index], TREE.mth(0, size)
    verify_inclusion(leaf, index, size, proof, root)
    assert root_from_inclusion_proof(leaf, index, size, proof) == root

    def rejects(*args: Any) -> None:
        with pytest.raises(InvalidProof):
            verify_inclusion(*args)

    for position in range(len(proof)):
        bit = data.draw(st.integers(0, 255), f"bit in proof[{position}]")
        mutated = list(proof)
        mutated[position] = flip(proof[position], bit)
        rejects(leaf, index, size, mutated, root)
        rejects(leaf, index, size, proof[:position] + proof[position + 1 :], root)
    rejects(flip(leaf, data.draw(st.integers(0, 255), "leaf bit")), index, size, proof, root)
    rejects(leaf, index, size, proof, flip(root, data.draw(st.integers(0, 255), "root bit")))
    extra = TREE.leaves[(index + 1) % MAX_LEAVES]
    rejects(leaf, index, size, [*proof, extra], root)
    rejects(leaf, index, size, [extra, *proof], root)
    rejects(leaf, index, size, [*proof, root], root)
    for other in range(size):
        if other != index:
            rejects(leaf, other, size, proof, root)
    rejects(leaf, size, size, proof, root)
    # Another size, with that tree's own root: what a wrong checkpoint looks like.
    for other_size in range(index + 1, min(MAX_LEAVES, size + 40) + 1):
        if other_size != size:
            rejects(leaf, index, other_size, proof, TREE.mth(0, other_size))


def test_every_single_bit_flip_breaks_an_inclusion_proof() -> None:
    """Flipping any one bit of any proof hash, the leaf or the root is caught."""
    index, size = 137, 300
    proof, leaf, root = built_inclusion(index, size), TREE.leaves[index], TREE.mth(0, size)
    verify_inclusion(leaf, index, size, proof, root)
    for position in range(len(proof)):
        for bit in range(256):
            mutated = list(proof)
            mutated[position] = flip(proof[position], bit)
            with pytest.raises(InvalidProof):
                verify_inclusion(leaf, index, size, mutated, root)
    for bit in range(256):
        with pytest.raises(InvalidProof):
            verify_inclusion(flip(leaf, bit), index, size, proof, root)
        with pytest.raises(InvalidProof):
            verify_inclusion(leaf, index, size, proof, flip(root, bit))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_consistency_proofs_match_reference_and_resist_mutation(data: st.DataObject) -> None:
    """Built consistency proofs equal RFC 6962 PROOF, verify, and break when altered."""
    new_size = data.draw(SIZES, "new_size")
    old_size = data.draw(st.integers(1, new_size), "old_size")
    ranges = consistency_ranges(old_size, new_size)
    assert [range_root(s, e, TREE.node) for s, e in ranges] == [TREE.mth(s, e) for s, e in ranges]
    proof = built_consistency(old_size, new_size)
    assert proof == TREE.consistency_proof(old_size, new_size)
    old_root, new_root = TREE.mth(0, old_size), TREE.mth(0, new_size)
    verify_consistency(old_size, new_size, old_root, new_root, proof)

    def rejects(*args: Any) -> None:
        with pytest.raises(InvalidProof):
            verify_consistency(*args)

    for position in range(len(proof)):
        bit = data.draw(st.integers(0, 255), f"bit in proof[{position}]")
        mutated = list(proof)
        mutated[position] = flip(proof[position], bit)
        rejects(old_size, new_size, old_root, new_root, mutated)
        rejects(old_size, new_size, old_root, new_root, proof[:position] + proof[position + 1 :])
    rejects(old_size, new_size, flip(old_root, data.draw(st.integers(0, 255))), new_root, proof)
    rejects(old_size, new_size, old_root, flip(new_root, data.draw(st.integers(0, 255))), proof)
    extra = TREE.leaves[0]
    rejects(old_size, new_size, old_root, new_root, [*proof, extra])
    rejects(old_size, new_size, old_root, new_root, [extra, *proof])
    if old_size != new_size:
        rejects(old_size, new_size, new_root, old_root, proof)
    for other in range(1, new_size + 1):
        if other != old_size and TREE.consistency_proof(other, new_size) != proof:
            rejects(other, new_size, TREE.mth(0, other), new_root, proof)
    for other in range(old_size, min(MAX_LEAVES, new_size + 40) + 1):
        if other != new_size and TREE.consistency_proof(old_size, other) != proof:
            rejects(old_size, other, old_root, TREE.mth(0, other), proof)


def test_consistency_between_every_pair_of_small_sizes() -> None:
    """For all 1 <= m <= n <= 40 the built proof is RFC 6962's and verifies."""
    for new_size in range(1, 41):
        for old_size in range(1, new_size + 1):
            proof = built_consistency(old_size, new_size)
            assert proof == TREE.consistency_proof(old_size, new_size)
            verify_consistency(
                old_size, new_size, TREE.mth(0, old_size), TREE.mth(0, new_size), proof
            )


# --- edge cases the RFC leaves to the caller ---------------------------------------


def test_consistency_from_the_empty_tree() -> None:
    """Every tree is consistent with the empty one: empty proof, EMPTY_ROOT as old root."""
    for new_size in (0, 1, 5, 300):
        verify_consistency(0, new_size, EMPTY_ROOT, TREE.mth(0, new_size), [])
    with pytest.raises(InvalidProof, match="from the empty tree is empty"):
        verify_consistency(0, 5, EMPTY_ROOT, TREE.mth(0, 5), [TREE.leaves[0]])
    with pytest.raises(InvalidProof, match="root of the empty tree"):
        verify_consistency(0, 5, TREE.leaves[0], TREE.mth(0, 5), [])
    with pytest.raises(InvalidProof, match="new root must be 32 bytes"):
        verify_consistency(0, 5, EMPTY_ROOT, b"short", [])
    with pytest.raises(InvalidProof, match="root of the empty tree"):
        verify_consistency(0, 0, EMPTY_ROOT, TREE.leaves[0], [])


def test_consistency_between_equal_sizes() -> None:
    """Equal sizes need an empty proof and identical roots; different roots mean a fork."""
    root = TREE.mth(0, 7)
    verify_consistency(7, 7, root, root, [])
    with pytest.raises(InvalidProof, match="forked"):
        verify_consistency(7, 7, root, TREE.mth(0, 6), [])
    with pytest.raises(InvalidProof, match="must be empty"):
        verify_consistency(7, 7, root, root, [root])


def test_consistency_rejects_shrinking_and_negative_sizes() -> None:
    """A newer tree smaller than the older one, or a negative size, is refused."""
    with pytest.raises(InvalidProof, match="never shrinks"):
        verify_consistency(5, 4, TREE.mth(0, 5), TREE.mth(0, 4), [])
    with pytest.raises(InvalidProof, match="negative"):
        verify_consistency(-1, 4, EMPTY_ROOT, TREE.mth(0, 4), [])


def test_consistency_wrong_length_message_states_expected_count() -> None:
    """A proof of the wrong length is reported with the expected hash count."""
    proof = built_consistency(3, 7)
    with pytest.raises(InvalidProof, match=f"has {len(proof)} hashes, this one has"):
        verify_consistency(3, 7, TREE.mth(0, 3), TREE.mth(0, 7), proof[:-1])
    with pytest.raises(InvalidProof, match="32 bytes"):
        verify_consistency(3, 7, TREE.mth(0, 3), TREE.mth(0, 7), [*proof[:-1], b""])


def test_inclusion_edge_cases() -> None:
    """Out-of-tree indexes, bad hash lengths and wrong proof lengths are named."""
    leaf, root = TREE.leaves[5], TREE.mth(0, 8)
    proof = built_inclusion(5, 8)
    with pytest.raises(InvalidProof, match="not in a tree of size 8"):
        verify_inclusion(leaf, 8, 8, proof, root)
    with pytest.raises(InvalidProof, match="not in a tree of size 0"):
        verify_inclusion(leaf, 0, 0, [], EMPTY_ROOT)
    with pytest.raises(InvalidProof, match="negative"):
        verify_inclusion(leaf, -1, 8, proof, root)
    with pytest.raises(InvalidProof, match="has 3 hashes, this one has 2"):
        verify_inclusion(leaf, 5, 8, proof[:2], root)
    with pytest.raises(InvalidProof, match="has 3 hashes, this one has 4"):
        verify_inclusion(leaf, 5, 8, [*proof, root], root)
    with pytest.raises(InvalidProof, match="leaf hash must be 32 bytes"):
        verify_inclusion(leaf[:31], 5, 8, proof, root)
    with pytest.raises(InvalidProof, match="root must be 32 bytes"):
        verify_inclusion(leaf, 5, 8, proof, root + b"\x00")
    with pytest.raises(InvalidProof, match="inclusion proof hash 1 must be 32 bytes"):
        verify_inclusion(leaf, 5, 8, [proof[0], b"", proof[2]], root)
    with pytest.raises(InvalidProof, match="leads to root"):
        verify_inclusion(leaf, 5, 8, proof, TREE.mth(0, 7))


def test_single_leaf_tree() -> None:
    """In a one-leaf tree the root is the leaf hash and the proof is empty."""
    leaf = TREE.leaves[0]
    verify_inclusion(leaf, 0, 1, [], leaf)
    assert inclusion_ranges(0, 1) == []


# --- ranges and perfect nodes ------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 1 << 40), st.integers(0, 1 << 12))
def test_perfect_nodes_are_a_maximal_aligned_cover(start: int, width: int) -> None:
    """perfect_nodes tiles [start, end) left to right with maximal aligned nodes."""
    end = start + width
    nodes = perfect_nodes(start, end)
    cursor = start
    for level, index in nodes:
        assert index << level == cursor  # contiguous, aligned by construction
        cursor += 1 << level
        parent = (level + 1, index >> 1)
        parent_start = parent[1] << parent[0]
        assert not (start <= parent_start and parent_start + (2 << level) <= end)
    assert cursor == end
    assert len(nodes) <= 2 * max(width, 1).bit_length()


def test_perfect_nodes_examples() -> None:
    """Hand-checked decompositions, including a range that is not a subtree."""
    assert perfect_nodes(0, 0) == []
    assert perfect_nodes(0, 6) == [(2, 0), (1, 2)]
    assert perfect_nodes(1, 7) == [(0, 1), (1, 1), (1, 2), (0, 6)]
    assert perfect_nodes(8, 13) == [(2, 2), (0, 12)]
    with pytest.raises(ValueError, match="not a leaf range"):
        perfect_nodes(5, 4)


def test_range_root_refuses_ranges_that_are_not_subtrees() -> None:
    """range_root only answers for ranges that occur in an RFC 6962 tree."""
    with pytest.raises(ValueError, match="not a subtree"):
        range_root(1, 7, TREE.node)
    with pytest.raises(ValueError, match="not a subtree"):
        range_root(4, 9, TREE.node)
    assert range_root(8, 13, TREE.node) == TREE.mth(8, 13)
    assert range_root(3, 3, TREE.node) == EMPTY_ROOT
    for size in range(1, MAX_LEAVES + 1, 7):
        assert range_root(0, size, TREE.node) == TREE.mth(0, size)


def test_ranges_reject_impossible_arguments() -> None:
    """Proof-range helpers refuse indexes and sizes that name no proof."""
    with pytest.raises(ValueError):
        inclusion_ranges(3, 3)
    with pytest.raises(ValueError):
        inclusion_ranges(-1, 3)
    with pytest.raises(ValueError):
        consistency_ranges(4, 3)
    assert consistency_ranges(0, 9) == []
    assert consistency_ranges(9, 9) == []


def test_range_examples() -> None:
    """Hand-checked proof ranges for a 7-leaf tree."""
    assert inclusion_ranges(6, 7) == [(4, 6), (0, 4)]
    assert inclusion_ranges(2, 7) == [(3, 4), (0, 2), (4, 7)]
    assert consistency_ranges(4, 7) == [(4, 7)]
    assert consistency_ranges(3, 7) == [(2, 3), (3, 4), (0, 2), (4, 7)]
    assert consistency_ranges(6, 7) == [(4, 6), (6, 7), (0, 4)]


# --- compact range ---------------------------------------------------------------


def test_compact_range_emits_every_perfect_node_once_when_completed() -> None:
    """append reports exactly the perfect nodes its leaf completes, with their hashes."""
    frontier = CompactRange()
    for i, leaf in enumerate(TREE.leaves):
        emitted = frontier.append(leaf)
        size = i + 1
        expected = [
            (level, (size >> level) - 1, TREE.node(level, (size >> level) - 1))
            for level in range(1, size.bit_length())
            if size % (1 << level) == 0
        ]
        assert emitted == expected
        assert frontier.size == size
        assert frontier.root() == TREE.mth(0, size)
        assert list(frontier.hashes) == [TREE.node(lv, ix) for lv, ix in perfect_nodes(0, size)]


def test_compact_range_emitted_nodes_cover_the_whole_naive_tree() -> None:
    """Over 300 appends, the emitted nodes are all perfect nodes at levels >= 1."""
    frontier = CompactRange()
    emitted = {}
    for leaf in TREE.leaves:
        for level, index, digest in frontier.append(leaf):
            assert (level, index) not in emitted
            emitted[(level, index)] = digest
    naive = {
        (level, index): digest
        for level, nodes in enumerate(TREE.levels)
        if level
        for index, digest in enumerate(nodes)
    }
    assert emitted == naive


def test_compact_range_serialisation_round_trip_and_copy() -> None:
    """to_bytes/from_bytes round-trip; copy is independent of the original."""
    frontier = CompactRange()
    for leaf in TREE.leaves[:77]:
        frontier.append(leaf)
    data = frontier.to_bytes()
    assert len(data) == (77).bit_count() * HASH_SIZE
    again = CompactRange.from_bytes(77, data)
    assert again == frontier and again.root() == frontier.root()
    assert CompactRange(77, frontier.hashes) == frontier
    clone = frontier.copy()
    clone.append(TREE.leaves[77])
    assert frontier.size == 77 and clone.size == 78
    assert clone.root() == TREE.mth(0, 78) and frontier.root() == TREE.mth(0, 77)
    assert CompactRange.from_bytes(0, b"").root() == EMPTY_ROOT


def test_compact_range_validates_its_state() -> None:
    """A frontier whose hash count or lengths do not fit its size is refused."""
    with pytest.raises(ValueError, match="holds 2 hashes, not 1"):
        CompactRange(3, [TREE.leaves[0]])
    with pytest.raises(ValueError, match="negative"):
        CompactRange(-1)
    with pytest.raises(ValueError, match="32 bytes"):
        CompactRange(1, [b"x"])
    with pytest.raises(ValueError, match="is 64 bytes, not 32"):
        CompactRange.from_bytes(3, bytes(32))
    with pytest.raises(ValueError, match="32 bytes"):
        CompactRange().append(b"short")


def test_compact_range_resumes_from_stored_state() -> None:
    """A frontier rebuilt from stored hashes continues exactly like the original."""
    for size in (0, 1, 6, 64, 255):
        frontier = CompactRange()
        for leaf in TREE.leaves[:size]:
            frontier.append(leaf)
        resumed = CompactRange.from_bytes(size, frontier.to_bytes())
        for leaf in TREE.leaves[size : size + 20]:
            assert resumed.append(leaf) == frontier.append(leaf)
        assert resumed.root() == frontier.root() == TREE.mth(0, size + 20)


# --- stored levels -----------------------------------------------------------------


def test_base_hashes_for_folds_back_to_every_node() -> None:
    """Folding the stored hashes base_hashes_for names reproduces each perfect node."""
    for level, nodes in enumerate(TREE.levels):
        for index, digest in enumerate(nodes):
            base, first, count = base_hashes_for(level, index)
            assert base == 0 or is_stored_level(base)
            assert base <= level < base + STORED_LEVEL_STRIDE
            assert count == 1 << (level - base) <= 1 << (STORED_LEVEL_STRIDE - 1)
            assert fold_perfect(TREE.levels[base][first : first + count]) == digest


def test_base_hashes_for_examples() -> None:
    """Hand-checked reads: a stored node is its own base; others read below."""
    assert base_hashes_for(0, 9) == (0, 9, 1)
    assert base_hashes_for(3, 2) == (0, 16, 8)
    assert base_hashes_for(4, 5) == (4, 5, 1)
    assert base_hashes_for(6, 1) == (4, 4, 4)
    with pytest.raises(ValueError):
        base_hashes_for(-1, 0)
