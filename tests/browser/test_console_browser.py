"""The console in a real browser: Debian's chromium driven by Playwright
against `python -m kimonaudit serve` on 127.0.0.1.

Sign in, find "who changed roles last week" and "who viewed ticket 10482"
with the query language, see the security highlight, open an event, export
a CSV (with and without JavaScript), and check that script placed in every
field of an event never runs. A screenshot of the stream page is saved to
test-artifacts/console-stream.png.

Playwright never downloads a browser here: it launches /usr/bin/chromium,
which scripts/setup.sh installs from Debian.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import kimonaudit
from kimonaudit.console.accounts import ConsoleAccounts
from tests.helpers import event, hostile_events
from tests.servers import ServeProcess

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
EMAIL = "owner@acme.test"
PASSWORD = "correct horse battery"


@dataclass
class Site:
    url: str
    tenant: str
    hostile_seqs: list[int]


def _seed(db: str, key_file: str) -> tuple[str, list[int]]:
    with kimonaudit.open(db, key_file=key_file) as log:
        tenant = log.create_tenant("Acme Support").id
        ConsoleAccounts(log).create_user(tenant, EMAIL, PASSWORD, "owner")
        log.append(tenant, [event(i) for i in range(60)])
        log.append(tenant, [
            {"action": "ticket.viewed", "target": {"type": "ticket", "id": "10482"},
             "actor": {"id": "agent_9", "type": "agent", "name": "Ann Lee"}},
            {"action": "ticket.viewed", "target": {"type": "ticket", "id": "10482"},
             "actor": {"id": "agent_5", "type": "agent", "name": "Bo Chen"}},
            {"action": "role.revoked", "target": {"type": "user", "id": "agent_5"},
             "actor": {"id": "admin_1", "type": "admin", "name": "Root Admin"},
             "changes": [{"field": "role", "from": "admin", "to": "agent"}]},
        ])  # fmt: skip
        receipts = log.append(tenant, hostile_events())
        return tenant, [r.seq for r in receipts]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("browser")
    db, key_file = f"sqlite:///{tmp / 'console.db'}", str(tmp / "console.key")
    tenant, hostile = _seed(db, key_file)
    with ServeProcess(db, key_file, tmp, "--checkpoint-interval", "0.2") as server:
        yield Site(server.url, tenant, hostile)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: scripts/setup.sh --test installs it")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Tab:
    page: Any
    dialogs: list[str]
    errors: list[str]


def _tab(browser: Any, site: Site, javascript: bool = True) -> Iterator[Tab]:
    context = browser.new_context(
        base_url=site.url, accept_downloads=True, java_script_enabled=javascript,
        viewport={"width": 1280, "height": 900},
    )  # fmt: skip
    page = context.new_page()
    page.set_default_timeout(10_000)
    tab = Tab(page, [], [])
    page.on("dialog", lambda d: (tab.dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: tab.errors.append(str(e)))
    try:
        yield tab
    finally:
        context.close()


@pytest.fixture
def tab(browser: Any, site: Site) -> Iterator[Tab]:
    yield from _tab(browser, site)


@pytest.fixture
def no_js_tab(browser: Any, site: Site) -> Iterator[Tab]:
    yield from _tab(browser, site, javascript=False)


def sign_in(tab: Tab, site: Site) -> None:
    page = tab.page
    page.goto(f"/console/signin?tenant={site.tenant}")
    assert page.input_value("#tenant") == site.tenant
    page.fill("#email", EMAIL)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/console/events")


def search(tab: Tab, query: str) -> None:
    tab.page.fill("#q", query)
    tab.page.click("form.search button[type=submit]")
    tab.page.wait_for_load_state()


def row_actions(page: Any) -> list[str]:
    return [t.strip() for t in page.locator("table.events tbody tr td:nth-child(3) code")
            .all_inner_texts()]  # fmt: skip


def test_sign_in_search_highlight_and_screenshot(tab: Tab, site: Site) -> None:
    """A new user signs in, finds who changed roles last week and who viewed
    ticket 10482, and sees security rows highlighted with icon and label."""
    page = tab.page
    page.goto("/console/")
    page.wait_for_url("**/console/signin**")
    sign_in(tab, site)
    search(tab, "action:role.* created:>-7d")
    actions = row_actions(page)
    assert actions and set(actions) <= {"role.assigned", "role.revoked"}
    first = page.locator("table.events tbody tr").first
    assert "security" in (first.get_attribute("class") or "")
    assert first.locator(".badge-security svg").count() == 1
    assert first.locator(".badge-security").inner_text().strip().lower() == "security"
    background = first.evaluate("e => getComputedStyle(e).backgroundColor")
    assert background not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)")
    assert page.get_by_text("Root Admin").count() >= 1

    search(tab, "action:ticket.viewed target:ticket:10482")
    assert row_actions(page) == ["ticket.viewed", "ticket.viewed"]
    viewers = page.locator("table.events tbody tr td:nth-child(4)").all_inner_texts()
    assert [v.strip() for v in viewers] == ["Bo Chen", "Ann Lee"]

    search(tab, "")
    page.click("#security-only")
    page.wait_for_load_state()
    rows = page.locator("table.events tbody tr")
    assert rows.count() > 0
    assert all(
        "security" in (c or "")
        for c in [rows.nth(i).get_attribute("class") for i in range(rows.count())]
    )
    assert page.locator("svg.bars rect.bar").count() == 30
    ARTIFACTS.mkdir(exist_ok=True)
    search(tab, "")
    page.screenshot(path=str(ARTIFACTS / "console-stream.png"), full_page=True)
    assert (ARTIFACTS / "console-stream.png").stat().st_size > 10_000
    assert tab.errors == [] and tab.dialogs == []


def test_open_an_event_and_see_it_verified(tab: Tab, site: Site) -> None:
    """From the stream to an event: before/after, the actor by name and the
    verified mark computed against the newest signed checkpoint."""
    page = tab.page
    sign_in(tab, site)
    search(tab, "action:role.revoked")
    page.locator("table.events tbody tr").first.locator("a").first.click()
    page.wait_for_url("**/console/events/*")
    assert "Verified" in page.locator("#verified").inner_text()
    assert page.locator("td.before").first.inner_text() == "admin"
    assert page.locator("td.after").first.inner_text() == "agent"
    assert "Root Admin" in page.locator("#actor").inner_text()
    assert page.locator("#leaf-json").inner_text().startswith('{"_v":1,"action":"role.revoked"')


def test_export_csv_from_the_button(tab: Tab, site: Site) -> None:
    """The CSV button downloads the rows the query matches."""
    page = tab.page
    sign_in(tab, site)
    search(tab, "action:ticket.viewed target:ticket:10482")
    with page.expect_download() as info:
        page.click("#export-csv")
    download = info.value
    assert download.suggested_filename.endswith(".csv")
    text = Path(download.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["target_id"] for r in rows] == ["10482", "10482"]
    assert {r["actor_name"] for r in rows} == {"Ann Lee", "Bo Chen"}


def test_main_flows_work_without_javascript(no_js_tab: Tab, site: Site) -> None:
    """With JavaScript off: sign in, search, filter by chip, open an event,
    export CSV."""
    page = no_js_tab.page
    sign_in(no_js_tab, site)
    search(no_js_tab, "action:role.*")
    assert set(row_actions(page)) <= {"role.assigned", "role.revoked"}
    page.click("a.chip-security")
    page.wait_for_load_state()
    assert "is:security" in page.input_value("#q")
    page.locator("table.events tbody tr").first.locator("a").first.click()
    page.wait_for_url("**/console/events/*")
    assert "Verified" in page.locator("#verified").inner_text()
    page.go_back()
    with page.expect_download() as info:
        page.click("#export-csv")
    rows = list(csv.DictReader(io.StringIO(Path(info.value.path()).read_text(encoding="utf-8"))))
    assert rows and {r["action"] for r in rows} <= {"role.assigned", "role.revoked"}


def test_script_in_event_fields_stays_inert(tab: Tab, site: Site) -> None:
    """`<script>`, `"><img onerror>` and `javascript:` payloads in every
    field show as text: nothing runs, no dialog opens, no such link exists."""
    page = tab.page
    sign_in(tab, site)
    urls = [
        "/console/events",
        "/console/events?q=action:role.assigned",
        '/console/events?q="<script>"',
    ]
    urls += [f"/console/events/{seq}" for seq in site.hostile_seqs]
    for url in urls:
        page.goto(url)
        page.wait_for_load_state("load")
        assert page.evaluate("() => window.__xss") is None, url
        assert page.locator("img").count() == 0, url
        hrefs = page.eval_on_selector_all(
            "a[href]", "els => els.map(e => new URL(e.getAttribute('href'), location.href).href)"
        )
        assert not [h for h in hrefs if not h.startswith(site.url)], url
        assert page.locator("script:not([src])").count() == 0, url
    page.goto(f"/console/events/{site.hostile_seqs[0]}")
    assert "<script>window.__xss=1</script>" in page.locator("#actor").inner_text()
    assert tab.dialogs == [] and tab.errors == []


MUTED = "rgb(95, 107, 122)"  # --muted in console.css
CLEAR = ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)")


def _style(locator: Any, prop: str) -> str:
    return locator.evaluate(f"e => getComputedStyle(e).{prop}")


def test_first_screen_is_the_helpdesk_not_the_viewers_own_log_access(tab: Tab, site: Site) -> None:
    """After a few page views (each recorded as log access), the first screen
    still shows the helpdesk's history and its security events; "Include log
    access" brings the views and searches back, grey and without the badge."""
    page = tab.page
    sign_in(tab, site)
    for _ in range(4):
        page.goto("/console/events")
    page.goto(f"/console/events/{site.hostile_seqs[0]}")
    page.goto("/console/events")
    actions = row_actions(page)
    assert actions and not {"audit_log.viewed", "audit_log.searched"} & set(actions)
    assert page.locator("table.events tbody tr.security").count() > 0
    toggle = page.locator("#include-access")
    assert toggle.is_visible() and toggle.inner_text().strip() == "Include log access"
    assert toggle.get_attribute("aria-pressed") == "false"

    toggle.click()
    page.wait_for_load_state()
    assert page.locator("#include-access").get_attribute("aria-pressed") == "true"
    assert "access=1" in page.url
    quiet = page.locator("table.events tbody tr.log-access")
    assert quiet.count() >= 5
    for i in range(quiet.count()):
        row = quiet.nth(i)
        action = row.locator("td:nth-child(3) code").inner_text()
        assert action in ("audit_log.viewed", "audit_log.searched")
        assert row.locator(".badge-security").count() == 0
        assert row.locator(".badge-access").inner_text().strip().lower() == "log access"
        assert _style(row, "backgroundColor") in CLEAR
        assert _style(row.locator("td").nth(2), "color") == MUTED
    security = page.locator("table.events tbody tr.security").first
    assert _style(security, "backgroundColor") not in CLEAR  # still highlighted

    page.click("#include-access")
    page.wait_for_load_state()
    assert page.locator("table.events tbody tr.log-access").count() == 0
    assert tab.errors == []


def test_active_security_chip_is_as_clear_as_the_others(tab: Tab, site: Site) -> None:
    """An active chip is filled, with white text and a tick, for "Security
    only" as for the others; an inactive one is not."""
    page = tab.page
    sign_in(tab, site)
    page.goto("/console/events")
    chip = page.locator("a.chip-security")
    assert chip.get_attribute("aria-pressed") == "false"
    assert _style(chip, "backgroundColor") in CLEAR and "✓" not in chip.inner_text()
    chip.click()
    page.wait_for_load_state()
    chip = page.locator("a.chip-security")
    assert chip.get_attribute("aria-pressed") == "true" and "✓" in chip.inner_text()
    assert _style(chip, "backgroundColor") == "rgb(179, 38, 30)"  # --sec, filled
    assert _style(chip, "color") == "rgb(255, 255, 255)"
    assert _style(chip.locator(".badge-security"), "color") == "rgb(255, 255, 255)"
    assert page.locator("a.chip.on").count() == 1

    page.click("a.chip:has-text('Failures')")
    page.wait_for_load_state()
    other = page.locator("a.chip.on:has-text('Failures')")
    assert other.get_attribute("aria-pressed") == "true" and "✓" in other.inner_text()
    assert _style(other, "backgroundColor") == "rgb(31, 95, 191)"  # --accent, filled
    assert _style(other, "color") == "rgb(255, 255, 255)"
    assert page.locator("a.chip.on").count() == 2  # both terms are on


def test_root_url_and_offline_docs_in_the_browser(tab: Tab, site: Site) -> None:
    """The README's URL opens the console; /docs renders Swagger UI with
    every request to another host refused (a machine without internet)."""
    page = tab.page
    outside: list[str] = []

    def only_this_server(route: Any) -> None:
        if route.request.url.startswith(site.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_this_server)
    page.goto("/")
    page.wait_for_url("**/console/signin**")
    page.goto("/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "KimonAudit" in page.locator(".swagger-ui .info .title").inner_text()
    page.wait_for_selector(".opblock-summary-path")
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert any("/v1/events" in p for p in paths)
    assert outside == [] and tab.errors == []
