"""Format names -> the stage that renders a StreamEvent."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kimonaudit.sinks.cef import to_cef
from kimonaudit.sinks.events import StreamEvent
from kimonaudit.sinks.jsonfmt import to_json
from kimonaudit.sinks.ocsf import to_ocsf

Renderer = Callable[[StreamEvent], Any]  # a dict (json, ocsf) or a str (cef)
RENDERERS: dict[str, Renderer] = {"json": to_json, "ocsf": to_ocsf, "cef": to_cef}


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def text_renderer(fmt: str) -> Callable[[StreamEvent], str]:
    """The renderer of `fmt` whose output is text: a CEF line, or the JSON
    object serialised once (transports embed it as it is)."""
    render = RENDERERS[fmt]

    def as_text(ev: StreamEvent) -> str:
        out = render(ev)
        return out if isinstance(out, str) else _dumps(out)

    return as_text
