"""The streaming tables in the PostgreSQL store (see `destinations_sql`).
A mixin that PostgresStore inherits, over the store's autocommit pool.

Every key starts with tenant_id, so the tables distribute by tenant on
Citus like the rest (docs/scaling.md). The delivery lease is a row
update (compare-and-set on lease_owner/lease_until), so several `serve`
processes on one database agree on who delivers a destination.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from kimonaudit.errors import Conflict
from kimonaudit.store.destinations_sql import DestinationSQL, TxExec


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


class PostgresDestinationStore(DestinationSQL):
    # Provided by PostgresStore, which lists this class after itself.
    def _read(self, what: str) -> AbstractContextManager[psycopg.Connection[Any]]:
        raise NotImplementedError

    def _d_rows(self, sql: str, params: Sequence[object] = ()) -> list[Sequence[Any]]:
        with self._read("reading destinations") as conn:
            return conn.execute(_pg(sql), params).fetchall()

    def _d_write(self, sql: str, params: Sequence[object] = ()) -> int:
        with self._read("writing destinations") as conn:
            return conn.execute(_pg(sql), params).rowcount

    @contextmanager
    def _d_tx(self) -> Iterator[TxExec]:
        with self._read("writing destinations") as conn:
            try:
                with conn.transaction():
                    yield lambda sql, params: conn.execute(_pg(sql), params).rowcount
            except pgerrors.UniqueViolation as exc:
                raise Conflict(f"already exists: {exc.diag.message_detail}") from exc
