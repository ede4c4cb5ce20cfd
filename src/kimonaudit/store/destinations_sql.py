"""The streaming tables (destinations, their delivery state: cursor, lease
and health, and lag samples) over any SQL store. The statements are
written once with ``?`` marks; each backend's mixin
(`sqlite_destinations`, `postgres_destinations`) supplies three primitives
that run them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import astuple
from typing import Any

from kimonaudit.core.destination_records import (
    DELIVERY_COLUMNS,
    DESTINATION_COLUMNS,
    DeliveryState,
    DestinationRecord,
)
from kimonaudit.core.records import CheckpointRecord

# Runs one statement inside a transaction; returns the rows it touched.
TxExec = Callable[[str, Sequence[object]], int]

_DEST = ", ".join(DESTINATION_COLUMNS)
_DELIV = ", ".join(DELIVERY_COLUMNS)
_DEST_MARKS = ", ".join("?" * len(DESTINATION_COLUMNS))
_DELIV_MARKS = ", ".join("?" * len(DELIVERY_COLUMNS))
# Everything but the key and the lease, which only a lease holder sets.
_STATE_SET = ", ".join(f"{c} = ?" for c in DELIVERY_COLUMNS[2:] if not c.startswith("lease_"))
_STATE_FIELDS = [c for c in DELIVERY_COLUMNS[2:] if not c.startswith("lease_")]


def _dest(r: Sequence[Any]) -> DestinationRecord:
    r = list(r)
    r[6] = bytes(r[6])
    return DestinationRecord(*r)


class DestinationSQL:
    # The primitives, from the backend mixin. Statements use "?" marks.
    def _d_rows(self, sql: str, params: Sequence[object] = ()) -> list[Sequence[Any]]:
        raise NotImplementedError

    def _d_write(self, sql: str, params: Sequence[object] = ()) -> int:
        """One statement in its own transaction; rows touched."""
        raise NotImplementedError

    def _d_tx(self) -> AbstractContextManager[TxExec]:
        """A transaction; raises Conflict on a key clash."""
        raise NotImplementedError

    def _d_one(self, sql: str, params: Sequence[object]) -> Sequence[Any] | None:
        rows = self._d_rows(sql, params)
        return rows[0] if rows else None

    # -- destinations --------------------------------------------------------
    def insert_destination(self, dest: DestinationRecord, delivery: DeliveryState) -> None:
        with self._d_tx() as run:
            run(f"INSERT INTO destinations ({_DEST}) VALUES ({_DEST_MARKS})", astuple(dest))  # noqa: S608
            run(
                f"INSERT INTO destination_delivery ({_DELIV}) VALUES ({_DELIV_MARKS})",  # noqa: S608
                astuple(delivery),
            )

    def get_destination(self, tenant_id: str, destination_id: str) -> DestinationRecord | None:
        r = self._d_one(
            f"SELECT {_DEST} FROM destinations WHERE tenant_id = ? AND destination_id = ?",  # noqa: S608
            (tenant_id, destination_id),
        )
        return None if r is None else _dest(r)

    def list_destinations(self, tenant_id: str | None = None) -> list[DestinationRecord]:
        """The tenant's destinations by creation; every tenant's when None
        (the delivery scheduler's view)."""
        if tenant_id is None:
            rows = self._d_rows(
                f"SELECT {_DEST} FROM destinations ORDER BY tenant_id, created_at, destination_id"  # noqa: S608
            )
        else:
            rows = self._d_rows(
                f"SELECT {_DEST} FROM destinations WHERE tenant_id = ?"  # noqa: S608
                " ORDER BY created_at, destination_id",
                (tenant_id,),
            )
        return [_dest(r) for r in rows]

    def update_destination(self, dest: DestinationRecord) -> bool:
        """Replace name, format, config, secrets, state and reason."""
        d = dest
        return bool(
            self._d_write(
                "UPDATE destinations SET name = ?, format = ?, config = ?, sealed = ?, state = ?,"
                " state_reason = ?, updated_at = ? WHERE tenant_id = ? AND destination_id = ?",
                (
                    d.name,
                    d.format,
                    d.config,
                    d.sealed,
                    d.state,
                    d.state_reason,
                    d.updated_at,
                    d.tenant_id,
                    d.destination_id,
                ),
            )
        )

    def update_destination_config(self, dest: DestinationRecord) -> bool:
        """Replace name, format, config and secrets, leaving the state alone
        (delivery may pause the destination meanwhile)."""
        d = dest
        return bool(
            self._d_write(
                "UPDATE destinations SET name = ?, format = ?, config = ?, sealed = ?,"
                " updated_at = ? WHERE tenant_id = ? AND destination_id = ?",
                (d.name, d.format, d.config, d.sealed, d.updated_at, d.tenant_id, d.destination_id),
            )
        )

    def set_destination_state(
        self, tenant_id: str, destination_id: str, state: str, reason: str | None, at: int
    ) -> bool:
        return bool(
            self._d_write(
                "UPDATE destinations SET state = ?, state_reason = ?, updated_at = ?"
                " WHERE tenant_id = ? AND destination_id = ?",
                (state, reason, at, tenant_id, destination_id),
            )
        )

    def delete_destination(self, tenant_id: str, destination_id: str) -> bool:
        with self._d_tx() as run:
            n = run(
                "DELETE FROM destinations WHERE tenant_id = ? AND destination_id = ?",
                (tenant_id, destination_id),
            )
            for table in ("destination_delivery", "destination_lag"):
                run(
                    f"DELETE FROM {table} WHERE tenant_id = ? AND destination_id = ?",  # noqa: S608
                    (tenant_id, destination_id),
                )
        return bool(n)

    # -- delivery state ------------------------------------------------------
    def get_delivery(self, tenant_id: str, destination_id: str) -> DeliveryState | None:
        r = self._d_one(
            f"SELECT {_DELIV} FROM destination_delivery"  # noqa: S608
            " WHERE tenant_id = ? AND destination_id = ?",
            (tenant_id, destination_id),
        )
        return None if r is None else DeliveryState(*r)

    def acquire_lease(
        self, tenant_id: str, destination_id: str, owner: str, now: int, until: int
    ) -> bool:
        """Take or renew the lease if it is free, expired or already ours."""
        return bool(
            self._d_write(
                "UPDATE destination_delivery SET lease_owner = ?, lease_until = ?"
                " WHERE tenant_id = ? AND destination_id = ?"
                " AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?)",
                (owner, until, tenant_id, destination_id, owner, now),
            )
        )

    def release_lease(self, tenant_id: str, destination_id: str, owner: str) -> None:
        self._d_write(
            "UPDATE destination_delivery SET lease_owner = NULL, lease_until = 0"
            " WHERE tenant_id = ? AND destination_id = ? AND lease_owner = ?",
            (tenant_id, destination_id, owner),
        )

    def retry_now(self, tenant_id: str, destination_id: str, reset_attempts: bool) -> bool:
        """Make a waiting retry due now (and restart the schedule if
        `reset_attempts`), touching nothing else: a delivery that finishes
        meanwhile keeps the cursor it wrote."""
        sql = "UPDATE destination_delivery SET next_attempt_at = 0"
        if reset_attempts:
            sql += ", attempts = 0"
        return bool(
            self._d_write(
                sql + " WHERE tenant_id = ? AND destination_id = ?", (tenant_id, destination_id)
            )
        )

    def save_delivery(self, state: DeliveryState, owner: str | None) -> bool:
        """Write the delivery state; with an `owner`, only while that owner
        holds the lease (False otherwise: another process took over)."""
        values = [getattr(state, c) for c in _STATE_FIELDS]
        sql = (
            f"UPDATE destination_delivery SET {_STATE_SET}"  # noqa: S608
            " WHERE tenant_id = ? AND destination_id = ?"
        )
        params: list[object] = [*values, state.tenant_id, state.destination_id]
        if owner is not None:
            sql += " AND lease_owner = ?"
            params.append(owner)
        return bool(self._d_write(sql, params))

    # -- lag samples ---------------------------------------------------------
    def add_lag_sample(
        self,
        tenant_id: str,
        destination_id: str,
        at: int,
        lag_events: int,
        lag_seconds: float,
        keep_after: int,
    ) -> None:
        with self._d_tx() as run:
            run(
                "INSERT INTO destination_lag VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (tenant_id, destination_id, at) DO UPDATE SET"
                " lag_events = excluded.lag_events, lag_seconds = excluded.lag_seconds",
                (tenant_id, destination_id, at, lag_events, lag_seconds),
            )
            run(
                "DELETE FROM destination_lag WHERE tenant_id = ? AND destination_id = ? AND at < ?",
                (tenant_id, destination_id, keep_after),
            )

    def lag_samples(
        self, tenant_id: str, destination_id: str, since: int
    ) -> list[tuple[int, int, float]]:
        rows = self._d_rows(
            "SELECT at, lag_events, lag_seconds FROM destination_lag"
            " WHERE tenant_id = ? AND destination_id = ? AND at >= ? ORDER BY at",
            (tenant_id, destination_id, since),
        )
        return [(int(a), int(e), float(s)) for a, e, s in rows]

    # -- what delivery reads beside the ledger -------------------------------
    def checkpoints_between(
        self, tenant_id: str, above: int, upto: int, limit: int = 10_000
    ) -> list[CheckpointRecord]:
        """Checkpoints with above < size <= upto, oldest first, at most `limit`."""
        rows = self._d_rows(
            "SELECT tenant_id, size, root, note, issued_at, key_id FROM checkpoints"
            " WHERE tenant_id = ? AND size > ? AND size <= ? ORDER BY size LIMIT ?",
            (tenant_id, above, upto, limit),
        )
        return [CheckpointRecord(r[0], r[1], bytes(r[2]), r[3], r[4], r[5]) for r in rows]

    def delivery_floor(self, tenant_id: str) -> int | None:
        """The lowest seq an active destination of the tenant still has to
        deliver (None if none is active): retention must not purge at or
        above it (a paused or disabled destination holds nothing back)."""
        r = self._d_one(
            "SELECT min(d.next_seq) FROM destination_delivery d JOIN destinations x"
            " ON x.tenant_id = d.tenant_id AND x.destination_id = d.destination_id"
            " WHERE d.tenant_id = ? AND x.state = 'active'",
            (tenant_id,),
        )
        return None if r is None or r[0] is None else int(r[0])
