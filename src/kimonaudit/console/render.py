"""Templates: Jinja2 with autoescaping always on.

Event data is only ever inserted as escaped text. URLs are built here from
fixed console paths plus url-encoded parameters, so no value from an event
can become a link's scheme (``javascript:``) or leave its attribute.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.requests import Request
from starlette.responses import HTMLResponse

from kimonaudit.console.security import Viewer, base_path
from kimonaudit.core.timefmt import from_us


def human_ts(us: int | None) -> str:
    """``2026-11-26 10:00:05 UTC``: seconds are enough to read; the exact
    value is on the event page."""
    if us is None:
        return ""
    return from_us(us).strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty(value: Any) -> str:
    """A JSON value as text for a table cell: strings as they are."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, indent=None)


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("kimonaudit.console", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["ts"] = human_ts
    env.filters["pretty"] = pretty
    return env


class Pages:
    def __init__(self) -> None:
        self.env = environment()

    def render(
        self,
        request: Request,
        name: str,
        context: Mapping[str, Any] | None = None,
        *,
        viewer: Viewer | None = None,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        base = base_path(request)

        def url(path: str, **params: Any) -> str:
            """A console URL: `path` is one of ours, params are encoded."""
            kept = {k: v for k, v in params.items() if v not in (None, "")}
            return base + path + ("?" + urlencode(kept) if kept else "")

        html = self.env.get_template(name).render(
            base=base, url=url, viewer=viewer, path=request.url.path, **(context or {})
        )
        return HTMLResponse(html, status_code=status, headers=dict(headers or {}))
