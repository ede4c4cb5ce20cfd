"""AuditMiddleware: an `api.request` event for every HTTP request an ASGI
app (FastAPI, Starlette, ...) serves.

    app.add_middleware(AuditMiddleware, client=audit, actor=current_actor,
                       trusted_proxies=["10.0.0.0/8"])

The event is handed to the client after the response's last byte has gone
to the server, and `record()` only queues it, so the audit server's
health never delays or fails a response. Recorded: method, route template,
status, duration, request id, client IP, user agent, the actor and the
query string with token-like parameters redacted. Never recorded: bodies,
Authorization, cookies or any other header.
"""

from __future__ import annotations

import fnmatch
import inspect
import ipaddress
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl

from kimonaudit.integrations.helpdesk import Actor, api_call

logger = logging.getLogger("kimonaudit.integrations.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
ActorResolver = Callable[[Scope], "Actor | Mapping[str, Any] | None"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Recorder(Protocol):
    """AuditClient, AsyncAuditClient or anything with a quick `record`."""

    def record(self, event: Mapping[str, Any]) -> Any: ...


DEFAULT_EXCLUDE_PATHS = ("/healthz", "/health", "/livez", "/readyz", "/metrics")
DEFAULT_REQUEST_ID_HEADERS = ("x-request-id", "x-correlation-id")
REDACTED = "[redacted]"

# Query parameter names (lower case) whose values are credentials.
SENSITIVE_PARAMS = frozenset({"key", "code", "sig", "auth", "jwt", "otp", "pwd", "pin", "state"})
# ... and parts of names that mark one, wherever they appear.
SENSITIVE_PARAM_PARTS = (
    "token",
    "secret",
    "passw",
    "api_key",
    "apikey",
    "api-key",
    "access_key",
    "private",
    "signature",
    "credential",
    "session",
    "authorization",
)
_JWT = re.compile(r"eyJ[\w-]{4,}\.[\w-]{4,}\.")
_UUID = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)
_HEX = re.compile(r"[0-9a-fA-F]{12,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_QUERY_PARAMS = 50
MAX_VALUE_CHARS = 200
MAX_USER_AGENT_CHARS = 512
MAX_ROUTE_CHARS = 180


class AuditMiddleware:
    """Records `api.request` for every HTTP request, off the response path.

    client: where events go (its `record()` must not block).
    actor: called with the ASGI scope after the app ran (so authentication
        has filled ``scope["user"]`` or ``scope["state"]``); returns an
        Actor, an actor dict or None.
    exclude_paths: exact paths or shell patterns ("/internal/*") not recorded.
    exclude_methods: e.g. ("OPTIONS",) to skip CORS preflights.
    exclude: any further predicate on the scope.
    trusted_proxies: CIDRs of your reverse proxies. X-Forwarded-For is read
        only when the direct peer is one of them, and the client is the
        right-most address that is not.
    request_id_headers: where the request id is read from, first found wins.
    record_query: keep the query string (token-like parameters redacted);
        redact_params adds parameter names to redact.
    """

    def __init__(
        self,
        app: ASGIApp,
        client: Recorder,
        *,
        actor: ActorResolver | None = None,
        exclude_paths: Iterable[str] = DEFAULT_EXCLUDE_PATHS,
        exclude_methods: Iterable[str] = (),
        exclude: Callable[[Scope], bool] | None = None,
        trusted_proxies: Iterable[str] = (),
        request_id_headers: Iterable[str] = DEFAULT_REQUEST_ID_HEADERS,
        record_query: bool = True,
        redact_params: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.client = client
        self.actor = actor
        paths = list(exclude_paths)
        self._exact_paths = frozenset(p for p in paths if not _is_pattern(p))
        self._path_patterns = tuple(p for p in paths if _is_pattern(p))
        self._exclude_methods = frozenset(m.upper() for m in exclude_methods)
        self._exclude = exclude
        self._trusted = tuple(ipaddress.ip_network(c, strict=False) for c in trusted_proxies)
        self._rid_headers = tuple(h.lower().encode("latin-1") for h in request_id_headers)
        self._record_query = record_query
        self._redact = frozenset(p.lower() for p in redact_params) | SENSITIVE_PARAMS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._excluded(scope):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        started_at = datetime.now(UTC)
        root_path = scope.get("root_path", "")
        status: int | None = None
        done = False

        async def send_and_watch(message: Message) -> None:
            nonlocal status, done
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                # The response is out: only now is the event built and queued.
                done = True
                duration = (time.perf_counter() - started) * 1000
                await self._record(scope, root_path, status or 500, duration, started_at)

        try:
            await self.app(scope, receive, send_and_watch)
        except BaseException:
            if not done:
                duration = (time.perf_counter() - started) * 1000
                await self._record(scope, root_path, status or 500, duration, started_at)
            raise
        if not done:
            duration = (time.perf_counter() - started) * 1000
            await self._record(scope, root_path, status or 500, duration, started_at)

    # -- the event -------------------------------------------------------------
    async def _record(
        self, scope: Scope, root_path: str, status: int, duration_ms: float, started_at: datetime
    ) -> None:
        try:
            event = self.build_event(scope, root_path, status, duration_ms, started_at)
            result = self.client.record(event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # Auditing must never break the app's response.
            logger.exception("could not record api.request for %s", scope.get("method"))

    def build_event(
        self,
        scope: Scope,
        root_path: str,
        status: int,
        duration_ms: float,
        started_at: datetime,
    ) -> dict[str, Any]:
        headers = scope.get("headers") or []
        context: dict[str, Any] = {}
        if self._record_query:
            query = redact_query(scope.get("query_string", b""), self._redact)
            if query:
                context["query"] = query
        return api_call(
            self._actor(scope),
            str(scope.get("method", "GET")),
            route_template(scope, root_path),
            status,
            duration_ms=duration_ms,
            ip=client_ip(scope, self._trusted),
            user_agent=_header_text(headers, b"user-agent", MAX_USER_AGENT_CHARS),
            request_id=self._request_id(headers),
            context=context,
            occurred_at=started_at,
        )

    def _actor(self, scope: Scope) -> Actor | None:
        if self.actor is None:
            return None
        try:
            who = self.actor(scope)
            if who is None or isinstance(who, Actor):
                return who
            return Actor(
                str(who["id"]),
                type=who.get("type", "user"),
                name=who.get("name"),
                email=who.get("email"),
            )
        except Exception:
            logger.exception("the actor callable failed; recording without an actor")
            return None

    def _request_id(self, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        headers = list(headers)
        for name in self._rid_headers:
            value = _header_text(headers, name, 200)
            if value:
                return value
        return None

    def _excluded(self, scope: Scope) -> bool:
        path = scope.get("path", "")
        if path in self._exact_paths:
            return True
        if any(fnmatch.fnmatchcase(path, p) for p in self._path_patterns):
            return True
        if scope.get("method", "").upper() in self._exclude_methods:
            return True
        return self._exclude is not None and bool(self._exclude(scope))


# --- pieces, usable on their own ----------------------------------------------------


def route_template(scope: Scope, root_path: str = "") -> str:
    """The matched route's template (Starlette/FastAPI put the route in
    ``scope["route"]``), prefixed by the part of the path a Mount consumed;
    else the raw path with id-like segments collapsed to ``{id}``."""
    route = scope.get("route")
    template = getattr(route, "path", None)
    path = str(scope.get("path", "/"))
    if isinstance(template, str) and template and not hasattr(route, "routes"):
        grown = str(scope.get("root_path", ""))
        prefix = grown[len(root_path) :] if grown.startswith(root_path) else ""
        result = collapse_ids(prefix) + template
    else:
        # No route, or a Mount of a plain ASGI app: only the raw path is known.
        result = collapse_ids(path)
    return result[:MAX_ROUTE_CHARS] or "/"


def collapse_ids(path: str) -> str:
    """``/tickets/10482/notes/6f1c2d7e-...`` -> ``/tickets/{id}/notes/{id}``:
    numbers, UUIDs, long hex, emails and token-like segments."""
    return "/".join("{id}" if _id_like(seg) else seg for seg in path.split("/"))


def _id_like(seg: str) -> bool:
    if not seg:
        return False
    if seg.isdigit() or "@" in seg or len(seg) >= 20:
        return True
    if _UUID.fullmatch(seg) or _HEX.fullmatch(seg):
        return True
    return len(seg) >= 6 and sum(c.isdigit() for c in seg) >= 3


def redact_query(raw: bytes, redact: Iterable[str] = SENSITIVE_PARAMS) -> dict[str, Any]:
    """The query string as {name: value} (a list when repeated), with
    credentials (by name, or JWT-looking values) replaced by "[redacted]"."""
    names = frozenset(redact)
    out: dict[str, Any] = {}
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    for name, value in pairs[:MAX_QUERY_PARAMS]:
        name = _CONTROL.sub("", name)[:100]
        if _sensitive_param(name, names) or _JWT.match(value):
            value = REDACTED
        else:
            value = _CONTROL.sub("", value)[:MAX_VALUE_CHARS]
        if name in out:
            prev = out[name]
            out[name] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[name] = value
    return out


def _sensitive_param(name: str, names: frozenset[str]) -> bool:
    low = name.lower()
    return low in names or any(part in low for part in SENSITIVE_PARAM_PARTS)


def client_ip(scope: Scope, trusted: Iterable[IPNetwork] = ()) -> str | None:
    """The client's address: the direct peer, unless the peer is a trusted
    proxy, then the right-most X-Forwarded-For address that is not."""
    peer = scope.get("client")
    addr = _parse_ip(str(peer[0])) if peer else None
    if addr is None:
        return None
    nets = tuple(trusted)
    if not _trusted(addr, nets):
        return str(addr)
    hops: list[str] = []
    for name, value in scope.get("headers") or []:
        if name.lower() == b"x-forwarded-for":
            hops.extend(value.decode("latin-1").split(","))
    for hop in reversed(hops):
        parsed = _parse_ip(hop.strip())
        if parsed is None:
            # A garbled entry: nothing further left can be believed.
            break
        addr = parsed
        if not _trusted(addr, nets):
            break
    return str(addr)


def _trusted(addr: IPAddress, nets: tuple[IPNetwork, ...]) -> bool:
    return any(addr.version == n.version and addr in n for n in nets)


def _parse_ip(text: str) -> IPAddress | None:
    text = text.strip()
    if text.startswith("["):  # [2001:db8::1]:443
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # 203.0.113.9:51234
        text = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def _header_text(headers: Iterable[tuple[bytes, bytes]], name: bytes, limit: int) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            text = _CONTROL.sub("", value.decode("latin-1")).strip()
            return text[:limit] or None
    return None


def _is_pattern(path: str) -> bool:
    return any(c in path for c in "*?[")
