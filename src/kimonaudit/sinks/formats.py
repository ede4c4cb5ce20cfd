"""Format names -> the stage that renders a StreamEvent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kimonaudit.sinks.cef import to_cef
from kimonaudit.sinks.events import StreamEvent
from kimonaudit.sinks.jsonfmt import to_json
from kimonaudit.sinks.ocsf import to_ocsf

Renderer = Callable[[StreamEvent], Any]  # a dict (json, ocsf) or a str (cef)
RENDERERS: dict[str, Renderer] = {"json": to_json, "ocsf": to_ocsf, "cef": to_cef}
