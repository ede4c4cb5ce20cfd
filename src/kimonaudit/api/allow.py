"""A complete `Allow` header on every 405.

Starlette answers 405 from the first route whose path matches, listing only
that route's methods: `PUT /v1/events` said `Allow: GET` although POST works
too, and the console's pages (a Starlette app of their own, with HTML
errors) sent no Allow at all. This middleware, outermost, replaces the
header of any 405 with the methods of every route, through mounts, whose
path matches the request's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send


def allowed_methods(routes: Iterable[BaseRoute], scope: Scope) -> set[str]:
    """Methods of the routes whose path matches `scope`'s, whatever its method."""
    found: set[str] = set()
    for route in routes:
        included = getattr(route, "effective_candidates", None)
        if callable(included):  # FastAPI's include_router keeps the router whole
            found |= allowed_methods(included(), scope)
            continue
        match, child = route.matches(scope)
        if match == Match.NONE:
            continue
        if isinstance(route, Mount):
            inner: Any = route.app
            sub = getattr(inner, "routes", None) or route.routes
            found |= allowed_methods(sub, {**scope, **child})
        else:
            found |= set(getattr(route, "methods", None) or ())
    return found


class CompleteAllow:
    def __init__(self, app: ASGIApp, routes: Iterable[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        original = dict(scope)

        async def with_allow(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                methods = allowed_methods(self.routes, original)
                if methods:
                    allow = ", ".join(sorted(methods)).encode("latin-1")
                    kept = [h for h in message.get("headers", []) if h[0].lower() != b"allow"]
                    message["headers"] = [*kept, (b"allow", allow)]
            await send(message)

        await self.app(scope, receive, with_allow)
