"""Every accepted event id can be fetched by id (issue 10, item 7): ids
that `GET /v1/events/{id}` could never reach (a "/", `histogram`, `.`,
`..`) are refused at ingest with a 422 naming the id; any other id is
fetched back, percent-encoded, from a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kimonaudit.core.events import validate_event
from kimonaudit.errors import InvalidEvent
from tests.servers import ServeProcess, bearer, make_tenant


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    tmp: Path = tmp_path_factory.mktemp("ids")
    db, key_file = f"sqlite:///{tmp / 'audit.db'}", str(tmp / "k.key")
    _, key = make_tenant(db, key_file, "acme")
    with ServeProcess(db, key_file, tmp, "--rate-limit", "0") as srv:
        yield srv.url, key


def _post(server: tuple[str, str], event_id: str) -> httpx.Response:
    url, key = server
    body = {"id": event_id, "action": "ticket.viewed", "target": {"type": "ticket", "id": "1"}}
    return httpx.post(f"{url}/v1/events", json=body, headers=bearer(key))


def _get(server: tuple[str, str], event_id: str) -> httpx.Response:
    url, key = server
    return httpx.get(f"{url}/v1/events/{quote(event_id, safe='')}", headers=bearer(key))


@pytest.mark.parametrize("event_id", ["a/b", "/", "tickets/10482/view", "histogram", ".", ".."])
def test_unreachable_ids_are_refused_at_ingest(server: tuple[str, str], event_id: str) -> None:
    """An id the fetch route could never reach gets a 422 naming `id`, and
    the library refuses it too."""
    r = _post(server, event_id)
    assert r.status_code == 422
    assert r.json()["error"]["fields"][0]["path"] == "id"
    with pytest.raises(InvalidEvent) as caught:
        validate_event({"id": event_id, "action": "ticket.viewed"})
    assert caught.value.field == "id"


IDS = st.text(
    st.characters(min_codepoint=32, exclude_categories=("Cc", "Cs")), min_size=1, max_size=40
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(IDS)
def test_every_accepted_id_is_fetchable(server: tuple[str, str], event_id: str) -> None:
    """Whatever the id: refused with a 422 naming it, or fetched back by it."""
    r = _post(server, event_id)
    if r.status_code == 422:
        assert r.json()["error"]["fields"][0]["path"] == "id"
        return
    assert r.status_code == 201, r.text
    got = _get(server, event_id)
    assert got.status_code == 200, (event_id, got.text)
    assert got.json()["event"]["id"] == event_id
