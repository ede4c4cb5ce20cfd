"""Changing a SIEM destination in a real browser: Debian's chromium driven
by Playwright against `python -m kimonaudit serve` on 127.0.0.1.

The owner opens the Destinations page, follows "Change" on a destination
whose name holds markup, edits name, format, filter, batching and settings,
and sees the change listed; a refused URL comes back with the field named;
a new webhook signing secret is shown once. No script from the name runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import kimonaudit
from kimonaudit.console.accounts import ConsoleAccounts
from kimonaudit.destinations import Destinations
from kimonaudit.sinks import ssrf
from tests.browser.test_console_browser import EMAIL, PASSWORD, Tab, _tab, browser  # noqa: F401
from tests.servers import ServeProcess
from tests.sinks.receivers import HttpReceiver

pytestmark = pytest.mark.browser

HOSTILE = '<img src=x onerror="window.__xss=1">hook'


@dataclass
class Site:
    url: str
    tenant: str
    hook: str
    db: str
    key_file: str


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("dest-browser")
    db, key_file = f"sqlite:///{tmp / 'console.db'}", str(tmp / "console.key")
    with HttpReceiver() as rx, pytest.MonkeyPatch.context() as mp:
        mp.setenv("KIMONAUDIT_DESTINATION_ALLOWLIST", "127.0.0.0/8")
        with kimonaudit.open(db, key_file=key_file) as log:
            tenant = log.create_tenant("Acme Support").id
            ConsoleAccounts(log).create_user(tenant, EMAIL, PASSWORD, "owner")
            dests = Destinations(log, ssrf.parse_allowlist("127.0.0.0/8"))
            hook, _ = dests.create(tenant, name=HOSTILE, kind="webhook", url=rx.url)
        with ServeProcess(db, key_file, tmp, "--checkpoint-interval", "0.2") as server:
            yield Site(server.url, tenant, hook.id, db, key_file)


@pytest.fixture
def tab(browser: Any, site: Site) -> Iterator[Tab]:  # noqa: F811
    yield from _tab(browser, site)  # type: ignore[arg-type]


def _sign_in(tab: Tab, site: Site) -> None:
    page = tab.page
    page.goto(f"/console/signin?tenant={site.tenant}")
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/events")


def _updates(site: Site) -> list[dict[str, Any]]:
    with kimonaudit.open(site.db, key_file=site.key_file) as log:
        return [
            json.loads(r.payload or b"{}")["metadata"]
            for r in log.store.iter_entries(site.tenant)
            if r.action == "audit_stream.updated"
        ]


def test_change_a_destination_in_the_browser(tab: Tab, site: Site) -> None:
    page = tab.page
    _sign_in(tab, site)
    page.goto("/console/destinations")
    row = page.locator(f'tr[data-destination="{site.hook}"]')
    assert HOSTILE in row.inner_text()  # the markup shown as text
    row.get_by_role("link", name="Change").click()
    page.wait_for_url(f"**/console/destinations/{site.hook}/edit")
    assert page.input_value("#e-name") == HOSTILE
    assert page.locator("#e-format option").all_inner_texts() == ["json", "ocsf"]

    # A refused URL: the form comes back with the field named and the typing kept.
    page.fill("#e-name", "siem prod")
    page.fill("#e-url", "https://10.9.8.7/hook")
    page.click("#edit-destination button[type=submit]")
    assert "url:" in page.locator("p.error").inner_text()
    assert page.input_value("#e-name") == "siem prod"

    with kimonaudit.open(site.db, key_file=site.key_file) as log:
        url = json.loads(log.store.get_destination(site.tenant, site.hook).config)["url"]
    page.fill("#e-url", url)
    page.select_option("#e-format", "ocsf")
    page.fill("#e-filter", "is:security")
    page.fill("#e-max-events", "40")
    page.click("#edit-destination button[type=submit]")
    page.wait_for_url("**/console/destinations?done=updated")
    assert "applies from its next batch" in page.locator("p.notice").inner_text()
    row = page.locator(f'tr[data-destination="{site.hook}"]')
    assert "siem prod" in row.inner_text() and "is:security" in row.inner_text()
    assert "webhook / ocsf" in row.inner_text()
    assert _updates(site)[-1]["changed"] == ["name", "format", "filter", "batch.max_events"]

    # A new signing secret, shown on the answer to the form and never again.
    row.get_by_role("link", name="Change").click()
    page.check("input[name=new_signing_secret]")
    page.click("#edit-destination button[type=submit]")
    secret = page.locator("#updated-destination code.secret").inner_text()
    assert secret.startswith("whsec_")
    page.goto("/console/destinations")
    assert secret not in page.content()
    assert page.evaluate("window.__xss") is None
    assert tab.errors == [] and tab.dialogs == []
