"""Authentication by API key, scopes and rate limiting.

`Authorization: Bearer kak_...` is checked by AuditLog.authenticate (SHA-256
of the secret, compared in constant time). A key that passed is remembered
for `auth_cache_seconds` under the SHA-256 of its text, so a busy client
costs no database read per request; revoking a key through this server
forgets it at once, elsewhere (the CLI) within that time. Failures are never
cached. Keys are never logged: not here, and uvicorn's access log records
no headers.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from kimonaudit import apikeys
from kimonaudit.api.errors import ApiError
from kimonaudit.api.ratelimit import RateLimiter, SharedRateLimiter, retry_after
from kimonaudit.errors import AuthError, Forbidden
from kimonaudit.service import AuditLog

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="A tenant API key: `Authorization: Bearer kak_...`.",
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant comes from the key, never from the request."""

    tenant_id: str
    scopes: tuple[str, ...]
    key_id: str

    @property
    def actor(self) -> dict[str, str]:
        """How this caller appears as the actor of entries it causes."""
        return {"id": f"api_key:{self.key_id}", "type": "api_key"}


class Authenticator:
    def __init__(self, log: AuditLog, limiter: RateLimiter, cache_seconds: float) -> None:
        self._log = log
        self._limiter = limiter
        self._ttl = cache_seconds
        self._cache: dict[bytes, tuple[Principal, float]] = {}
        self._lock = threading.Lock()
        # Lookups under way, by digest: when a busy key's cache entry runs
        # out, the requests that meet it share one database read instead of
        # each making their own.
        self._pending: dict[bytes, asyncio.Task[Principal]] = {}

    def cached(self, text: str) -> Principal | None:
        """The Principal of a key that passed within the cache's time, else
        None (then `principal` asks the database)."""
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
        hit = self._cache.get(digest)
        return hit[0] if hit is not None and hit[1] > time.monotonic() else None

    async def principal(self, text: str) -> Principal:
        hit = self.cached(text)
        if hit is not None:
            return hit
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
        loop = asyncio.get_running_loop()
        lookup = self._pending.get(digest)
        if lookup is None or lookup.get_loop() is not loop:
            lookup = loop.create_task(self._lookup(text, digest))
            self._pending[digest] = lookup

            def done(task: asyncio.Task[Principal]) -> None:
                if self._pending.get(digest) is task:
                    del self._pending[digest]

            lookup.add_done_callback(done)
        # Shielded: a request that goes away does not cancel the others' lookup.
        return await asyncio.shield(lookup)

    async def _lookup(self, text: str, digest: bytes) -> Principal:
        now = time.monotonic()
        key_id, _ = apikeys.parse(text)
        tenant_id, scopes = await run_in_threadpool(self._log.authenticate, text)
        p = Principal(tenant_id, scopes, key_id)
        if self._ttl > 0:
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[digest] = (p, now + self._ttl)
        return p

    def forget(self, key_id: str) -> None:
        """Drop a revoked key from the cache."""
        with self._lock:
            for digest in [d for d, (p, _) in self._cache.items() if p.key_id == key_id]:
                del self._cache[digest]

    async def throttle(self, p: Principal) -> None:
        """429 if the key is over its rate. The shared (PostgreSQL) limiter
        is a database round trip, taken on a thread so that the event loop
        never waits for the database."""
        if isinstance(self._limiter, SharedRateLimiter) and self._limiter.rate > 0:
            wait = await run_in_threadpool(self._limiter.take, p.key_id)
        else:
            wait = self._limiter.take(p.key_id)
        if wait > 0:
            raise self.rate_limited(wait)

    def rate_limited(self, wait: float) -> ApiError:
        """The 429 for a key that must wait `wait` seconds."""
        return ApiError(
            429,
            f"rate limit of {self._limiter.rate:g} requests/s for this API key exceeded",
            headers={"Retry-After": retry_after(wait)},
        )


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller's Principal, holding `scope` (admin holds all)."""

    async def dependency(
        request: Request,
        creds: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    ) -> Principal:
        if creds is None:
            raise AuthError("missing API key: send Authorization: Bearer <api key>")
        auth: Authenticator = request.app.state.api.auth
        p = await auth.principal(creds.credentials)
        if not apikeys.grants(p.scopes, scope):
            raise Forbidden(f"this API key lacks the {scope!r} scope")
        await auth.throttle(p)
        return p

    return dependency
