"""The console's tables in the PostgreSQL store (users, sessions, saved
searches). A mixin that PostgresStore inherits; each method is one
autocommit statement through the store's pool.

Every key starts with tenant_id, as everywhere in this schema, so the
tables distribute by tenant on Citus like the rest (docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
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


class PostgresConsoleStore:
    # Provided by PostgresStore, which lists this class after itself.
    def _read(self, what: str) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _exec(self, what: str, sql: str, params: Sequence[object] = ()) -> int:
        raise NotImplementedError

    def _console_rows(self, what: str, sql: str, params: Sequence[object]) -> list[Any]:
        with self._read(what) as conn:
            rows: list[Any] = conn.execute(sql, params).fetchall()
            return rows

    def _console_one(self, what: str, sql: str, params: Sequence[object]) -> Sequence[Any] | None:
        with self._read(what) as conn:
            row: Sequence[Any] | None = conn.execute(sql, params).fetchone()
            return row

    # -- users -------------------------------------------------------------
    def insert_console_user(self, user: ConsoleUser) -> None:
        u = user
        # ON CONFLICT DO NOTHING covers the e-mail index as well as the key;
        # user ids are random, so a clash is the e-mail.
        n = self._exec(
            "creating a console user",
            f"INSERT INTO console_users ({_USER_COLS}) VALUES (%s, %s, %s, %s, %s, %s, %s)"  # noqa: S608
            " ON CONFLICT DO NOTHING",
            (u.tenant_id, u.user_id, u.email, u.password_hash, u.role, u.created_at, u.disabled_at),
        )
        if n == 0:
            raise Conflict(f"a console user {u.email!r} already exists in this tenant")

    def get_console_user(self, tenant_id: str, user_id: str) -> ConsoleUser | None:
        r = self._console_one(
            "reading a console user",
            f"SELECT {_USER_COLS} FROM console_users WHERE tenant_id = %s AND user_id = %s",  # noqa: S608
            (tenant_id, user_id),
        )
        return None if r is None else _user(r)

    def find_console_user(self, tenant_id: str, email: str) -> ConsoleUser | None:
        r = self._console_one(
            "reading a console user",
            f"SELECT {_USER_COLS} FROM console_users WHERE tenant_id = %s AND email = %s",  # noqa: S608
            (tenant_id, email),
        )
        return None if r is None else _user(r)

    def list_console_users(self, tenant_id: str) -> list[ConsoleUser]:
        rows = self._console_rows(
            "listing console users",
            f"SELECT {_USER_COLS} FROM console_users WHERE tenant_id = %s"  # noqa: S608
            " ORDER BY created_at, user_id",
            (tenant_id,),
        )
        return [_user(r) for r in rows]

    def set_console_user_disabled(
        self, tenant_id: str, user_id: str, disabled_at: int | None
    ) -> bool:
        return bool(
            self._exec(
                "updating a console user",
                "UPDATE console_users SET disabled_at = %s WHERE tenant_id = %s AND user_id = %s",
                (disabled_at, tenant_id, user_id),
            )
        )

    def set_console_password(self, tenant_id: str, user_id: str, password_hash: str) -> bool:
        return bool(
            self._exec(
                "updating a console password",
                "UPDATE console_users SET password_hash = %s WHERE tenant_id = %s AND user_id = %s",
                (password_hash, tenant_id, user_id),
            )
        )

    # -- sessions ----------------------------------------------------------
    def insert_console_session(self, session: ConsoleSession) -> None:
        s = session
        self._exec(
            "creating a console session",
            f"INSERT INTO console_sessions ({_SESSION_COLS})"  # noqa: S608
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (s.tenant_id, s.token_hash, s.user_id, s.csrf_secret, s.created_at, s.expires_at),
        )

    def get_console_session(self, tenant_id: str, token_hash: bytes) -> ConsoleSession | None:
        r = self._console_one(
            "reading a console session",
            f"SELECT {_SESSION_COLS} FROM console_sessions"  # noqa: S608
            " WHERE tenant_id = %s AND token_hash = %s",
            (tenant_id, token_hash),
        )
        return None if r is None else _session(r)

    def delete_console_session(self, tenant_id: str, token_hash: bytes) -> bool:
        return bool(
            self._exec(
                "ending a console session",
                "DELETE FROM console_sessions WHERE tenant_id = %s AND token_hash = %s",
                (tenant_id, token_hash),
            )
        )

    def delete_console_sessions(self, tenant_id: str, user_id: str) -> int:
        return self._exec(
            "ending console sessions",
            "DELETE FROM console_sessions WHERE tenant_id = %s AND user_id = %s",
            (tenant_id, user_id),
        )

    def purge_console_sessions(self, tenant_id: str, now: int) -> int:
        return self._exec(
            "purging console sessions",
            "DELETE FROM console_sessions WHERE tenant_id = %s AND expires_at <= %s",
            (tenant_id, now),
        )

    # -- saved searches ----------------------------------------------------
    def insert_saved_search(self, search: SavedSearch) -> None:
        s = search
        n = self._exec(
            "saving a search",
            f"INSERT INTO console_saved_searches ({_SEARCH_COLS})"  # noqa: S608
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (s.tenant_id, s.search_id, s.user_id, s.name, s.query, s.created_at),
        )
        if n == 0:
            raise Conflict(f"you already have a saved search named {s.name!r}")

    def list_saved_searches(self, tenant_id: str, user_id: str) -> list[SavedSearch]:
        rows = self._console_rows(
            "listing saved searches",
            f"SELECT {_SEARCH_COLS} FROM console_saved_searches"  # noqa: S608
            " WHERE tenant_id = %s AND user_id = %s ORDER BY name, search_id",
            (tenant_id, user_id),
        )
        return [SavedSearch(*r) for r in rows]

    def delete_saved_search(self, tenant_id: str, user_id: str, search_id: str) -> bool:
        return bool(
            self._exec(
                "deleting a saved search",
                "DELETE FROM console_saved_searches"
                " WHERE tenant_id = %s AND user_id = %s AND search_id = %s",
                (tenant_id, user_id, search_id),
            )
        )
