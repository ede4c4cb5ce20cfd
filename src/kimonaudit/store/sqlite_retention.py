"""Retention settings, actor secrets and redaction reasons in the SQLite
store. A mixin that SQLiteStore inherits (issue 8); it uses the store's
reader connection and its small administrative writes."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from kimonaudit.errors import Conflict, NotFound
from kimonaudit.store.writer import GroupCommitWriter

# SQLite allows 32,766 parameters in a statement; lookups go in far fewer.
_LOOKUPS_PER_QUERY = 500


class SQLiteRetentionStore:
    # Provided by SQLiteStore, which lists this class after itself.
    index_file: str
    _writer: GroupCommitWriter

    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    def _admin_tx(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _write(self, sql: str, params: Sequence[object] = ()) -> int:
        raise NotImplementedError

    # -- plans and retention -------------------------------------------------
    def set_retention(self, tenant_id: str, plan: str, custom: int | None, effective: int) -> None:
        """Store a tenant's plan, its own retention (None: the plan's) and
        the retention in force."""
        with self._admin_tx() as conn:
            n = conn.execute(
                "UPDATE tenants SET plan = ?, retention_months = ? WHERE tenant_id = ?",
                (plan, effective, tenant_id),
            ).rowcount
            if n:
                conn.execute(
                    "INSERT INTO tenant_settings (tenant_id, retention_custom) VALUES (?, ?)"
                    " ON CONFLICT (tenant_id) DO UPDATE"
                    " SET retention_custom = excluded.retention_custom",
                    (tenant_id, custom),
                )
        if not n:
            raise NotFound(f"no tenant {tenant_id!r}")

    def retention_custom(self, tenant_id: str) -> int | None:
        r = (
            self._conn()
            .execute(
                "SELECT retention_custom FROM tenant_settings WHERE tenant_id = ?", (tenant_id,)
            )
            .fetchone()
        )
        return None if r is None or r[0] is None else int(r[0])

    # -- actor secrets (erasure that unlinks) ----------------------------------
    def actor_secret(self, tenant_id: str, lookup: str) -> bytes | None:
        r = (
            self._conn()
            .execute(
                "SELECT secret FROM actor_secrets WHERE tenant_id = ? AND lookup = ?",
                (tenant_id, lookup),
            )
            .fetchone()
        )
        return None if r is None else bytes(r[0])

    def actor_secrets(self, tenant_id: str, lookups: Sequence[str]) -> dict[str, bytes]:
        """The secrets of those of `lookups` that have one."""
        conn = self._conn()
        out: dict[str, bytes] = {}
        for i in range(0, len(lookups), _LOOKUPS_PER_QUERY):
            part = lookups[i : i + _LOOKUPS_PER_QUERY]
            marks = ", ".join("?" * len(part))
            rows = conn.execute(
                "SELECT lookup, secret FROM actor_secrets"  # noqa: S608 (placeholders only)
                f" WHERE tenant_id = ? AND lookup IN ({marks})",
                (tenant_id, *part),
            )
            out.update((lookup, bytes(secret)) for lookup, secret in rows)
        return out

    def create_actor_secrets(self, tenant_id: str, fresh: Mapping[str, bytes], now: int) -> None:
        """Store each of `fresh` (lookup -> secret) unless the actor has a
        secret already, in one transaction (`ActorHashes` reads back which
        secret won)."""
        with self._admin_tx() as conn:
            conn.executemany(
                "INSERT INTO actor_secrets (tenant_id, lookup, secret, created_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (tenant_id, lookup) DO NOTHING",
                [(tenant_id, lookup, secret, now) for lookup, secret in fresh.items()],
            )

    def actor_hashes_of(self, tenant_id: str, actor_id: str) -> list[str]:
        """The hashes the directory links to `actor_id` (none once erased)."""
        rows = self._conn().execute(
            "SELECT actor_hash FROM actors WHERE tenant_id = ? AND actor_id = ?"
            " AND erased_at IS NULL ORDER BY updated_at",
            (tenant_id, actor_id),
        )
        return [h for (h,) in rows]

    def erase_actor_identity(
        self, tenant_id: str, lookup: str, actor_id: str, erased_at: int
    ) -> int:
        """Delete the actor's secret, tombstone every directory row naming
        them, and bump the tenant's directory epoch, in one transaction.
        Returns how many directory rows (hashes) were tombstoned."""
        with self._admin_tx() as conn:
            conn.execute(
                "DELETE FROM actor_secrets WHERE tenant_id = ? AND lookup = ?", (tenant_id, lookup)
            )
            n = conn.execute(
                "UPDATE actors SET actor_id = NULL, actor_type = NULL, name = NULL, email = NULL,"
                " erased_at = ? WHERE tenant_id = ? AND actor_id = ? AND erased_at IS NULL",
                (erased_at, tenant_id, actor_id),
            ).rowcount
            conn.execute(
                "INSERT INTO tenant_settings (tenant_id, directory_epoch) VALUES (?, 1)"
                " ON CONFLICT (tenant_id) DO UPDATE SET directory_epoch = directory_epoch + 1",
                (tenant_id,),
            )
        return int(n)

    def directory_epoch(self, tenant_id: str) -> int:
        r = (
            self._conn()
            .execute(
                "SELECT directory_epoch FROM tenant_settings WHERE tenant_id = ?", (tenant_id,)
            )
            .fetchone()
        )
        return 0 if r is None else int(r[0])

    # -- redaction reasons -----------------------------------------------------
    def add_redaction(self, tenant_id: str, seq: int, reason: str, redacted_at: int) -> None:
        self._write(
            "INSERT INTO redactions (tenant_id, seq, reason, redacted_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (tenant_id, seq) DO NOTHING",
            (tenant_id, seq, reason, redacted_at),
        )

    def get_redaction(self, tenant_id: str, seq: int) -> tuple[str, int] | None:
        r = (
            self._conn()
            .execute(
                "SELECT reason, redacted_at FROM redactions WHERE tenant_id = ? AND seq = ?",
                (tenant_id, seq),
            )
            .fetchone()
        )
        return None if r is None else (str(r[0]), int(r[1]))

    # -- purge (retention) -------------------------------------------------------
    def purge_state(self, tenant_id: str) -> tuple[int, dict[tuple[int, int], bytes], list[Any]]:
        """(purged prefix size, its compact-range nodes, the kept proofs)."""
        from kimonaudit.core.purged import PrefixProof, prefix_nodes

        conn = self._conn()
        r = conn.execute("SELECT purged FROM tree_state WHERE tenant_id = ?", (tenant_id,))
        row = r.fetchone()
        if row is None:
            raise NotFound(f"no tenant {tenant_id!r}")
        purged = int(row[0])
        nodes: dict[tuple[int, int], bytes] = {}
        for level, idx in prefix_nodes(purged):
            h = conn.execute(
                "SELECT hash FROM tree_nodes WHERE tenant_id = ? AND level = ? AND idx = ?",
                (tenant_id, level, idx),
            ).fetchone()
            if h is not None:
                nodes[(level, idx)] = bytes(h[0])
        proofs = [
            PrefixProof(int(o), int(n), bytes(root), split_hashes(bytes(blob)))
            for o, n, root, blob in conn.execute(
                "SELECT old_size, new_size, old_root, proof FROM purge_proofs"
                " WHERE tenant_id = ? ORDER BY new_size, old_size",
                (tenant_id,),
            )
        ]
        return purged, nodes, proofs

    def begin_purge(
        self,
        tenant_id: str,
        upto: int,
        nodes: Sequence[tuple[int, int, bytes]],
        proofs: Sequence[Any],
    ) -> None:
        """Keep the prefix's compact range and proofs and move the purge
        point to `upto`, in one transaction; rows go afterwards."""
        with self._admin_tx() as conn:
            (cur,) = conn.execute(
                "SELECT purged FROM tree_state WHERE tenant_id = ?", (tenant_id,)
            ).fetchone()
            if upto <= cur:
                raise Conflict(f"tenant {tenant_id} is already purged up to {cur}")
            conn.executemany(
                "INSERT OR REPLACE INTO tree_nodes (tenant_id, level, idx, hash)"
                " VALUES (?, ?, ?, ?)",
                [(tenant_id, lvl, idx, h) for lvl, idx, h in nodes],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO purge_proofs VALUES (?, ?, ?, ?, ?)",
                [
                    (tenant_id, p.old_size, p.new_size, p.old_root, b"".join(p.proof))
                    for p in proofs
                ],
            )
            conn.execute("UPDATE tree_state SET purged = ? WHERE tenant_id = ?", (upto, tenant_id))

    def delete_purged(self, tenant_id: str, upto: int, batch: int) -> int:
        """Delete up to `batch` entries with seq < `upto` from the search
        projection and the ledger; returns how many went.

        Each in a short transaction of its own, so that appends never wait
        for the slow part: the rows are read first (no lock), the projection
        is cleaned on a connection to the index file alone (its
        contentless full-text index is told each document, recomputed from
        the row, so the ledger row must still exist then), and only the
        ledger delete, a ranged delete by key, takes the ledger's write
        lock, queued with the appends on the writer thread. A crash between
        the two leaves rows that the next run takes out again: cleaning the
        projection twice is harmless (documents not in it are skipped)."""
        from kimonaudit.store.sqlite_index import drop_rows, ledger_rows

        tno = self.tenant_no(tenant_id)  # type: ignore[attr-defined]
        lo, _ = self._span(tenant_id, 0, upto)  # type: ignore[attr-defined]
        conn = self._conn()
        first = conn.execute(
            "SELECT rid FROM ledger WHERE rid >= ? AND rid < ? ORDER BY rid LIMIT 1",
            (lo, lo + upto),
        ).fetchone()
        if first is None:
            return 0
        start = first[0] - lo
        rows = ledger_rows(conn, tno, start, min(upto, start + batch))
        if not rows:
            return 0
        idx = sqlite3.connect(self.index_file, isolation_level=None, timeout=30)
        try:
            idx.execute("PRAGMA busy_timeout=30000")
            idx.execute("PRAGMA synchronous=NORMAL")  # as the indexer: rebuilt from the ledger
            idx.execute("BEGIN IMMEDIATE")
            try:
                drop_rows(idx, tno, rows, schema="")
                idx.execute("COMMIT")
            except BaseException:
                idx.execute("ROLLBACK")
                raise
        finally:
            idx.close()
        first_rid, last_rid = lo + rows[0].seq, lo + rows[-1].seq
        self._writer.run(
            lambda s: s.conn.execute(
                "DELETE FROM ledger WHERE rid >= ? AND rid <= ?", (first_rid, last_rid)
            )
        )
        return len(rows)

    def delete_purged_nodes(
        self,
        tenant_id: str,
        upto: int,
        keep: Sequence[tuple[int, int]],
        batch: int,
        since: int = 0,
    ) -> int:
        """Delete stored subtree hashes lying wholly inside [0, upto) except
        `keep` (the compact range and what old checkpoints' proofs need),
        `batch` at most per transaction, scanning only past what the purge
        up to `since` (the earlier purge point) left: the rest of [0, since)
        was pruned then. The rows are found by a read first,
        so the write lock (taken on the writer thread, queued with appends)
        is held only for deletes by key."""
        kept = set(keep)
        conn = self._conn()
        gone = 0
        for level in range(upto.bit_length() + 1):
            end = upto >> level  # nodes [0, end) of this level lie inside the prefix
            # Nodes wholly inside [0, since) were pruned by the purge up to
            # there, except what it kept: of that, only its compact range
            # (node (since >> level) - 1 of a level) may no longer be needed.
            after = (since >> level) - 2
            while True:
                idxs = [
                    int(i)
                    for (i,) in conn.execute(
                        "SELECT idx FROM tree_nodes WHERE tenant_id = ? AND level = ?"
                        " AND idx > ? AND idx < ? ORDER BY idx LIMIT ?",
                        (tenant_id, level, after, end, batch),
                    )
                ]
                if not idxs:
                    break
                after = idxs[-1]
                doomed = [(tenant_id, level, i) for i in idxs if (level, i) not in kept]
                if doomed:
                    self._writer.run(functools.partial(_delete_nodes, doomed))
                    gone += len(doomed)
        self._write("DELETE FROM redactions WHERE tenant_id = ? AND seq < ?", (tenant_id, upto))
        return gone

    def reclaim_space(self, max_pages: int) -> int:
        """Hand up to `max_pages` free pages back to the file system (files
        created with auto_vacuum=INCREMENTAL, as this store makes them;
        otherwise freed pages are reused by new entries). Returns how many.
        On the writer thread, queued with appends: moving pages holds the
        write lock, so callers take small steps."""
        conn = self._conn()
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:
            return 0

        def step(s: Any) -> int:
            c = s.conn
            before = c.execute("PRAGMA freelist_count").fetchone()[0]
            # executescript steps the pragma to completion (execute stops
            # after one page); it commits by itself, hence no transaction.
            c.executescript(f"PRAGMA incremental_vacuum({int(max_pages)});")
            return int(before - c.execute("PRAGMA freelist_count").fetchone()[0])

        n: int = self._writer.run(step, transaction=False)
        return n

    def retention_stats(self, tenant_id: str) -> tuple[int | None, int, int]:
        """(recorded_at of the oldest retained entry or None, entries, bytes)
        where bytes estimates the ledger space the tenant's entries use."""
        conn = self._conn()
        lo, hi = self._span(tenant_id, 0, None)  # type: ignore[attr-defined]
        first = conn.execute(
            "SELECT recorded_at FROM ledger WHERE rid >= ? AND rid < ? ORDER BY rid LIMIT 1",
            (lo, hi),
        ).fetchone()
        n, size = conn.execute(
            "SELECT count(*), coalesce(sum(coalesce(length(payload), 0)"
            " + length(event_id) + length(action) + 160), 0) FROM ledger"
            " WHERE rid >= ? AND rid < ?",
            (lo, hi),
        ).fetchone()
        return (None if first is None else int(first[0])), int(n), int(size)


def _delete_nodes(keys: list[tuple[str, int, int]], session: Any) -> None:
    session.conn.executemany(
        "DELETE FROM tree_nodes WHERE tenant_id = ? AND level = ? AND idx = ?", keys
    )


def split_hashes(blob: bytes) -> tuple[bytes, ...]:
    return tuple(blob[i : i + 32] for i in range(0, len(blob), 32))
