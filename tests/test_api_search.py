"""GET /v1/events, /v1/events/histogram and /v1/exports/events.{csv,ndjson}:
in process (FastAPI TestClient) for the contract, and through a real
uvicorn on 127.0.0.1 for a large streamed export and a client that hangs
up halfway."""

from __future__ import annotations

import base64
import csv
import io
import json
import time
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

import kimonaudit
from kimonaudit.api import ApiSettings, create_app
from kimonaudit.export import CSV_COLUMNS
from kimonaudit.views import entry_json
from tests.helpers import event
from tests.servers import ServeProcess, bearer, make_tenant


class Api:
    def __init__(self, client: TestClient, log: kimonaudit.AuditLog, tenant: str, keys: dict):
        self.client = client
        self.log = log
        self.tenant = tenant
        self.keys = keys

    def get(self, path: str, key: str = "read", **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[key]}", "User-Agent": "tests/1.0"}
        return self.client.get(path, params=params, headers=headers)

    def audit(self, action: str) -> list[dict[str, Any]]:
        rows = self.log.search(self.tenant, f"action:{action}")
        return [entry_json(r, self.log.resolve_actor(self.tenant, r.actor_hash)) for r in rows]


@pytest.fixture
def api(db_url: str, key_file: str) -> Iterator[Api]:
    log = kimonaudit.open(db_url, key_file=key_file)
    t = log.create_tenant("acme")
    other = log.create_tenant("other")
    log.append(t.id, [event(i) for i in range(60)])
    log.append(other.id, [event(i) for i in range(10)])
    keys = {
        "read": log.create_api_key(t.id, "reader", ["events:read"])[1],
        "write": log.create_api_key(t.id, "writer", ["events:write"])[1],
        "other": log.create_api_key(other.id, "reader", ["events:read"])[1],
    }
    app = create_app(log, settings=ApiSettings(run_jobs=False))
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Api(client, log, t.id, keys)
    finally:
        log.close()


def error(resp: httpx.Response, status: int, code: str) -> str:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    return str(body["error"]["message"])


def test_search_pages_newest_first_with_a_cursor(api):
    """GET /v1/events pages through every match, newest first, and says when
    it is done."""
    seqs = []
    cursor = None
    while True:
        params = {"q": "action:ticket.*", "limit": 7} | ({"cursor": cursor} if cursor else {})
        body = api.get("/v1/events", **params).json()
        seqs += [e["seq"] for e in body["events"]]
        assert body["query"] == "action:ticket.*"
        if not (cursor := body["next_cursor"]):
            break
    assert seqs == sorted((i for i in range(60) if i % 5 in (0, 1)), reverse=True)
    first = api.get("/v1/events", q="action:ticket.*", limit=1).json()["events"][0]
    assert set(first) >= {"id", "seq", "recorded_at", "action", "actor", "leaf_hash"}
    assert first["actor"]["name"]  # the directory's display fields are there


def test_a_bad_cursor_is_a_400_that_says_why(api):
    """An altered cursor, or one from another query or tenant, is a 400
    invalid_cursor, never another page."""
    cursor = api.get("/v1/events", q="action:ticket.*", limit=5).json()["next_cursor"]
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[3] ^= 0x40  # the sequence number
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    msg = error(api.get("/v1/events", q="action:ticket.*", cursor=forged), 400, "invalid_cursor")
    assert "cursor" in msg and "altered" in msg
    msg = error(api.get("/v1/events", q="action:macro.*", cursor=cursor), 400, "invalid_cursor")
    assert "another" in msg or "does not belong" in msg
    resp = api.get("/v1/events", key="other", q="action:ticket.*", cursor=cursor)
    error(resp, 400, "invalid_cursor")
    error(api.get("/v1/events", q="", cursor="not a cursor"), 400, "invalid_cursor")
    assert api.get("/v1/events", q="action:ticket.*", cursor=cursor).status_code == 200


def test_bad_input_and_missing_scope(api):
    """A bad query is 422 invalid_query naming the problem; a bad limit 422;
    no key 401; a write-only key 403, on every search route."""
    msg = error(api.get("/v1/events", q="foo:bar"), 422, "invalid_query")
    assert "unknown key 'foo:'" in msg
    error(api.get("/v1/events", limit=0), 422, "invalid_input")
    error(api.get("/v1/events/histogram", interval="year"), 422, "invalid_input")
    error(api.get("/v1/exports/events.csv", q='"unterminated'), 422, "invalid_query")
    for path in ("/v1/events", "/v1/events/histogram", "/v1/exports/events.csv",
                 "/v1/exports/events.ndjson"):  # fmt: skip
        error(api.client.get(path), 401, "unauthorized")
        error(api.get(path, key="write"), 403, "forbidden")
    assert api.audit("audit_log.searched") == []  # refused requests read nothing


def test_histogram_is_not_taken_for_an_event_id(api):
    """/v1/events/histogram answers with counts (it is not GET /v1/events/{id}
    with id "histogram"), and GET /v1/events/{id} still works."""
    body = api.get("/v1/events/histogram", q="action:ticket.*", interval="day").json()
    assert body["total"] == 24 and body["interval"] == "day"
    assert sum(b["count"] for b in body["buckets"]) == 24
    eid = api.log.get_entry(api.tenant, 3).event_id
    assert api.get(f"/v1/events/{eid}").json()["event"]["seq"] == 3
    audit = api.audit("audit_log.searched")[0]["metadata"]
    assert audit == {"query": "action:ticket.*", "rows": 24, "via": "api", "histogram": "day"}


def test_each_search_is_audited_after_its_page(api):
    """GET /v1/events appends audit_log.searched (actor: the API key) with the
    query and row count; the page never contains its own entry."""
    page = api.get("/v1/events", q="", limit=100).json()
    assert {e["action"] for e in page["events"]} & {"audit_log.searched"} == set()
    page = api.get("/v1/events", q="", limit=100).json()
    assert page["events"][0]["action"] == "audit_log.searched"  # the previous search
    (older, newer) = reversed(api.audit("audit_log.searched")[:2])
    assert older["metadata"] == {"query": "", "rows": 62, "via": "api", "cursor": False}
    key_id = api.keys["read"][4:16]
    assert older["actor"]["id"] == f"api_key:{key_id}" and older["actor"]["type"] == "api_key"
    assert older["context"]["user_agent"] == "tests/1.0"
    assert newer["metadata"]["rows"] == 63


def test_exports_stream_and_are_audited(api):
    """CSV and NDJSON exports come with their media type and a file name, hold
    every match, and append audit_log.exported with the rows sent."""
    resp = api.get("/v1/exports/events.csv", q="action:ticket.viewed")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/csv; charset=utf-8; header=present"
    assert resp.headers["content-disposition"] == f'attachment; filename="events-{api.tenant}.csv"'
    rows = list(csv.reader(io.StringIO(resp.text, newline="")))
    assert rows[0] == list(CSV_COLUMNS) and [int(r[1]) for r in rows[1:]] == list(range(0, 60, 5))
    resp = api.get("/v1/exports/events.ndjson", q="")
    assert resp.headers["content-type"] == "application/x-ndjson"
    assert len(resp.text.splitlines()) == 63  # 60 events, 2 key creations, the CSV export
    exported = [a["metadata"] for a in api.audit("audit_log.exported")]
    assert exported == [
        {"query": "", "rows": 63, "via": "api", "format": "ndjson", "complete": True},
        {"query": "action:ticket.viewed", "rows": 12, "via": "api", "format": "csv",
         "complete": True},
    ]  # fmt: skip


def test_openapi_documents_the_routes(api):
    """/openapi.json lists the search routes with their parameters and media types."""
    spec = api.client.get("/openapi.json").json()
    paths = spec["paths"]
    assert {p["name"] for p in paths["/v1/events"]["get"]["parameters"]} >= {"q", "limit", "cursor"}
    assert "interval" in {p["name"] for p in paths["/v1/events/histogram"]["get"]["parameters"]}
    csv_doc = paths["/v1/exports/events.csv"]["get"]["responses"]["200"]["content"]
    assert "text/csv" in csv_doc
    assert "post" in paths["/v1/events"]  # appends still live at the same path


# -- a real server --------------------------------------------------------------------
ROWS = 20_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    tmp = tmp_path_factory.mktemp("export")
    db, key_file = f"sqlite:///{tmp / 'export.db'}", str(tmp / "export.key")
    tid, key = make_tenant(db, key_file, "bulk")
    with kimonaudit.open(db, key_file=key_file) as log:
        for start in range(0, ROWS, 1000):
            batch = [event(i) for i in range(start, start + 1000)]
            batch[7]["context"] = {"user_agent": 'Quote " comma , newline \r\n end', "ip": "::1"}
            log.append(tid, batch)
    with ServeProcess(db, key_file, tmp, "--checkpoint-interval", "0.1") as srv:
        yield srv.url, tid, key
    assert "Traceback" not in srv.output.read_text()


def test_a_large_export_over_real_http_is_rfc4180(server):
    """20,000 rows streamed by uvicorn read back with the csv module: header,
    every row complete and in order, every field quoted, CRLF."""
    url, _, key = server
    with (
        httpx.Client(base_url=url, timeout=60) as c,
        c.stream("GET", "/v1/exports/events.csv", headers=bearer(key)) as resp,
    ):
        assert resp.status_code == 200
        assert "content-length" not in resp.headers  # streamed, not buffered
        chunks = list(resp.iter_bytes())
    data = b"".join(chunks)
    assert len(chunks) > 10
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), strict=True))
    assert rows[0] == list(CSV_COLUMNS)
    body = rows[1:]
    assert len(body) == ROWS + 1  # the events and the admin key's creation
    assert [int(r[1]) for r in body] == list(range(ROWS + 1))
    assert all(len(r) == len(CSV_COLUMNS) for r in body)
    again = io.StringIO()
    csv.writer(again, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(rows)
    assert again.getvalue().encode("utf-8") == data
    assert body[8][CSV_COLUMNS.index("user_agent")] == 'Quote " comma , newline \r\n end'


def test_a_client_that_hangs_up_is_audited_with_the_rows_sent(server):
    """A download abandoned after its first chunk still appends
    audit_log.exported, with complete=false and fewer rows than there are."""
    url, _, key = server
    with httpx.Client(base_url=url, timeout=60) as c:
        with c.stream("GET", "/v1/exports/events.ndjson", params={"q": "-action:audit_log.*"},
                      headers=bearer(key)) as resp:  # fmt: skip
            assert resp.status_code == 200
            next(resp.iter_bytes())
        # leaving the block closes the connection with most of the export unread
        deadline = time.monotonic() + 20
        found: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not found:
            r = c.get("/v1/events", params={"q": "action:audit_log.exported"}, headers=bearer(key))
            found = [
                e["metadata"] for e in r.json()["events"] if e["metadata"]["format"] == "ndjson"
            ]
            time.sleep(0.1)
    assert found, "no audit entry for the abandoned export"
    (meta,) = found
    assert meta["complete"] is False and meta["query"] == "-action:audit_log.*"
    assert 0 < meta["rows"] < ROWS


def test_reading_one_event_is_recorded_as_audit_log_viewed(tmp_path):
    """GET /v1/events/{id} appends audit_log.viewed naming the entry read and the key."""
    from fastapi.testclient import TestClient

    import kimonaudit
    from kimonaudit.api.app import create_app

    with kimonaudit.open(f"sqlite:///{tmp_path / 'a.db'}", key_file=str(tmp_path / "k")) as log:
        tid = log.create_tenant("acme").id
        _, key = log.create_api_key(tid, "reader", ["events:read"])
        log.append(tid, [event(0, id="evt-0")])
        with TestClient(create_app(log)) as client:
            r = client.get("/v1/events/evt-0", headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200
        page = log.search(tid, "action:audit_log.viewed")
        (entry,) = page.entries
        payload = json.loads(entry.payload)
        assert payload["metadata"]["event_id"] == "evt-0"
        assert payload["metadata"]["via"] == "api" and payload["metadata"]["rows"] == 1
