"""Cross-site GETs against the console in a real browser: a page on
another site (http://localhost:<port>, while the console is on
http://127.0.0.1:<port>) links to a search and to an event. Chromium sends
the SameSite=Lax session cookie on those top-level GETs and marks them
`Sec-Fetch-Site: cross-site`; the console must write nothing for them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import kimonaudit
from kimonaudit.console.accounts import ConsoleAccounts
from tests.browser.test_console_browser import EMAIL, PASSWORD, Site, Tab, _tab, sign_in
from tests.browser.test_console_browser import browser as browser  # a fixture
from tests.helpers import event
from tests.servers import ServeProcess

pytestmark = pytest.mark.browser


@dataclass
class SiteDb(Site):
    db: str = ""
    key_file: str = ""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiteDb]:
    tmp = tmp_path_factory.mktemp("cross-site")
    db, key_file = f"sqlite:///{tmp / 'console.db'}", str(tmp / "console.key")
    with kimonaudit.open(db, key_file=key_file) as log:
        tenant = log.create_tenant("Acme Support").id
        ConsoleAccounts(log).create_user(tenant, EMAIL, PASSWORD, "owner")
        log.append(tenant, [event(i) for i in range(5)])
    with ServeProcess(db, key_file, tmp) as server:
        yield SiteDb(server.url, tenant, [], db, key_file)


@pytest.fixture
def tab(browser: Any, site: SiteDb) -> Iterator[Tab]:
    yield from _tab(browser, site)


class Attacker:
    """A page on http://localhost:<port>/ whose links point at the console."""

    def __init__(self, links: list[str]) -> None:
        body = "".join(f'<a id="l{i}" href="{u}">go</a> ' for i, u in enumerate(links))
        page = f"<!doctype html><title>elsewhere</title>{body}".encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://localhost:{self.httpd.server_address[1]}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _recorded(site: SiteDb) -> tuple[list[str], int]:
    """The actions of the console's access entries, and the checkpoints cut."""
    with kimonaudit.open(site.db, key_file=site.key_file) as log:
        rows = log.store.iter_entries(site.tenant)
        actions = [r.action for r in rows if r.action.startswith("audit_log.")]
        return actions, len(log.list_checkpoints(site.tenant))


def test_links_from_another_site_write_nothing(tab: Tab, site: SiteDb) -> None:
    """Another site's links to a search, an event and the checkpoint file
    write no entry and cut no checkpoint; "Open it" on the console's own
    page then runs the search, recorded as usual."""
    sign_in(tab, site)
    page = tab.page
    before = _recorded(site)
    search = f"{site.url}/console/events?q=action%3Aevil.search"
    links = [search, f"{site.url}/console/events/1", f"{site.url}/console/checkpoint.txt"]
    attacker = Attacker(links)
    try:
        for i in range(len(links)):
            page.goto(attacker.url)
            page.click(f"#l{i}")
            page.wait_for_selector("text=Opened from another site")
        assert _recorded(site) == before
        page.goto(attacker.url)
        page.click("#l0")
        page.click("text=Open it")
        page.wait_for_selector("#q")
        assert page.input_value("#q") == "action:evil.search"
    finally:
        attacker.close()
    actions, _ = _recorded(site)
    assert actions == [*before[0], "audit_log.searched"]
    with kimonaudit.open(site.db, key_file=site.key_file) as log:
        last = list(log.store.iter_entries(site.tenant))[-1]
    assert json.loads(last.payload or b"{}")["metadata"]["query"] == "action:evil.search"
