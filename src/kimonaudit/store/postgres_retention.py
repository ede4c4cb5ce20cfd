"""Retention settings, actor secrets and redaction reasons in the
PostgreSQL store. A mixin that PostgresStore inherits (issue 8); see
sqlite_retention.py for what each method promises."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from kimonaudit.errors import Conflict, NotFound, StoreError


class PostgresRetentionStore:
    # Provided by PostgresStore, which lists this class after itself.
    def _read(self, what: str) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _exec(self, what: str, sql: str, params: Sequence[object] = ()) -> int:
        raise NotImplementedError

    def _one(self, what: str, sql: str, params: Sequence[object]) -> Sequence[Any] | None:
        with self._read(what) as conn:
            row: Sequence[Any] | None = conn.execute(sql, params).fetchone()
            return row

    # -- plans and retention -------------------------------------------------
    def set_retention(self, tenant_id: str, plan: str, custom: int | None, effective: int) -> None:
        with self._read("changing a tenant's retention") as conn, conn.transaction():
            n = conn.execute(
                "UPDATE tenants SET plan = %s, retention_months = %s WHERE tenant_id = %s",
                (plan, effective, tenant_id),
            ).rowcount
            if n:
                conn.execute(
                    "INSERT INTO tenant_settings (tenant_id, retention_custom) VALUES (%s, %s)"
                    " ON CONFLICT (tenant_id) DO UPDATE"
                    " SET retention_custom = excluded.retention_custom",
                    (tenant_id, custom),
                )
        if not n:
            raise NotFound(f"no tenant {tenant_id!r}")

    def retention_custom(self, tenant_id: str) -> int | None:
        r = self._one(
            "reading a tenant's retention",
            "SELECT retention_custom FROM tenant_settings WHERE tenant_id = %s",
            (tenant_id,),
        )
        return None if r is None or r[0] is None else int(r[0])

    # -- actor secrets (erasure that unlinks) ----------------------------------
    def actor_secret(self, tenant_id: str, lookup: str) -> bytes | None:
        r = self._one(
            "reading an actor secret",
            "SELECT secret FROM actor_secrets WHERE tenant_id = %s AND lookup = %s",
            (tenant_id, lookup),
        )
        return None if r is None else bytes(r[0])

    def actor_secrets(self, tenant_id: str, lookups: Sequence[str]) -> dict[str, bytes]:
        """The secrets of those of `lookups` that have one."""
        with self._read("reading actor secrets") as conn:
            rows = conn.execute(
                "SELECT lookup, secret FROM actor_secrets"
                " WHERE tenant_id = %s AND lookup = ANY(%s)",
                (tenant_id, list(lookups)),
            ).fetchall()
        return {lookup: bytes(secret) for lookup, secret in rows}

    def create_actor_secrets(self, tenant_id: str, fresh: Mapping[str, bytes], now: int) -> None:
        """Store each of `fresh` (lookup -> secret) unless the actor has a
        secret already, in one transaction (`ActorHashes` reads back which
        secret won)."""
        # In the lookups' order: an insert meeting a row another open
        # transaction inserted waits for that transaction, so two batches
        # inserting overlapping actors in different orders would each wait
        # for the other (deadlock detected, one batch failed). In one order,
        # the later simply waits for the earlier.
        with self._read("creating actor secrets") as conn, conn.transaction():
            conn.cursor().executemany(
                "INSERT INTO actor_secrets (tenant_id, lookup, secret, created_at)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT (tenant_id, lookup) DO NOTHING",
                [(tenant_id, lookup, fresh[lookup], now) for lookup in sorted(fresh)],
            )

    def actor_hashes_of(self, tenant_id: str, actor_id: str) -> list[str]:
        with self._read("reading the actor directory") as conn:
            rows = conn.execute(
                "SELECT actor_hash FROM actors WHERE tenant_id = %s AND actor_id = %s"
                " AND erased_at IS NULL ORDER BY updated_at",
                (tenant_id, actor_id),
            ).fetchall()
        return [h for (h,) in rows]

    def erase_actor_identity(
        self, tenant_id: str, lookup: str, actor_id: str, erased_at: int
    ) -> int:
        with self._read("erasing an actor") as conn, conn.transaction():
            conn.execute(
                "DELETE FROM actor_secrets WHERE tenant_id = %s AND lookup = %s",
                (tenant_id, lookup),
            )
            n = conn.execute(
                "UPDATE actors SET actor_id = NULL, actor_type = NULL, name = NULL, email = NULL,"
                " erased_at = %s WHERE tenant_id = %s AND actor_id = %s AND erased_at IS NULL",
                (erased_at, tenant_id, actor_id),
            ).rowcount
            conn.execute(
                "INSERT INTO tenant_settings (tenant_id, directory_epoch) VALUES (%s, 1)"
                " ON CONFLICT (tenant_id) DO UPDATE"
                " SET directory_epoch = tenant_settings.directory_epoch + 1",
                (tenant_id,),
            )
        return int(n)

    def directory_epoch(self, tenant_id: str) -> int:
        r = self._one(
            "reading the directory epoch",
            "SELECT directory_epoch FROM tenant_settings WHERE tenant_id = %s",
            (tenant_id,),
        )
        return 0 if r is None else int(r[0])

    # -- redaction reasons -----------------------------------------------------
    def add_redaction(self, tenant_id: str, seq: int, reason: str, redacted_at: int) -> None:
        self._exec(
            "recording a redaction",
            "INSERT INTO redactions (tenant_id, seq, reason, redacted_at)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (tenant_id, seq) DO NOTHING",
            (tenant_id, seq, reason, redacted_at),
        )

    def get_redaction(self, tenant_id: str, seq: int) -> tuple[str, int] | None:
        r = self._one(
            "reading a redaction",
            "SELECT reason, redacted_at FROM redactions WHERE tenant_id = %s AND seq = %s",
            (tenant_id, seq),
        )
        return None if r is None else (str(r[0]), int(r[1]))

    # -- purge (retention) -------------------------------------------------------
    def purge_state(self, tenant_id: str) -> tuple[int, dict[tuple[int, int], bytes], list[Any]]:
        from kimonaudit.core.purged import PrefixProof, prefix_nodes
        from kimonaudit.store.sqlite_retention import split_hashes

        with self._read("reading the purge state") as conn:
            row = conn.execute(
                "SELECT purged FROM tree_state WHERE tenant_id = %s", (tenant_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no tenant {tenant_id!r}")
            purged = int(row[0])
            keys = prefix_nodes(purged)
            nodes: dict[tuple[int, int], bytes] = {}
            if keys:
                for level, idx, h in conn.execute(
                    "SELECT level, idx, hash FROM tree_nodes WHERE tenant_id = %s"
                    " AND (level, idx) IN (SELECT * FROM unnest(%s::int[], %s::bigint[]))",
                    (tenant_id, [k[0] for k in keys], [k[1] for k in keys]),
                ):
                    nodes[(int(level), int(idx))] = bytes(h)
            proofs = [
                PrefixProof(int(o), int(n), bytes(root), split_hashes(bytes(blob)))
                for o, n, root, blob in conn.execute(
                    "SELECT old_size, new_size, old_root, proof FROM purge_proofs"
                    " WHERE tenant_id = %s ORDER BY new_size, old_size",
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
        with self._read("starting a purge") as conn, conn.transaction():
            # The same row lock the writer takes: appends wait for this commit.
            row = conn.execute(
                "SELECT purged FROM tree_state WHERE tenant_id = %s FOR UPDATE", (tenant_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no tenant {tenant_id!r}")
            if upto <= int(row[0]):
                raise Conflict(f"tenant {tenant_id} is already purged up to {row[0]}")
            cur = conn.cursor()
            cur.executemany(
                "INSERT INTO tree_nodes (tenant_id, level, idx, hash) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (tenant_id, level, idx) DO UPDATE SET hash = excluded.hash",
                [(tenant_id, lvl, idx, h) for lvl, idx, h in nodes],
            )
            cur.executemany(
                "INSERT INTO purge_proofs VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (tenant_id, old_size, new_size) DO NOTHING",
                [
                    (tenant_id, p.old_size, p.new_size, p.old_root, b"".join(p.proof))
                    for p in proofs
                ],
            )
            conn.execute(
                "UPDATE tree_state SET purged = %s WHERE tenant_id = %s", (upto, tenant_id)
            )

    def drop_purged_partitions(self, before_us: int) -> list[str]:
        """Drop every monthly partition ending at or before `before_us` all of
        whose rows lie in purged prefixes (whole partitions instead of row
        deletes); returns their names. Younger months are not even locked."""
        from kimonaudit.store.postgres_schema import month_bounds

        dropped: list[str] = []
        with self._read("listing partitions") as conn:
            names = [
                r[0]
                for r in conn.execute(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                    " JOIN pg_class p ON p.oid = i.inhparent"
                    " WHERE p.relname = 'entries' AND p.relnamespace = c.relnamespace"
                    " AND c.relnamespace = (SELECT oid FROM pg_namespace"
                    " WHERE nspname = current_schema()) AND c.relname LIKE 'entries_p%%'"
                    " ORDER BY c.relname"
                )
            ]
        for name in names:
            digits = name[len("entries_p") :]
            if len(digits) != 6 or not digits.isdigit():
                continue
            if month_bounds((int(digits[:4]), int(digits[4:])))[1] > before_us:
                continue
            with self._read("checking a partition") as conn:
                # Only a month every row of which is below its tenant's purge
                # point (no new row can land in a month that old).
                live = conn.execute(
                    f"SELECT 1 FROM {name} e JOIN tree_state s USING (tenant_id)"  # noqa: S608
                    " WHERE e.seq >= s.purged LIMIT 1"
                ).fetchone()
                empty = conn.execute(f"SELECT 1 FROM {name} LIMIT 1").fetchone() is None  # noqa: S608
            if live is not None or empty:
                continue
            # Parent first, as every reader locks them: no deadlock. While we
            # wait for the parent's lock, appends queue behind us, so wait
            # briefly and retry rather than stall ingest (the next run retries too).
            for attempt in range(20):
                try:
                    with self._read("dropping a purged partition") as conn, conn.transaction():
                        conn.execute("SET LOCAL lock_timeout = '100ms'")
                        conn.execute("LOCK TABLE entries IN ACCESS EXCLUSIVE MODE")
                        conn.execute(f"DROP TABLE {name}")
                except StoreError:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                dropped.append(name)
                break
        if dropped:
            self._partitions = set()  # type: ignore[attr-defined]  # re-read on next append
        return dropped

    def delete_purged(self, tenant_id: str, upto: int, batch: int) -> int:
        with self._read("purging entries") as conn, conn.transaction():
            # The tenant's row lock first, like every writer of `entries`
            # (docs/scaling.md): appends wait for this short batch only.
            conn.execute("SELECT 1 FROM tree_state WHERE tenant_id = %s FOR UPDATE", (tenant_id,))
            n = conn.execute(
                "DELETE FROM entries WHERE tenant_id = %s AND (seq, recorded_at) IN ("
                " SELECT seq, recorded_at FROM entries WHERE tenant_id = %s AND seq < %s"
                " ORDER BY seq LIMIT %s)",
                (tenant_id, tenant_id, upto, batch),
            ).rowcount
            conn.execute(
                "DELETE FROM event_ids WHERE tenant_id = %s AND seq < %s AND event_id IN ("
                " SELECT event_id FROM event_ids WHERE tenant_id = %s AND seq < %s LIMIT %s)",
                (tenant_id, upto, tenant_id, upto, batch),
            )
        return int(n)

    def delete_purged_nodes(
        self,
        tenant_id: str,
        upto: int,
        keep: Sequence[tuple[int, int]],
        batch: int,
        since: int = 0,
    ) -> int:
        """As SQLite's: every stored node wholly inside [0, upto) except
        `keep`, scanning only past what the purge up to `since` left,
        found by a read, deleted by key `batch` at most per transaction."""
        kept = set(keep)
        gone = 0
        for level in range(upto.bit_length() + 1):
            end = upto >> level
            # Nodes wholly inside [0, since) were pruned by the purge up to
            # there, except what it kept: of that, only its compact range
            # (node (since >> level) - 1 of a level) may no longer be needed.
            after = (since >> level) - 2
            while True:
                with self._read("listing purged tree nodes") as conn:
                    idxs = [
                        int(r[0])
                        for r in conn.execute(
                            "SELECT idx FROM tree_nodes WHERE tenant_id = %s AND level = %s"
                            " AND idx > %s AND idx < %s ORDER BY idx LIMIT %s",
                            (tenant_id, level, after, end, batch),
                        )
                    ]
                if not idxs:
                    break
                after = idxs[-1]
                doomed = [i for i in idxs if (level, i) not in kept]
                if doomed:
                    gone += self._exec(
                        "purging tree nodes",
                        "DELETE FROM tree_nodes WHERE tenant_id = %s AND level = %s"
                        " AND idx = ANY(%s)",
                        (tenant_id, level, doomed),
                    )
        self._exec(
            "purging redaction reasons",
            "DELETE FROM redactions WHERE tenant_id = %s AND seq < %s",
            (tenant_id, upto),
        )
        return gone

    def retention_stats(self, tenant_id: str) -> tuple[int | None, int, int]:
        with self._read("measuring a tenant") as conn:
            first = conn.execute(
                "SELECT recorded_at FROM entries WHERE tenant_id = %s ORDER BY seq LIMIT 1",
                (tenant_id,),
            ).fetchone()
            row = conn.execute(
                "SELECT count(*), coalesce(sum(pg_column_size(e.*)), 0) FROM entries e"
                " WHERE tenant_id = %s",
                (tenant_id,),
            ).fetchone()
        n, size = (0, 0) if row is None else (int(row[0]), int(row[1]))
        return (None if first is None else int(first[0])), n, size
