"""POST /v1/events without the framework's per-request layers.

An append is the request a helpdesk sends most, often one event at a time.
Through FastAPI it passes about fifteen ASGI layers and a dependency
solver, which cost several times what decoding and appending the event
does. This middleware answers the common case itself:

    POST /v1/events, no query string, a JSON Content-Type, a declared
    Content-Length within the limit, and a valid API key with the write
    scope.

Anything else (a missing, unknown or read-only key, a missing or odd
header, ``?wait=checkpoint``, a chunked body) goes to the full application
untouched, before a byte of the body is read, and gets its answer there.
Once the fast path has taken a request it answers every outcome, success
or error, with the same functions the route and the exception handlers use
(`routes_events.append_body`, `errors.error_for`), and records the same
metrics and access-log line, so clients and tests cannot tell the two
paths apart.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from kimonaudit import apikeys
from kimonaudit.api.auth import Principal
from kimonaudit.api.body import decode_events, too_large
from kimonaudit.api.errors import CLIENT_CLOSED, error_for
from kimonaudit.views import receipts_body

ROUTE = "/v1/events"


class _Disconnected(Exception):
    pass


class FastIngest:
    """ASGI middleware: the fast path described in the module docstring.
    `state` is the app's ApiState (auth, settings, metrics, log)."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != ROUTE
            or scope["method"] != "POST"
            or scope["query_string"]
        ):
            await self.app(scope, receive, send)
            return
        st = self.state
        token = declared = None
        json_type = False
        for name, value in scope["headers"]:
            if name == b"authorization":
                token = value
            elif name == b"content-type":
                # The full path judges every other spelling (and answers 415).
                json_type = value == b"application/json" or value.lower() in _JSON_TYPES
            elif name == b"content-length":
                declared = value
        if token is None or not json_type or declared is None or not token.startswith(b"Bearer "):
            await self.app(scope, receive, send)
            return
        try:
            length = int(declared)
        except ValueError:
            length = -1
        text = token[7:].decode("latin-1")
        principal = st.auth.cached(text)
        if principal is None and 0 <= length <= st.settings.max_body_bytes:
            try:
                principal = await st.auth.principal(text)
            except Exception:  # the full path answers (401) as it always has
                principal = None
        if (
            not 0 <= length <= st.settings.max_body_bytes
            or principal is None
            or not apikeys.grants(principal.scopes, apikeys.SCOPE_WRITE)
        ):
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        status = 500
        try:
            try:
                response = await self._append(principal, receive)
            except _Disconnected:
                raise
            except Exception as exc:  # every error gets the one error shape, as on the full path
                response = error_for(exc)
            status = response.status_code
            await response(scope, receive, send)
        except _Disconnected:
            status = CLIENT_CLOSED
        finally:
            st.observe_request(scope, status, time.perf_counter() - started, ROUTE)

    async def _append(self, principal: Principal, receive: Receive) -> Response:
        from kimonaudit.api.routes_events import append_decoded, count_appended

        st = self.state
        await st.auth.throttle(principal)
        tenant_id = principal.tenant_id
        raw = await _body(receive, st.settings.max_body_bytes)
        if len(raw) > INLINE_BYTES:
            body = await run_in_threadpool(_append_large, st, tenant_id, raw)
        else:
            events = decode_events(raw, st.settings.max_events)
            started = time.perf_counter()
            future = st.log.submit_validated(tenant_id, events, cached_only=True)
            if future is None:  # it needs the database: not on the event loop
                receipts = await run_in_threadpool(append_decoded, st, tenant_id, events)
            else:
                receipts = await asyncio.wrap_future(future)
                count_appended(st, tenant_id, receipts, time.perf_counter() - started)
            body = receipts_body(receipts)
        return Response(body, status_code=201, media_type="application/json")


def _append_large(st: Any, tenant_id: str, raw: bytes) -> bytes:
    """A large body's append and its 201 body, on a worker thread."""
    from kimonaudit.api.routes_events import append_body

    return receipts_body(append_body(st, tenant_id, raw))


#: Bodies up to this size (a few events) are decoded and prepared on the
#: event loop, which takes tens of microseconds, and wait for their commit
#: there; larger ones go to a thread so that a 1 MiB batch cannot stall
#: every other request.
INLINE_BYTES = 16 * 1024

_JSON_TYPES = frozenset((b"application/json", b"application/json; charset=utf-8"))


async def _body(receive: Receive, limit: int) -> bytes:
    """The whole body, at most `limit` bytes counted as received (as
    BodyLimit counts them: a server need not stop at Content-Length)."""
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            raise too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
