"""RFC 6962 / RFC 9162 Merkle tree: hashing, the compact range, proofs.

Exactly the tree of RFC 9162 section 2.1: leaf hash = SHA-256(0x00 || leaf),
interior node = SHA-256(0x01 || left || right), and a tree of n > 1 leaves
splits at the largest power of two below n. Public test vectors therefore
apply unchanged. The distinct prefixes stop a second-preimage attack: an
interior node's preimage (0x01 || left || right) can never be taken for a
leaf's (0x00 || data), so nobody can present two hashes as one "leaf".

Addressing. A *perfect node* ``(level, index)`` is the root of the perfect
subtree over leaves ``[index * 2**level, (index + 1) * 2**level)``; level 0
are the leaf hashes. Every node of every RFC 6962 tree is either a perfect
node or (on the right edge) folds from a few of them, so a store that keeps
perfect nodes can answer any proof: the ``*_ranges`` functions say which
subtree hashes a proof holds, and ``range_root`` computes one from perfect
nodes. Stores persist perfect nodes only at every ``STORED_LEVEL_STRIDE``-th
level; ``base_hashes_for`` says where to read the rest from.

Argument errors in the tree-building helpers (negative sizes, hashes of the
wrong length) raise ValueError; anything wrong with a proof being checked
raises kimonaudit.errors.InvalidProof.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from kimonaudit.errors import InvalidProof

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "LEAF_PREFIX",
    "NODE_PREFIX",
    "STORED_LEVEL_STRIDE",
    "CompactRange",
    "base_hashes_for",
    "consistency_ranges",
    "fold_perfect",
    "inclusion_ranges",
    "is_stored_level",
    "leaf_hash",
    "node_hash",
    "perfect_nodes",
    "range_root",
    "root_from_inclusion_proof",
    "root_of",
    "verify_consistency",
    "verify_inclusion",
]

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_SIZE = 32
#: MTH of the empty tree (RFC 9162 section 2.1.1): SHA-256 of nothing.
EMPTY_ROOT = hashlib.sha256(b"").digest()
#: Stores persist perfect nodes at levels 4, 8, 12, ...: a node at any level
#: then folds from at most 2**3 = 8 stored hashes, for 1/15 extra rows.
STORED_LEVEL_STRIDE = 4

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data): the hash of one leaf."""
    return _sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node."""
    return _sha256(NODE_PREFIX + left + right).digest()


def node_hashes_py(row: list[bytes]) -> list[bytes]:
    """`node_hash` of each pair of a level (even length), left to right."""
    sha, prefix = _sha256, NODE_PREFIX
    return [sha(prefix + row[i] + row[i + 1]).digest() for i in range(0, len(row), 2)]


# The same in C where the optional extension was built (pyproject.toml): a
# verify or an append batch hashes one node per leaf, and the comprehension
# costs three times the C loop. tests/test_native.py pins the two together.
try:
    from kimonaudit._native import node_hashes
except ImportError:
    node_hashes = node_hashes_py


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over ``leaf_hashes`` (RFC 9162 section 2.1.1); EMPTY_ROOT for none.

    Pairs neighbours level by level and carries an odd last node up
    unchanged, which builds the same tree as splitting at the largest power
    of two below n.
    """
    level = [_checked(h, "leaf hash", ValueError) for h in leaf_hashes]
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        paired = [
            _sha256(NODE_PREFIX + level[i] + level[i + 1]).digest()
            for i in range(0, len(level) - 1, 2)
        ]
        if len(level) & 1:
            paired.append(level[-1])
        level = paired
    return level[0]


def fold_perfect(hashes: Sequence[bytes]) -> bytes:
    """Root of a perfect subtree from its 2**k node hashes at one level."""
    count = len(hashes)
    if count == 0 or count & (count - 1):
        raise ValueError(f"a perfect subtree folds from a power of two of hashes, not {count}")
    level = [_checked(h, "hash", ValueError) for h in hashes]
    while len(level) > 1:
        level = [
            _sha256(NODE_PREFIX + level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)
        ]
    return level[0]


def is_stored_level(level: int) -> bool:
    """Whether stores persist perfect nodes of this level (leaves excluded)."""
    return level > 0 and level % STORED_LEVEL_STRIDE == 0


class CompactRange:
    """The frontier of a tree of ``size`` leaves: everything needed to append
    and to compute the root, in O(log n) hashes.

    ``hashes`` holds one perfect-subtree root per set bit of ``size``,
    largest (leftmost) first: for size 6 = 0b110, the roots over leaves
    [0, 4) and [4, 6).
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise ValueError(f"tree size must not be negative, got {size}")
        frontier = [_checked(h, "compact range hash", ValueError) for h in hashes]
        if len(frontier) != size.bit_count():
            raise ValueError(
                f"a compact range of size {size} holds {size.bit_count()} hashes, "
                f"not {len(frontier)}"
            )
        self._size = size
        self._hashes = frontier

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; return the perfect nodes this completes.

        Each is ``(level, index, hash)`` with level >= 1, lowest level first;
        ``index`` counts nodes of that level from the left. A leaf completes
        one node per trailing 1 bit of the old size, so appends cost one hash
        on average.
        """
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, not {len(leaf_hash)}")
        hashes = self._hashes
        size = self._size
        self._size = size + 1
        completed: list[tuple[int, int, bytes]] = []
        node = leaf_hash
        level = 0
        while size & 1:
            size >>= 1
            level += 1
            node = _sha256(NODE_PREFIX + hashes.pop() + node).digest()
            completed.append((level, size, node))
        hashes.append(node)
        return completed

    def extend(self, leaf_hashes: Sequence[bytes]) -> list[tuple[int, int, bytes]]:
        """Add many leaf hashes; return the perfect nodes they complete on
        stored levels (``is_stored_level``), lowest level first.

        The same tree as ``append`` leaf by leaf, built a level at a time:
        the append path calls this once per batch, and pairing a whole level
        in one comprehension costs about half the interpreter work of
        walking each leaf's carries (the hashes computed are the same).
        """
        for h in leaf_hashes:
            if len(h) != HASH_SIZE:
                raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, not {len(h)}")
        size = self._size
        if not leaf_hashes:
            return []
        # The old frontier by level: one perfect node per set bit of size.
        old = self._hashes
        by_level: dict[int, bytes] = {}
        bit = size.bit_length() - 1
        for h in old:
            while not size >> bit & 1:
                bit -= 1
            by_level[bit] = h
            bit -= 1
        end = size + len(leaf_hashes)
        stored: list[tuple[int, int, bytes]] = []
        kept: dict[int, bytes] = {}
        level, start = 0, size
        row = list(leaf_hashes)  # the new nodes of this level, from index `start`
        while row:
            if start & 1:
                # The first new node is a right child: its left sibling is
                # the old frontier's node of this level.
                row.insert(0, by_level.pop(level))
                start -= 1
            if len(row) & 1:
                # The last node has no right sibling yet: a frontier node.
                kept[level] = row.pop()
            row = node_hashes(row)
            level += 1
            start >>= 1
            if row and level % STORED_LEVEL_STRIDE == 0:
                stored.extend([(level, start + i, h) for i, h in enumerate(row)])
        # Old frontier nodes above the levels the new leaves reached stay.
        kept.update(by_level)
        self._hashes = [kept[lv] for lv in sorted(kept, reverse=True)]
        self._size = end
        return stored

    def root(self) -> bytes:
        """MTH of the whole tree: the frontier folded right to left."""
        hashes = self._hashes
        if not hashes:
            return EMPTY_ROOT
        node = hashes[-1]
        for i in range(len(hashes) - 2, -1, -1):
            node = _sha256(NODE_PREFIX + hashes[i] + node).digest()
        return node

    def to_bytes(self) -> bytes:
        """The hashes concatenated; the size is kept beside them."""
        return b"".join(self._hashes)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> CompactRange:
        """Inverse of ``to_bytes``."""
        if size < 0:
            raise ValueError(f"tree size must not be negative, got {size}")
        expected = size.bit_count() * HASH_SIZE
        if len(data) != expected:
            raise ValueError(f"a compact range of size {size} is {expected} bytes, not {len(data)}")
        return cls(size, [bytes(data[i : i + HASH_SIZE]) for i in range(0, expected, HASH_SIZE)])

    def copy(self) -> CompactRange:
        clone = CompactRange.__new__(CompactRange)
        clone._size = self._size
        clone._hashes = list(self._hashes)
        return clone

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CompactRange):
            return NotImplemented
        return self._size == other._size and self._hashes == other._hashes

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"


# --- which hashes a proof holds ----------------------------------------------


def perfect_nodes(start: int, end: int) -> list[tuple[int, int]]:
    """Split leaves [start, end) into maximal aligned perfect subtrees.

    Returns ``(level, index)`` pairs, left to right.
    """
    if not 0 <= start <= end:
        raise ValueError(f"not a leaf range: [{start}, {end})")
    nodes = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:
            # The lowest set bit of start caps how large an aligned node fits.
            level = min(level, (start & -start).bit_length() - 1)
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose subtree hashes make the audit path of leaf ``index``
    in a tree of ``size`` leaves (RFC 6962 section 2.1.1 PATH), bottom-up."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    ranges = []
    low, high = 0, size
    while high - low > 1:
        middle = low + _split(high - low)
        if index < middle:
            ranges.append((middle, high))
            high = middle
        else:
            ranges.append((low, middle))
            low = middle
    ranges.reverse()
    return ranges


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Leaf ranges whose subtree hashes make the consistency proof from
    ``old_size`` to ``new_size`` (RFC 6962 section 2.1.2 PROOF, SUBPROOF with
    its b flag), in proof order. Empty when old_size is 0 or new_size."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size in (0, new_size):
        return []
    ranges = []
    low, high = 0, new_size
    whole = True  # SUBPROOF's b: is old_size still the entire old tree?
    while old_size - low != high - low:
        middle = low + _split(high - low)
        if old_size <= middle:
            ranges.append((middle, high))
            high = middle
        else:
            ranges.append((low, middle))
            low = middle
            whole = False
    if not whole:
        ranges.append((low, high))
    ranges.reverse()
    return ranges


def range_root(start: int, end: int, node: Callable[[int, int], bytes]) -> bytes:
    """MTH of leaves [start, end), from ``node(level, index)`` for perfect nodes.

    [start, end) must be a subtree of some RFC 6962 tree: ``start`` a
    multiple of the smallest power of two >= end - start (every range the
    ``*_ranges`` functions return is). Its perfect nodes then shrink left to
    right and fold right to left into the RFC 6962 subtree.
    """
    if not 0 <= start <= end:
        raise ValueError(f"not a leaf range: [{start}, {end})")
    if start == end:
        return EMPTY_ROOT
    span = 1 << (end - start - 1).bit_length()
    if start % span:
        raise ValueError(f"leaves [{start}, {end}) are not a subtree of an RFC 6962 tree")
    nodes = perfect_nodes(start, end)
    root = node(*nodes[-1])
    for level, index in reversed(nodes[:-1]):
        root = _sha256(NODE_PREFIX + node(level, index) + root).digest()
    return root


def base_hashes_for(level: int, index: int) -> tuple[int, int, int]:
    """Where the hashes that fold into perfect node (level, index) are stored.

    Returns ``(base_level, first_index, count)``: read nodes
    ``first_index .. first_index + count - 1`` of ``base_level`` (the largest
    stored level <= level; 0 means leaf hashes) and ``fold_perfect`` them.
    A node on a stored level is its own base (count 1).
    """
    if level < 0 or index < 0:
        raise ValueError(f"no perfect node at level {level}, index {index}")
    base = level - level % STORED_LEVEL_STRIDE
    depth = level - base
    return base, index << depth, 1 << depth


# --- checking proofs -----------------------------------------------------------


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that ``proof`` leads to from leaf ``index`` in a tree of ``size``.

    RFC 9162 section 2.1.3.2 in full, including step 4.b.ii, which skips the
    levels where the leaf's subtree is a lone right-edge node. Raises
    InvalidProof when the index is outside the tree, a hash is not 32 bytes
    or the proof has the wrong number of hashes.
    """
    if size < 0 or index < 0:
        raise InvalidProof(f"leaf index {index} and tree size {size} must not be negative")
    if index >= size:
        raise InvalidProof(f"leaf index {index} is not in a tree of size {size}")
    _checked(leaf_hash, "leaf hash", InvalidProof)
    fn, sn = index, size - 1
    root = leaf_hash
    for position, sibling in enumerate(proof):
        if sn == 0:
            raise InvalidProof(_wrong_length(proof, index, size))
        _checked(sibling, f"inclusion proof hash {position}", InvalidProof)
        if fn & 1 or fn == sn:
            root = _sha256(NODE_PREFIX + sibling + root).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            root = _sha256(NODE_PREFIX + root + sibling).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof(_wrong_length(proof, index, size))
    return root


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that leaf ``index`` with ``leaf_hash`` is in the tree of ``size``
    leaves whose root is ``root``; raise InvalidProof saying why not."""
    _checked(root, "root", InvalidProof)
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if computed != root:
        raise InvalidProof(
            f"inclusion proof for leaf {index} in a tree of size {size} leads to root "
            f"{_show(computed)}, not the expected {_show(root)}"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree (new_size, new_root) extends (old_size, old_root).

    RFC 9162 section 2.1.4.2 in full. Raises InvalidProof saying why not.

    Edge cases, which RFC 9162 leaves to the caller:

    * ``old_size == new_size``: the proof must be empty and the roots
      byte-identical (two roots for one size mean the log forked).
    * ``old_size == 0``: the empty tree is a prefix of every tree, so any new
      tree is consistent with it and the proof must be empty. Since the empty
      tree has exactly one root, ``old_root`` must be EMPTY_ROOT, and
      ``new_root`` must at least be a 32-byte hash (EMPTY_ROOT too when
      ``new_size`` is 0). Nothing ties ``new_root`` to any leaves here: that
      takes a checkpoint signature or a later proof.
    """
    if old_size < 0 or new_size < 0:
        raise InvalidProof(f"tree sizes must not be negative, got {old_size} and {new_size}")
    if old_size > new_size:
        raise InvalidProof(
            f"the old tree (size {old_size}) is larger than the new one (size {new_size}): "
            "a log never shrinks"
        )
    if old_size == 0:
        if proof:
            raise InvalidProof(
                f"a consistency proof from the empty tree is empty, got {len(proof)} hashes"
            )
        if old_root != EMPTY_ROOT:
            raise InvalidProof(
                f"the root of the empty tree is {_show(EMPTY_ROOT)}, not {_show(old_root)}"
            )
        if new_size == 0 and new_root != EMPTY_ROOT:
            raise InvalidProof(
                f"the root of the empty tree is {_show(EMPTY_ROOT)}, not {_show(new_root)}"
            )
        _checked(new_root, "new root", InvalidProof)
        return
    if old_size == new_size:
        if proof:
            raise InvalidProof(
                f"both trees have size {old_size}: the proof must be empty, got {len(proof)} hashes"
            )
        if old_root != new_root:
            raise InvalidProof(
                f"two different roots for tree size {old_size}: {_show(old_root)} and "
                f"{_show(new_root)}; the log has forked"
            )
        return
    _checked(old_root, "old root", InvalidProof)
    _checked(new_root, "new root", InvalidProof)
    if not proof:
        raise InvalidProof(f"empty consistency proof from size {old_size} to {new_size}")
    for position, element in enumerate(proof):
        _checked(element, f"consistency proof hash {position}", InvalidProof)

    path = list(proof)
    if old_size & (old_size - 1) == 0:
        # The old tree is a perfect subtree of the new one: its root is the
        # proof's implicit first hash.
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    old_hash = new_hash = path[0]
    for element in path[1:]:
        if sn == 0:
            raise InvalidProof(_wrong_consistency_length(proof, old_size, new_size))
        if fn & 1 or fn == sn:
            old_hash = _sha256(NODE_PREFIX + element + old_hash).digest()
            new_hash = _sha256(NODE_PREFIX + element + new_hash).digest()
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            new_hash = _sha256(NODE_PREFIX + new_hash + element).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProof(_wrong_consistency_length(proof, old_size, new_size))
    if old_hash != old_root:
        raise InvalidProof(
            f"consistency proof from size {old_size} to {new_size} leads to old root "
            f"{_show(old_hash)}, not the expected {_show(old_root)}"
        )
    if new_hash != new_root:
        raise InvalidProof(
            f"consistency proof from size {old_size} to {new_size} leads to new root "
            f"{_show(new_hash)}, not the expected {_show(new_root)}"
        )


# --- helpers -------------------------------------------------------------------


def _split(count: int) -> int:
    """The largest power of two smaller than ``count`` (count >= 2)."""
    return 1 << ((count - 1).bit_length() - 1)


def _checked(value: bytes, what: str, error: type[Exception]) -> bytes:
    if len(value) != HASH_SIZE:
        raise error(f"{what} must be {HASH_SIZE} bytes, got {len(value)}")
    return value


def _show(digest: bytes) -> str:
    return digest.hex()[:16] + "..." if len(digest) == HASH_SIZE else repr(bytes(digest))


def _wrong_length(proof: Sequence[bytes], index: int, size: int) -> str:
    return (
        f"an inclusion proof for leaf {index} in a tree of size {size} has "
        f"{len(inclusion_ranges(index, size))} hashes, this one has {len(proof)}"
    )


def _wrong_consistency_length(proof: Sequence[bytes], old_size: int, new_size: int) -> str:
    return (
        f"a consistency proof from size {old_size} to {new_size} has "
        f"{len(consistency_ranges(old_size, new_size))} hashes, this one has {len(proof)}"
    )
