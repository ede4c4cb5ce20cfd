"""Reading a tenant's stored tree: subtree hashes, proofs and roots.

Stores keep leaf hashes (in `entries`) and perfect-subtree hashes at every
STORED_LEVEL_STRIDE-th level (in `tree_nodes`); any other node is folded
from at most 2**(stride-1) stored hashes below it. A proof therefore costs
O(log n) small reads and never a rebuild.
"""

from __future__ import annotations

from collections.abc import Iterable

from kimonaudit.core import merkle
from kimonaudit.core import purged as purged_math
from kimonaudit.errors import StoreError
from kimonaudit.store.base import Store

Key = tuple[int, int]


class TreeReader:
    def __init__(self, store: Store, tenant_id: str) -> None:
        self.store = store
        self.tenant_id = tenant_id

    def node_hashes(self, keys: Iterable[Key]) -> dict[Key, bytes]:
        """Hashes of the perfect nodes `keys` (level, index), in one read of
        stored nodes and leaf hashes together."""
        keys = list(dict.fromkeys(keys))
        try:
            return self._node_hashes(keys, 0)
        except StoreError:
            # Retention may have purged a prefix: a node across the cut is
            # folded from the prefix's compact range and retained hashes
            # (kimonaudit.core.purged). Looked up only when needed.
            purged = self.store.tree_state(self.tenant_id).purged
            if not purged:
                raise
            return self._node_hashes(keys, purged)

    def _node_hashes(self, keys: list[Key], purged: int) -> dict[Key, bytes]:
        if purged:
            parts = {k: purged_math.expand(k, purged) for k in keys}
            reads = list(dict.fromkeys(p for ps in parts.values() for p in ps))
            got = self._read_nodes(reads, purged)
            return {k: purged_math.resolve(k, purged, got) for k in keys}
        return self._read_nodes(keys, 0)

    def _read_nodes(self, keys: list[Key], purged: int) -> dict[Key, bytes]:
        # A node inside a purged prefix is one of its compact-range nodes,
        # stored as such (any level, leaves included).
        kept = {k for k in keys if (k[1] + 1) << k[0] <= purged}
        bases = {k: merkle.base_hashes_for(*k) for k in keys if k not in kept}
        # Ask for each node itself (it may be stored as such, e.g. the
        # compact range of a purged prefix) and for the stored nodes it
        # folds from, all at once.
        wanted: set[Key] = {k for k in keys if k[0] > 0} | kept
        seqs: set[int] = set()
        for base, first, count in bases.values():
            if base == 0:
                seqs.update(range(first, first + count))
            else:
                wanted.update((base, first + i) for i in range(count))
        stored, leaves = self.store.tree_hashes(self.tenant_id, wanted, sorted(seqs))
        out: dict[Key, bytes] = {}
        for k in keys:
            if k in stored:
                out[k] = stored[k]
                continue
            if k in kept:
                raise StoreError(
                    f"tenant {self.tenant_id}: the compact range of the purged prefix lacks "
                    f"node (level {k[0]}, index {k[1]}); run `kimonaudit verify`"
                )
            base, first, count = bases[k]
            if base == 0:
                hashes = [leaves.get(first + i) for i in range(count)]
            else:
                hashes = [stored.get((base, first + i)) for i in range(count)]
            if any(h is None for h in hashes):
                raise StoreError(
                    f"tenant {self.tenant_id}: stored tree is missing hashes under node "
                    f"(level {k[0]}, index {k[1]}); run `kimonaudit verify`"
                )
            out[k] = merkle.fold_perfect(hashes)  # type: ignore[arg-type]
        return out

    def range_roots(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        needed = [n for s, e in ranges for n in merkle.perfect_nodes(s, e)]
        got = self.node_hashes(needed)
        return [merkle.range_root(s, e, lambda lvl, i: got[(lvl, i)]) for s, e in ranges]

    def root(self, size: int) -> bytes:
        if size == 0:
            return merkle.EMPTY_ROOT
        return self.range_roots([(0, size)])[0]

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return self.range_roots(merkle.inclusion_ranges(index, size))

    def consistency(self, old_size: int, new_size: int) -> tuple[bytes, bytes, list[bytes]]:
        """(old root, new root, proof) in a single read."""
        ranges = [(0, old_size), (0, new_size)]
        if 0 < old_size < new_size:
            ranges += merkle.consistency_ranges(old_size, new_size)
        got = iter(self.range_roots([(a, b) for a, b in ranges if b > a]))
        hashes = [next(got) if b > a else merkle.EMPTY_ROOT for a, b in ranges]
        return hashes[0], hashes[1], hashes[2:]

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        return self.range_roots(merkle.consistency_ranges(old_size, new_size))
