"""The HTTP API (FastAPI): `create_app(log, settings=...)` builds it and
`kimonaudit serve` runs it under uvicorn. docs/http-contract.md is the
contract; /openapi.json describes it.

Imports are lazy so that the CLI can read `kimonaudit.api.settings`
without loading the web framework."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kimonaudit.api.app import create_app
    from kimonaudit.api.settings import ApiSettings

__all__ = ["ApiSettings", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from kimonaudit.api.app import create_app

        return create_app
    if name == "ApiSettings":
        from kimonaudit.api.settings import ApiSettings

        return ApiSettings
    raise AttributeError(name)
