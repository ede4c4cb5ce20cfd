"""Mounts the admin console (kimonaudit.console) at /console/.

The console is its own ASGI app, with HTML error pages, its own security
headers and cookie-based sessions; the API keeps its JSON errors and
bearer keys. A key revoked in the console is dropped from the API's
authentication cache at once.
"""

from __future__ import annotations

from fastapi import FastAPI

from kimonaudit.console.web import create_console


def install(app: FastAPI) -> None:
    state = app.state.api
    app.mount("/console", create_console(state.log, on_key_revoked=state.auth.forget))
