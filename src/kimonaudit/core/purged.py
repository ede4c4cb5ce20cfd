"""The Merkle math of a purged prefix (issue 8): what a log keeps when
retention removes leaves [0, P), and how proofs are still served and
checked afterwards. Pure: no I/O.

What is kept of the prefix is its *compact range*: the roots of the
maximal aligned perfect subtrees covering [0, P), one per set bit of P
(O(log n) hashes, no personal data). That is enough for

* the root of every tree of size N >= P, and every inclusion proof of a
  retained leaf (seq >= P) in it: a proof's subtree either lies at or after
  P (computed from retained leaves and stored nodes, as before), is one of
  the compact-range nodes, or *straddles* P, in which case it is folded from
  its two children, recursively, until each part is one of the other two
  kinds (`expand` and `resolve`);
* every consistency proof from a size M >= P (the same argument: each
  subtree of such a proof is a compact-range node of P, straddles P, or
  lies after it).

A checkpoint issued before the purge at a size M < P needs hashes inside
the prefix for a fresh proof. So the purge also keeps, for each such
checkpoint, the nodes its proofs need (`checkpoint_nodes`): the compact
range of [0, M) and the right siblings, lying wholly inside [0, P), of the
path from M's last node up to the root. Every other node of an RFC 9162
consistency proof from M to any size N >= P (or to another kept checkpoint
below P) then straddles P, lies after it, or is a compact-range node of
P, exactly as above; `proof_within` builds the proof M -> P from kept
hashes alone, which is how `verify` checks them. O(log n) hashes per
checkpoint, hashes only.

The purge also stores, for each checkpoint M < P (and an earlier purge
point P0), the consistency proof from M to P computed while the leaves
still existed, with M's root. `roots_before` checks this chain back from
the root the compact range gives for P: each proof binds the older root to
the newer, so a stored root cannot be changed without breaking the chain,
and the compact range itself is bound to every checkpoint after P by the
rebuilt tree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from kimonaudit.core.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_ranges,
    node_hash,
    perfect_nodes,
    range_root,
    verify_consistency,
)
from kimonaudit.errors import InvalidProof

Key = tuple[int, int]  # (level, index) of a perfect node


def prefix_nodes(purged: int) -> list[Key]:
    """The compact range of [0, purged) as perfect-node keys, largest first."""
    return perfect_nodes(0, purged)


def _span(key: Key) -> tuple[int, int]:
    level, index = key
    start = index << level
    return start, start + (1 << level)


def straddles(key: Key, purged: int) -> bool:
    """Whether perfect node `key` covers both purged and retained leaves."""
    start, end = _span(key)
    return start < purged < end


def expand(key: Key, purged: int) -> list[Key]:
    """The perfect nodes to read for `key` once [0, purged) is gone: `key`
    itself unless it straddles the cut, else its children's, recursively.
    A node returned that lies inside the prefix is a compact-range node."""
    if not straddles(key, purged):
        return [key]
    level, index = key
    return expand((level - 1, 2 * index), purged) + expand((level - 1, 2 * index + 1), purged)


def resolve(key: Key, purged: int, got: Mapping[Key, bytes]) -> bytes:
    """The hash of perfect node `key` from the hashes of `expand(key, purged)`."""
    if not straddles(key, purged):
        return got[key]
    level, index = key
    return node_hash(
        resolve((level - 1, 2 * index), purged, got),
        resolve((level - 1, 2 * index + 1), purged, got),
    )


def unreachable(keys: Iterable[Key], purged: int) -> list[Key]:
    """Those of `keys` (after `expand`) inside the prefix that are not
    compact-range nodes: no proof a purged log serves needs one."""
    kept = set(prefix_nodes(purged))
    return [k for k in keys if _span(k)[1] <= purged and k not in kept]


def checkpoint_nodes(size: int, purged: int) -> list[Key]:
    """The nodes inside [0, purged) that consistency proofs from a checkpoint
    at `size` (0 < size < purged) need once the prefix is gone: the compact
    range of [0, size), then the right siblings, lowest first, of the
    perfect nodes holding leaf size - 1 whose parent ends at or before
    `purged`. A sibling whose parent ends later straddles the cut, or lies
    after it, in every tree a proof can reach, so it is never kept."""
    if not 0 < size < purged:
        return []
    keys = perfect_nodes(0, size)
    level = 0
    while True:
        idx = (size - 1) >> level  # the node at `level` holding leaf size - 1
        if ((idx >> 1) + 1) << (level + 1) > purged:  # its parent's end
            return keys
        if not idx & 1:  # a left child: its right sibling starts at or after size
            keys.append((level, idx + 1))
        level += 1


def kept_nodes(purged: int, checkpoint_sizes: Iterable[int], since: int = 0) -> list[Key]:
    """Everything a purge up to `purged` keeps, sorted: the prefix's compact
    range and `checkpoint_nodes` of every checkpoint size below it; without
    those lying wholly inside [0, since), an earlier purge point. That purge
    kept them already: a node kept for `purged` that lies inside [0, since)
    is a compact-range node of `since` or kept for a checkpoint below it
    (property-tested), so a later purge reads and writes only the rest."""
    keys = set(prefix_nodes(purged))
    for size in checkpoint_sizes:
        keys.update(checkpoint_nodes(size, purged))
    return sorted(k for k in keys if not within(k, since))


def within(key: Key, end: int) -> bool:
    """Whether perfect node `key` lies wholly inside [0, end)."""
    return _span(key)[1] <= end


def proof_within(
    old_size: int, new_size: int, hashes: Mapping[Key, bytes]
) -> tuple[bytes, bytes, list[bytes]]:
    """(old root, new root, consistency proof) from perfect-node hashes alone,
    e.g. the nodes kept for a checkpoint at `old_size` and the compact range
    of `new_size` (raises KeyError naming a node that is not in `hashes`)."""

    def node(level: int, index: int) -> bytes:
        return hashes[(level, index)]

    def root(size: int) -> bytes:
        return EMPTY_ROOT if size == 0 else range_root(0, size, node)

    proof = [range_root(s, e, node) for s, e in consistency_ranges(old_size, new_size)]
    return root(old_size), root(new_size), proof


def prefix_range(purged: int, hashes: Mapping[Key, bytes]) -> CompactRange:
    """The CompactRange of [0, purged) from its nodes' hashes."""
    return CompactRange(purged, [hashes[k] for k in prefix_nodes(purged)])


@dataclass(frozen=True)
class PrefixProof:
    """Kept at a purge: the consistency proof from an older size to the
    purge point (`new_size`), with the older tree's root."""

    old_size: int
    new_size: int
    old_root: bytes
    proof: tuple[bytes, ...]


def roots_before(prefix: CompactRange, proofs: Sequence[PrefixProof]) -> dict[int, bytes]:
    """Sizes at or below the purge point -> their proven roots.

    Starts from the compact range's own root for its size and walks the
    stored proofs from the newest purge point back; a proof whose newer
    root is not proven yet, or that does not verify, raises InvalidProof.
    """
    known = {prefix.size: prefix.root()}
    for p in sorted(proofs, key=lambda p: (-p.new_size, -p.old_size)):
        if p.new_size not in known:
            raise InvalidProof(
                f"the kept proof from size {p.old_size} leads to size {p.new_size}, "
                "which no later purge point or compact range accounts for"
            )
        verify_consistency(p.old_size, p.new_size, p.old_root, known[p.new_size], p.proof)
        earlier = known.get(p.old_size)
        if earlier is not None and earlier != p.old_root:
            raise InvalidProof(f"two different roots are kept for size {p.old_size}")
        known[p.old_size] = p.old_root
    return known
