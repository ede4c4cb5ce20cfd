"""Where am I: the root URL and the API docs.

`GET /` sends a browser (``Accept: text/html``) to the console and answers
anything else (curl, API clients) with a small JSON index of where things
are. `GET /docs` is Swagger UI served from this server: its script and
stylesheet come from the `fastapi-offline` package's copy of swagger-ui-dist
(mounted at /docs/assets), so the page works on a machine without internet.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

import kimonaudit

router = APIRouter()

ASSETS = "/docs/assets"
CONSOLE = "/console/"


def index(root: str = "") -> dict[str, Any]:
    """The JSON index `GET /` gives API clients."""
    return {
        "name": "KimonAudit",
        "version": kimonaudit.__version__,
        "console": root + CONSOLE,
        "docs": root + "/docs",
        "openapi": root + "/openapi.json",
        "health": root + "/healthz",
        "metrics": root + "/metrics",
        "api": {
            "events": root + "/v1/events",
            "checkpoint": root + "/v1/checkpoints/latest",
            "consistency_proof": root + "/v1/proofs/consistency",
            "export_csv": root + "/v1/exports/events.csv",
        },
        "auth": "Authorization: Bearer <api key> (kimonaudit tenants create / apikeys create)",
    }


def wants_html(request: Request) -> bool:
    """A browser asks for text/html first; curl and API clients do not."""
    first = request.headers.get("accept", "").split(",", 1)[0]
    return first.split(";", 1)[0].strip().lower() == "text/html"


@router.get("/", include_in_schema=False)
async def home(request: Request) -> Response:
    root = request.scope.get("root_path", "")
    if wants_html(request):
        return RedirectResponse(root + CONSOLE, status_code=303)
    return JSONResponse(index(root))


def install(app: FastAPI) -> None:
    """Swagger UI with local assets (create_app turns FastAPI's CDN page off)."""
    static = files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(static)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=root + (app.openapi_url or "/openapi.json"),
            title=f"{app.title} API",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
        )
