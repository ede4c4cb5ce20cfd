"""What route modules import: the shared state, auth and error helpers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import Request

from kimonaudit.api.auth import Principal, require
from kimonaudit.api.errors import ApiError, responses
from kimonaudit.apikeys import SCOPE_ADMIN, SCOPE_READ, SCOPE_WRITE

if TYPE_CHECKING:
    from kimonaudit.api.app import ApiState

__all__ = [
    "SCOPE_ADMIN",
    "SCOPE_READ",
    "SCOPE_WRITE",
    "ApiError",
    "Principal",
    "api_state",
    "require",
    "responses",
]


def api_state(request: Request) -> ApiState:
    return request.app.state.api  # type: ignore[no-any-return]


def access_context(request: Request) -> dict[str, str]:
    """Who is reading, for the audit_log.* entries: client address, user
    agent and request id (never headers that carry credentials)."""
    from kimonaudit.search import request_context

    client = request.client
    return request_context(
        client.host if client else None,
        request.headers.get("user-agent"),
        request.headers.get("x-request-id"),
    )
