"""What the console stores: its users, their sessions and saved searches.

Plain frozen values with no web framework in sight. They sit below the
stores that keep them (a store never imports the console); the console
re-exports them from `kimonaudit.console.records`.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES: tuple[str, ...] = ("owner", "admin", "auditor")
# A higher rank may do everything a lower one may; see accounts.may_manage.
RANK: dict[str, int] = {"auditor": 0, "admin": 1, "owner": 2}


@dataclass(frozen=True)
class ConsoleUser:
    """A person who signs in to one tenant's console. `email` is stored
    lower-cased and is unique within the tenant; `password_hash` is an
    argon2id PHC string."""

    tenant_id: str
    user_id: str
    email: str
    password_hash: str
    role: str
    created_at: int
    disabled_at: int | None = None

    @property
    def active(self) -> bool:
        return self.disabled_at is None

    @property
    def actor(self) -> dict[str, str]:
        """How this user appears as the actor of entries the console writes.
        The e-mail goes to the erasable directory, never into the log."""
        return {
            "id": f"console:{self.user_id}",
            "type": "console_user",
            "name": self.email,
            "email": self.email,
        }


@dataclass(frozen=True)
class ConsoleSession:
    """A signed-in browser. Only the SHA-256 of the cookie's token is kept,
    so a copy of the database does not let anyone in."""

    tenant_id: str
    token_hash: bytes
    user_id: str
    csrf_secret: bytes
    created_at: int
    expires_at: int


@dataclass(frozen=True)
class SavedSearch:
    tenant_id: str
    search_id: str
    user_id: str
    name: str
    query: str
    created_at: int
