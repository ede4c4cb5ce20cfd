"""Retention settings, actor secrets and redaction reasons in the SQLite
store. A mixin that SQLiteStore inherits (issue 8); it uses the store's
reader connection and its small administrative writes."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from kimonaudit.errors import NotFound


class SQLiteRetentionStore:
    # Provided by SQLiteStore, which lists this class after itself.
    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    def _write(self, sql: str, params: Sequence[object] = ()) -> int:
        raise NotImplementedError

    # -- plans and retention -------------------------------------------------
    def set_retention(self, tenant_id: str, plan: str, custom: int | None, effective: int) -> None:
        """Store a tenant's plan, its own retention (None: the plan's) and
        the retention in force."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
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
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
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

    def create_actor_secret(self, tenant_id: str, lookup: str, secret: bytes, now: int) -> bytes:
        """Store `secret` unless the actor has one; return the one that won
        (two processes meeting a new actor at once agree on it)."""
        self._write(
            "INSERT INTO actor_secrets (tenant_id, lookup, secret, created_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (tenant_id, lookup) DO NOTHING",
            (tenant_id, lookup, secret, now),
        )
        won = self.actor_secret(tenant_id, lookup)
        assert won is not None
        return won

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
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
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
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
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
