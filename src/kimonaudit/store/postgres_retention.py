"""Retention settings, actor secrets and redaction reasons in the
PostgreSQL store. A mixin that PostgresStore inherits (issue 8); see
sqlite_retention.py for what each method promises."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from kimonaudit.errors import NotFound


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

    def create_actor_secret(self, tenant_id: str, lookup: str, secret: bytes, now: int) -> bytes:
        r = self._one(
            "creating an actor secret",
            "WITH ins AS (INSERT INTO actor_secrets (tenant_id, lookup, secret, created_at)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT (tenant_id, lookup) DO NOTHING RETURNING secret)"
            " SELECT secret FROM ins UNION ALL SELECT secret FROM actor_secrets"
            " WHERE tenant_id = %s AND lookup = %s LIMIT 1",
            (tenant_id, lookup, secret, now, tenant_id, lookup),
        )
        if r is None:  # lost a race to a concurrent erasure: read again
            again = self.actor_secret(tenant_id, lookup)
            return secret if again is None else again
        return bytes(r[0])

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
