"""Console defects found by the security probe (issue 10, item 8): the
sign-in `next` resolved as a browser would, and deleting a saved search
that is not yours."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.consoles import PASSWORD, Console, csrf_of, make_console, sign_in


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    with make_console(tmp_path) as c:
        yield c


@pytest.mark.parametrize(
    "target",
    [
        "/console/../v1/keys",
        "/console/%2e%2e/v1/keys",
        "/console/%2E%2E/metrics",
        "/console/./../openapi.json",
        "/console/events/../../v1/events?q=x",
        "/console/..%2fv1/keys",
    ],
)
def test_next_with_dot_segments_stays_in_the_console(console: Console, target: str) -> None:
    """`next` that resolves outside /console/ once the browser collapses dot
    segments (plain or percent-encoded) leads to the events page instead."""
    r = sign_in(console.client(), console.tenant, console.owner.email, PASSWORD, next=target)
    assert r.headers["location"] == "/console/events", target


def test_next_inside_the_console_is_kept_normalised(console: Console) -> None:
    """A console path is followed, dot segments collapsed, query kept."""
    for target, expected in (
        ("/console/verify", "/console/verify"),
        ("/console/events?q=action%3Arole.%2A", "/console/events?q=action%3Arole.%2A"),
        ("/console/users/../apikeys", "/console/apikeys"),
    ):
        r = sign_in(console.client(), console.tenant, console.owner.email, PASSWORD, next=target)
        assert r.headers["location"] == expected, target


def test_deleting_another_tenants_saved_search_is_404(console: Console) -> None:
    """Deleting a saved search of another tenant (or user) answers 404 and
    says nothing was deleted; the search is still there."""
    c = console.signed_in()
    page = c.get("/console/events").text
    saved = c.post(
        "/console/searches",
        data={"csrf": csrf_of(page), "name": "Mine", "q": "is:security"},
        follow_redirects=True,
    ).text
    m = re.search(r"/console/searches/(s_[a-z2-7]+)/delete", saved)
    assert m is not None
    other = console.log.create_tenant("other").id
    console.state.accounts.create_user(other, "spy@other.test", PASSWORD, "owner")
    spy = console.client()
    assert sign_in(spy, other, "spy@other.test", PASSWORD).status_code == 303
    r = spy.post(
        f"/console/searches/{m.group(1)}/delete",
        data={"csrf": csrf_of(spy.get("/console/events").text)},
    )
    assert r.status_code == 404
    assert "Saved search deleted" not in r.text
    assert "Mine" in c.get("/console/events").text
