"""Console accounts: users per tenant, sign-in, sessions and saved searches.

Every sign-in, failed sign-in, sign-out, user creation and suspension is
an entry in the tenant's own log (`auth.login.succeeded`,
`auth.login.failed`, `auth.logout`, `user.created`, `user.suspended`, with
``metadata.via = "console"``). Entries are written before the state they
describe changes, as for API keys: a crash in between leaves a logged
sign-in that never got a session, never a session the log does not know.

A session cookie holds the tenant id (base64url) and a random token; only
the token's SHA-256 is stored. The tenant in the cookie only tells the
store where to look: a forged tenant with a real token finds nothing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import ipaddress
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kimonaudit.console.passwords import Passwords, check_password, generate_password
from kimonaudit.console.records import RANK, ROLES, ConsoleSession, ConsoleUser, SavedSearch
from kimonaudit.console.throttle import SignInThrottle
from kimonaudit.core.query import parse
from kimonaudit.errors import AuthError, Forbidden, InvalidInput, NotFound
from kimonaudit.service import SYSTEM_ACTOR, AuditLog

SESSION_SECONDS = 12 * 3600
MAX_SAVED_SEARCHES = 100
MAX_EMAIL = 254
# Deliberately loose: one @, something on each side, no spaces or controls.
_EMAIL_RE = re.compile(r"[^\s@\x00-\x1f\x7f]+@[^\s@\x00-\x1f\x7f]+")
_SIGN_IN_FAILED = "sign-in failed: check the tenant, e-mail and password"


class SignInRefused(AuthError):
    """A sign-in that did not succeed. The message is the same whatever the
    reason, except when the caller is throttled (`retry_after` seconds)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Client:
    """Where a request came from, for the context of the entries it causes."""

    ip: str | None = None
    user_agent: str | None = None

    def context(self) -> dict[str, str]:
        ctx: dict[str, str] = {}
        if self.ip is not None:
            # Not an address (a test client, a unix socket): left out.
            with contextlib.suppress(ValueError):
                ctx["ip"] = str(ipaddress.ip_address(self.ip))
        if self.user_agent:
            ctx["user_agent"] = self.user_agent[:500]
        return ctx


@dataclass(frozen=True)
class SignedIn:
    cookie: str  # what the browser keeps; shown nowhere else
    session: ConsoleSession
    user: ConsoleUser


def normalize_email(email: str) -> str:
    """The e-mail as stored: trimmed and lower-cased; InvalidInput if it is
    not shaped like an address."""
    e = email.strip().lower() if isinstance(email, str) else ""
    if not e or len(e) > MAX_EMAIL or _EMAIL_RE.fullmatch(e) is None:
        raise InvalidInput("expected an e-mail address such as ann@example.com", field="email")
    return e


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}; one of {', '.join(ROLES)}", field="role")
    return role


def may_manage(actor_role: str, target_role: str) -> bool:
    """Owners manage everyone, admins manage admins and auditors, auditors
    manage nobody (they are read-only)."""
    return actor_role != "auditor" and RANK[actor_role] >= RANK[target_role]


def may_administer(user: ConsoleUser) -> bool:
    """Whether `user` may change the tenant's setup (API keys, users)."""
    return user.role in ("owner", "admin")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii")).digest()


def _new_id(prefix: str) -> str:
    return prefix + base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()


class ConsoleAccounts:
    def __init__(
        self,
        log: AuditLog,
        *,
        passwords: Passwords | None = None,
        throttle: SignInThrottle | None = None,
        session_seconds: int = SESSION_SECONDS,
    ) -> None:
        self.log = log
        self.store = log.store
        self.passwords = passwords or Passwords()
        self.throttle = throttle or SignInThrottle()
        self.session_us = session_seconds * 1_000_000

    # -- users -------------------------------------------------------------
    def create_user(
        self,
        tenant_id: str,
        email: str,
        password: str,
        role: str,
        *,
        by: ConsoleUser | None = None,
        client: Client | None = None,
    ) -> ConsoleUser:
        """Create a console user. `by` is the console user doing it (None:
        the command line), who must be allowed to manage `role`."""
        self.log.get_tenant(tenant_id)
        email = normalize_email(email)
        check_role(role)
        check_password(password)
        if by is not None:
            self._check_manager(by, tenant_id, role)
        if self.store.find_console_user(tenant_id, email) is not None:
            raise InvalidInput("a console user with this e-mail already exists", field="email")
        user = ConsoleUser(
            tenant_id,
            _new_id("u_"),
            email,
            self.passwords.hash(password),
            role,
            self.log.now_us(),
        )
        self._record(
            tenant_id,
            "user.created",
            by,
            client,
            target={"type": "console_user", "id": user.user_id},
            changes=[{"field": "role", "from": None, "to": role}],
            metadata={"email": email},
        )
        self.store.insert_console_user(user)
        return user

    def list_users(self, tenant_id: str) -> list[ConsoleUser]:
        return self.store.list_console_users(tenant_id)

    def get_user(self, tenant_id: str, user_id: str) -> ConsoleUser:
        user = self.store.get_console_user(tenant_id, user_id)
        if user is None:
            raise NotFound(f"no console user {user_id!r} in this tenant")
        return user

    def disable_user(
        self, tenant_id: str, user_id: str, *, by: ConsoleUser, client: Client | None = None
    ) -> ConsoleUser:
        """Suspend a user and end all their sessions. Nobody can suspend
        themselves, so a tenant always keeps the owner who is acting."""
        target = self.get_user(tenant_id, user_id)
        self._check_manager(by, tenant_id, target.role)
        if target.user_id == by.user_id:
            raise Forbidden("you cannot disable your own account")
        if target.disabled_at is None:
            self._record(
                tenant_id,
                "user.suspended",
                by,
                client,
                target={"type": "console_user", "id": target.user_id},
                metadata={"email": target.email},
            )
            self.store.set_console_user_disabled(tenant_id, user_id, self.log.now_us())
        self.store.delete_console_sessions(tenant_id, user_id)
        return self.get_user(tenant_id, user_id)

    def _check_manager(self, by: ConsoleUser, tenant_id: str, role: str) -> None:
        if by.tenant_id != tenant_id or not by.active:
            raise Forbidden("not allowed in this tenant")
        if not may_manage(by.role, role):
            raise Forbidden(f"a console {by.role} cannot manage {role} accounts")

    # -- signing in and out --------------------------------------------------
    def sign_in(self, tenant_id: str, email: str, password: str, client: Client) -> SignedIn:
        """A new session, or SignInRefused with one message for a wrong
        tenant, e-mail or password alike. Failures in a tenant that exists
        are entries in its log."""
        tenant_id = tenant_id.strip()
        typed = email.strip().lower()[:MAX_EMAIL] if isinstance(email, str) else ""
        account = SignInThrottle.account_key(tenant_id, typed)
        ip = SignInThrottle.ip_key(client.ip)
        tenant = self.store.get_tenant(tenant_id) if tenant_id else None
        verdict = self.throttle.check(account, ip)
        if verdict.wait > 0:
            if tenant is not None and verdict.first_refusal:
                self._failed(tenant_id, None, typed, "throttled", client)
            seconds = max(1, int(verdict.wait + 0.999))
            raise SignInRefused(
                f"too many failed sign-ins; try again in {seconds} seconds", retry_after=seconds
            )
        user = None
        if tenant is not None and _EMAIL_RE.fullmatch(typed):
            user = self.store.find_console_user(tenant_id, typed)
        ok = self.passwords.verify(user.password_hash if user else None, password)
        if not ok or user is None or not user.active:
            self.throttle.failed(account, ip)
            if tenant is not None:
                reason = "unknown_user" if user is None else "disabled" if ok else "bad_password"
                self._failed(tenant_id, user, typed, reason, client)
            raise SignInRefused(_SIGN_IN_FAILED)
        self.throttle.succeeded(account)
        if self.passwords.needs_rehash(user.password_hash):
            self.store.set_console_password(tenant_id, user.user_id, self.passwords.hash(password))
        self._record(tenant_id, "auth.login.succeeded", user, client, metadata={"role": user.role})
        now = self.log.now_us()
        self.store.purge_console_sessions(tenant_id, now)
        token = secrets.token_urlsafe(32)
        session = ConsoleSession(
            tenant_id,
            _token_hash(token),
            user.user_id,
            secrets.token_bytes(32),
            now,
            now + self.session_us,
        )
        self.store.insert_console_session(session)
        return SignedIn(f"{_b64(tenant_id.encode())}.{token}", session, user)

    def _failed(
        self,
        tenant_id: str,
        user: ConsoleUser | None,
        typed: str,
        reason: str,
        client: Client,
    ) -> None:
        meta: dict[str, Any] = {"reason": reason}
        if user is None:
            # What was typed, only if it looks like an address: people do
            # type their password into the e-mail field.
            if _EMAIL_RE.fullmatch(typed):
                meta["email"] = typed
            else:
                meta["email_malformed"] = True
        self._record(tenant_id, "auth.login.failed", user, client, outcome="failure", metadata=meta)

    def resume(self, cookie: str | None) -> tuple[ConsoleSession, ConsoleUser] | None:
        """The live session and its active user for a cookie value, or None."""
        if not cookie or len(cookie) > 400 or "." not in cookie:
            return None
        tenant_part, _, token = cookie.partition(".")
        try:
            tenant_id = _unb64(tenant_part).decode("utf-8")
            token_hash = _token_hash(token)
        except (binascii.Error, UnicodeError, ValueError):
            return None
        session = self.store.get_console_session(tenant_id, token_hash)
        if session is None or session.expires_at <= self.log.now_us():
            return None
        user = self.store.get_console_user(tenant_id, session.user_id)
        if user is None or not user.active:
            return None
        return session, user

    def sign_out(self, session: ConsoleSession, user: ConsoleUser, client: Client) -> None:
        if self.store.delete_console_session(session.tenant_id, session.token_hash):
            self._record(session.tenant_id, "auth.logout", user, client)

    @staticmethod
    def csrf_token(session: ConsoleSession) -> str:
        """The token every form of this session carries."""
        return _b64(session.csrf_secret)

    # -- saved searches ------------------------------------------------------
    def save_search(self, user: ConsoleUser, name: str, query: str) -> SavedSearch:
        name = name.strip() if isinstance(name, str) else ""
        if not name or len(name) > 100 or not name.isprintable():
            raise InvalidInput("a name is 1-100 printable characters", field="name")
        query = query.strip()
        parse(query)  # refuse a query that cannot run, with the parser's message
        if len(self.saved_searches(user)) >= MAX_SAVED_SEARCHES:
            raise InvalidInput(f"at most {MAX_SAVED_SEARCHES} saved searches each", field="name")
        s = SavedSearch(user.tenant_id, _new_id("s_"), user.user_id, name, query, self.log.now_us())
        self.store.insert_saved_search(s)
        return s

    def saved_searches(self, user: ConsoleUser) -> list[SavedSearch]:
        return self.store.list_saved_searches(user.tenant_id, user.user_id)

    def delete_search(self, user: ConsoleUser, search_id: str) -> bool:
        return self.store.delete_saved_search(user.tenant_id, user.user_id, search_id)

    # -- the log -------------------------------------------------------------
    def _record(
        self,
        tenant_id: str,
        action: str,
        user: ConsoleUser | None,
        client: Client | None,
        *,
        outcome: str = "success",
        target: Mapping[str, str] | None = None,
        changes: list[dict[str, Any]] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        via = "console" if client is not None else "cli"
        event: dict[str, Any] = {
            "action": action,
            "outcome": outcome,
            "metadata": {"via": via, **(metadata or {})},
        }
        if user is not None:
            event["actor"] = user.actor
        elif action != "auth.login.failed":
            event["actor"] = dict(SYSTEM_ACTOR)
        if client is not None and client.context():
            event["context"] = client.context()
        if target is not None:
            event["target"] = dict(target)
        if changes:
            event["changes"] = changes
        self.log.append(tenant_id, [event])


def create_first_owner(log: AuditLog, tenant_id: str, email: str) -> tuple[ConsoleUser, str]:
    """An owner with a generated password (what `kimonaudit demo` prints
    once): the user and the password."""
    password = generate_password()
    return ConsoleAccounts(log).create_user(tenant_id, email, password, "owner"), password
