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


def log_access(method: str, route: str, status: int, seconds: float) -> None:
    """One access-log line (kimonaudit.api.app.RequestMetrics and the
    fast append path write them)."""
    logger.info("%s %s %d %.1fms", method, route, status, seconds * 1000)
