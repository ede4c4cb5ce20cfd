"""Reading a tenant's stored tree: subtree hashes, proofs and roots.

Stores keep leaf hashes (in `entries`) and perfect-subtree hashes at every
STORED_LEVEL_STRIDE-th level (in `tree_nodes`); any other node is folded
from at most 2**(stride-1) stored hashes below it. A proof therefore costs
O(log n) small reads and never a rebuild.
"""

from __future__ import annotations

from collections.abc import Iterable

from kimonaudit.core import merkle
from kimonaudit.errors import StoreError
from kimonaudit.store.base import Store

Key = tuple[int, int]


class TreeReader:
    def __init__(self, store: Store, tenant_id: str) -> None:
        self.store = store
        self.tenant_id = tenant_id

    def node_hashes(self, keys: Iterable[Key]) -> dict[Key, bytes]:
        """Hashes of the perfect nodes `keys` (level, index)."""
        keys = list(dict.fromkeys(keys))
        # Nodes stored as such: stride levels, and any node kept on purpose
        # (for example the compact range of a purged prefix).
        exact = self.store.nodes(self.tenant_id, [k for k in keys if k[0] > 0])
        out: dict[Key, bytes] = {}
        missing: list[Key] = []
        for k in keys:
            if k in exact:
                out[k] = exact[k]
            else:
                missing.append(k)
        for level, index in missing:
            base, first, count = merkle.base_hashes_for(level, index)
            if base == 0:
                hashes = self.store.leaf_hashes(self.tenant_id, first, first + count)
            else:
                got = self.store.nodes(self.tenant_id, [(base, first + i) for i in range(count)])
                hashes = [got[(base, first + i)] for i in range(count) if (base, first + i) in got]
            if len(hashes) != count:
                raise StoreError(
                    f"tenant {self.tenant_id}: stored tree is missing hashes under node "
                    f"(level {level}, index {index}); run `kimonaudit verify`"
                )
            out[(level, index)] = merkle.fold_perfect(hashes)
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

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        return self.range_roots(merkle.consistency_ranges(old_size, new_size))
