"""The server's access log: one line per request, with nothing personal
and no secret in it.

uvicorn's own access log prints the request line, query string included
(`?q=actor:agent_42`, or an API key someone sent as `?api_key=...`), and
the client's address. This one prints the method, the route *template*
(`/v1/events/{event_id}`, never the ids in the path), the status and the
time taken:

    kimonaudit.access: GET /v1/events 200 3.1ms

Requests that match no route are logged as `(unmatched)`.
"""

from __future__ import annotations

import logging

from starlette.types import Scope

from kimonaudit.api.observe import ResponseObserver

logger = logging.getLogger("kimonaudit.access")


def route_template(scope: Scope) -> str:
    """The matched route's template, joined through mounts; never the raw
    path, which can carry ids and whatever a client typed."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not path:
        return "(unmatched)"
    root = str(scope.get("root_path", "")) or ""
    app_root = str(scope.get("app_root_path", "")) or ""
    prefix = root[len(app_root) :] if root.startswith(app_root) else root
    return prefix + path


class AccessLog(ResponseObserver):
    """ASGI middleware writing the access log described above."""

    def finished(self, scope: Scope, status: int, seconds: float) -> None:
        logger.info(
            "%s %s %d %.1fms", scope["method"], route_template(scope), status, seconds * 1000
        )
