"""The root URL and /docs: a browser at http://127.0.0.1:8080/ lands in the
console, an API client gets a JSON index, and the API docs page needs
nothing from the internet (its assets are served by this server)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette would rather run its TestClient on `httpx2`; the project uses httpx.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

import kimonaudit
from kimonaudit.api.app import create_app
from kimonaudit.api.settings import ApiSettings

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    log = kimonaudit.open(f"sqlite:///{tmp_path / 'api.db'}", key_file=str(tmp_path / "k.key"))
    try:
        with TestClient(create_app(log, settings=ApiSettings()), follow_redirects=False) as c:
            yield c
    finally:
        log.close()


def test_root_sends_a_browser_to_the_console(client: TestClient) -> None:
    """Accept: text/html first (what browsers send) -> 303 to /console/,
    which itself leads to sign-in."""
    r = client.get("/", headers={"Accept": BROWSER_ACCEPT})
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    r = client.get("/console/", headers={"Accept": BROWSER_ACCEPT})
    assert r.status_code in (302, 303) and "/console/" in r.headers["location"]


@pytest.mark.parametrize("accept", [None, "*/*", "application/json"])
def test_root_gives_an_api_client_a_json_index(client: TestClient, accept: str | None) -> None:
    """curl (*/*), no Accept at all, or JSON -> a small index of where
    things are, every path of which exists."""
    headers = {"Accept": accept} if accept else {}
    r = client.get("/", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["name"] == "KimonAudit" and body["version"] == kimonaudit.__version__
    assert body["console"] == "/console/" and body["docs"] == "/docs"
    paths = [v for k, v in body.items() if isinstance(v, str) and v.startswith("/")]
    paths += list(body["api"].values())
    assert len(paths) >= 9
    for path in paths:
        assert client.get(path).status_code != 404, path


def test_docs_need_no_cdn(client: TestClient) -> None:
    """/docs is Swagger UI whose script, stylesheet and icon all come from
    this server (no other host anywhere in the page), and they load."""
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert "cdn" not in page.lower() and "//" not in re.sub(r"https?://[^\"']*", "", page)
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page)
    assert not [u for u in urls if "://" in u or u.startswith("//")], urls
    assets = [u for u in urls if u.startswith("/docs/assets/")]
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= set(assets)
    for url in assets:
        got = client.get(url)
        assert got.status_code == 200 and len(got.content) > 1_000, url
    assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text
    assert "'/openapi.json'" in page or '"/openapi.json"' in page


def test_root_and_docs_stay_out_of_the_openapi_description(client: TestClient) -> None:
    """The index and the docs page are for people, not API operations."""
    spec = client.get("/openapi.json").json()
    assert "/" not in spec["paths"] and "/docs" not in spec["paths"]
