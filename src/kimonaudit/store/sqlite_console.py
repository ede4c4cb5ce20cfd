"""The console's tables in the SQLite store (users, sessions, saved
searches). A mixin that SQLiteStore inherits; it uses the store's reader
connection and its small administrative writes."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from kimonaudit.core.console_records import ConsoleSession, ConsoleUser, SavedSearch
from kimonaudit.errors import Conflict

_USER_COLS = "tenant_id, user_id, email, password_hash, role, created_at, disabled_at"
_SESSION_COLS = "tenant_id, token_hash, user_id, csrf_secret, created_at, expires_at"
_SEARCH_COLS = "tenant_id, search_id, user_id, name, query, created_at"


def _user(r: Sequence[Any]) -> ConsoleUser:
    return ConsoleUser(*r)


def _session(r: Sequence[Any]) -> ConsoleSession:
    return ConsoleSession(r[0], bytes(r[1]), r[2], bytes(r[3]), r[4], r[5])


class SQLiteConsoleStore:
    # Provided by SQLiteStore, which lists this class after itself.
    def _conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    def _write(self, sql: str, params: Sequence[object] = ()) -> int:
        raise NotImplementedError

    # -- users -------------------------------------------------------------
    def insert_console_user(self, user: ConsoleUser) -> None:
        try:
            self._write(
                f"INSERT INTO console_users ({_USER_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
                (
                    user.tenant_id,
                    user.user_id,
                    user.email,
                    user.password_hash,
                    user.role,
                    user.created_at,
                    user.disabled_at,
                ),
            )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"a console user {user.email!r} already exists in this tenant") from exc

    def get_console_user(self, tenant_id: str, user_id: str) -> ConsoleUser | None:
        r = (
            self._conn()
            .execute(
                f"SELECT {_USER_COLS} FROM console_users WHERE tenant_id = ? AND user_id = ?",  # noqa: S608
                (tenant_id, user_id),
            )
            .fetchone()
        )
        return None if r is None else _user(r)

    def find_console_user(self, tenant_id: str, email: str) -> ConsoleUser | None:
        r = (
            self._conn()
            .execute(
                f"SELECT {_USER_COLS} FROM console_users WHERE tenant_id = ? AND email = ?",  # noqa: S608
                (tenant_id, email),
            )
            .fetchone()
        )
        return None if r is None else _user(r)

    def list_console_users(self, tenant_id: str) -> list[ConsoleUser]:
        rows = self._conn().execute(
            f"SELECT {_USER_COLS} FROM console_users WHERE tenant_id = ?"  # noqa: S608
            " ORDER BY created_at, user_id",
            (tenant_id,),
        )
        return [_user(r) for r in rows]

    def set_console_user_disabled(
        self, tenant_id: str, user_id: str, disabled_at: int | None
    ) -> bool:
        return bool(
            self._write(
                "UPDATE console_users SET disabled_at = ? WHERE tenant_id = ? AND user_id = ?",
                (disabled_at, tenant_id, user_id),
            )
        )

    def set_console_password(self, tenant_id: str, user_id: str, password_hash: str) -> bool:
        return bool(
            self._write(
                "UPDATE console_users SET password_hash = ? WHERE tenant_id = ? AND user_id = ?",
                (password_hash, tenant_id, user_id),
            )
        )

    # -- sessions ----------------------------------------------------------
    def insert_console_session(self, session: ConsoleSession) -> None:
        s = session
        self._write(
            f"INSERT INTO console_sessions ({_SESSION_COLS}) VALUES (?, ?, ?, ?, ?, ?)",  # noqa: S608
            (s.tenant_id, s.token_hash, s.user_id, s.csrf_secret, s.created_at, s.expires_at),
        )

    def get_console_session(self, tenant_id: str, token_hash: bytes) -> ConsoleSession | None:
        r = (
            self._conn()
            .execute(
                f"SELECT {_SESSION_COLS} FROM console_sessions"  # noqa: S608
                " WHERE tenant_id = ? AND token_hash = ?",
                (tenant_id, token_hash),
            )
            .fetchone()
        )
        return None if r is None else _session(r)

    def delete_console_session(self, tenant_id: str, token_hash: bytes) -> bool:
        return bool(
            self._write(
                "DELETE FROM console_sessions WHERE tenant_id = ? AND token_hash = ?",
                (tenant_id, token_hash),
            )
        )

    def delete_console_sessions(self, tenant_id: str, user_id: str) -> int:
        return self._write(
            "DELETE FROM console_sessions WHERE tenant_id = ? AND user_id = ?",
            (tenant_id, user_id),
        )

    def purge_console_sessions(self, tenant_id: str, now: int) -> int:
        return self._write(
            "DELETE FROM console_sessions WHERE tenant_id = ? AND expires_at <= ?",
            (tenant_id, now),
        )

    # -- saved searches ----------------------------------------------------
    def insert_saved_search(self, search: SavedSearch) -> None:
        s = search
        try:
            self._write(
                f"INSERT INTO console_saved_searches ({_SEARCH_COLS})"  # noqa: S608
                " VALUES (?, ?, ?, ?, ?, ?)",
                (s.tenant_id, s.search_id, s.user_id, s.name, s.query, s.created_at),
            )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"you already have a saved search named {s.name!r}") from exc

    def list_saved_searches(self, tenant_id: str, user_id: str) -> list[SavedSearch]:
        rows = self._conn().execute(
            f"SELECT {_SEARCH_COLS} FROM console_saved_searches"  # noqa: S608
            " WHERE tenant_id = ? AND user_id = ? ORDER BY name, search_id",
            (tenant_id, user_id),
        )
        return [SavedSearch(*r) for r in rows]

    def delete_saved_search(self, tenant_id: str, user_id: str, search_id: str) -> bool:
        return bool(
            self._write(
                "DELETE FROM console_saved_searches"
                " WHERE tenant_id = ? AND user_id = ? AND search_id = ?",
                (tenant_id, user_id, search_id),
            )
        )
