"""Issue 10 item 6: a JSON body that repeats a key is refused with a 422
naming it (I-JSON, RFC 7493), on the fast path and on the reference path,
and nothing is appended."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kimonaudit.api import ApiSettings
from tests.test_api_errors import Api, _make, assert_error, tree_size


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    yield from _make(tmp_path, ApiSettings(checkpoint_interval=3600))


CASES = [
    (b'{"action":"a.b","action":"c.d"}', "action", "action"),
    (b'{"action": "ticket.viewed", "action" : "role.deleted"}', "action", "action"),
    (
        b'{"events":[{"action":"ticket.viewed"},{"action":"ticket.viewed",'
        b'"actor":{"id":"u1","id":"u2"}}]}',
        "events[1].actor.id",
        "id",
    ),
    (
        b'{"events":[{"action":"ticket.viewed","metadata":{"via":"web","via":"api"}}]}',
        "events[0].metadata.via",
        "via",
    ),
    (b'{"events":[{"action":"ticket.viewed"}],"events":[{"action":"x.y"}]}', "events", "events"),
    # the reference path too: a bad value elsewhere does not hide the repeat
    (b'{"action":"ticket.viewed","outcome":"ok","id":"a","id":"b"}', "id", "id"),
    (b'{"action":"ticket.viewed","metadata":{"a-b":1.5,"a-b":2}}', 'metadata["a-b"]', "a-b"),
]


@pytest.mark.parametrize(("raw", "field", "key"), CASES)
def test_duplicate_key_is_a_422_naming_it(api: Api, raw: bytes, field: str, key: str) -> None:
    """Each body gets invalid_event with the repeated key's path; nothing is appended."""
    before = tree_size(api)
    resp = api.client.post(
        "/v1/events", content=raw, headers=api.h(**{"Content-Type": "application/json"})
    )
    err = assert_error(resp, 422, "invalid_event")
    (only,) = err["fields"]
    assert only["path"] == field
    assert only["message"].startswith(f'duplicate key "{key}"')
    assert tree_size(api) == before


def test_same_key_in_different_objects_is_fine(api: Api) -> None:
    """ "id" in the event, the actor and the target is not a repeat."""
    raw = (
        b'{"action":"ticket.viewed","id":"e1","actor":{"id":"u1"},'
        b'"target":{"type":"ticket","id":"t1"},"metadata":{"id":"m"}}'
    )
    resp = api.client.post(
        "/v1/events", content=raw, headers=api.h(**{"Content-Type": "application/json"})
    )
    assert resp.status_code == 201, resp.text
