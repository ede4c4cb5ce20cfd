"""The streaming tables in the SQLite store (see `destinations_sql`). A
mixin that SQLiteStore inherits: reads on the store's reader connection,
writes in short ``BEGIN IMMEDIATE`` transactions beside the writer thread,
on a connection without the index file attached (`SQLiteStore._admin_tx`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from kimonaudit.errors import Conflict
from kimonaudit.store.destinations_sql import DestinationSQL, TxExec


class SQLiteDestinationStore(DestinationSQL):
    # Provided by SQLiteStore, which lists this class after itself.
    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    def _admin_tx(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    def _d_rows(self, sql: str, params: Sequence[object] = ()) -> list[Sequence[Any]]:
        return self._conn().execute(sql, params).fetchall()

    def _d_write(self, sql: str, params: Sequence[object] = ()) -> int:
        with self._d_tx() as run:
            return run(sql, params)

    @contextmanager
    def _d_tx(self) -> Iterator[TxExec]:
        try:
            with self._admin_tx() as conn:
                yield lambda sql, params: conn.execute(sql, params).rowcount
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"already exists: {exc}") from exc
