"""Search (kimonaudit.search) on real SQLite and PostgreSQL: pages, the
signed keyset cursor, stability while entries arrive, the histogram, and
the audit trail of the log's own use."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kimonaudit
from kimonaudit import search as search_mod
from kimonaudit.core.query import parse
from kimonaudit.core.timefmt import from_us
from kimonaudit.errors import InvalidInput, InvalidQuery, NotFound
from kimonaudit.search import InvalidCursor, record_access
from kimonaudit.service import AuditLog
from kimonaudit.store.querysql import CompileContext, compile_where
from tests.conftest import FakeClock
from tests.helpers import event

N = 240


def fill(log: AuditLog, clock: FakeClock, tenant_id: str, n: int = N) -> None:
    """`n` varied events in batches of 12, three hours apart: about 2.5 days."""
    for start in range(0, n, 12):
        batch = [event(i) for i in range(start, min(n, start + 12))]
        for i, ev in enumerate(batch):
            if (start + i) % 7 == 0:
                ev["outcome"] = "failure"
            if (start + i) % 11 == 0:
                ev["metadata"] = {"note": "refund requested", "n": start + i}
        log.append(tenant_id, batch)
        clock.advance(hours=3)


def naive(log: AuditLog, tenant_id: str, q: str, now_us: int | None = None) -> list[int]:
    """Seqs matching `q`, newest first, by the plain compiled predicate."""
    ctx = CompileContext(
        log.store.dialect,  # type: ignore[arg-type]
        log.now_us() if now_us is None else now_us,
        lambda a: log.actor_hash(tenant_id, a),
    )
    where, params = compile_where(parse(q), ctx)
    return [r.seq for r in log.store.search(tenant_id, where, params, 100_000)]


def all_pages(log: AuditLog, tenant_id: str, q: str, limit: int) -> list[list[int]]:
    pages = []
    cursor = None
    while True:
        page = log.search(tenant_id, q, limit=limit, cursor=cursor)
        pages.append([r.seq for r in page])
        cursor = page.next_cursor
        if cursor is None:
            return pages
        assert len(page) == limit


QUERIES = [
    "",
    "action:ticket.viewed",
    "action:ticket.*",
    "action:role.*,auth.*",
    "actor:agent_42",
    "actor:agent_42 -action:ticket.viewed",
    "is:security",
    "is:failure",
    "ip:203.0.113.0/28",
    "target:ticket:10010",
    "severity:>=high",
    "created:>-1d",
    "created:-2d..-1d",
    "created:2026-01-06",
    "created:<2026-01-06T06:00Z action:ticket.*",
    "seq:10..50,100",
    "pending",
    '"status pending"',
    "refund",
    "refund actor:agent_1",
    "pending actor:agent_42",
    '"status pending" target_type:ticket',
    "-refund is:failure",
    "mozilla -pending",
    "pending created:>-1d",
    "nothingmatchesthis",
]


@pytest.mark.parametrize("limit", [7, 50])
def test_pages_concatenate_to_every_match_newest_first(log, clock, limit):
    """Paging through any query yields exactly the matches of the plain
    predicate, newest first, `limit` per page, with no cursor after the last."""
    t = log.create_tenant("acme")
    other = log.create_tenant("other")
    fill(log, clock, t.id)
    fill(log, clock, other.id, 60)  # another tenant's matches never show
    for q in QUERIES:
        want = naive(log, t.id, q)
        pages = all_pages(log, t.id, q, limit)
        got = [s for p in pages for s in p]
        assert got == want, q
        assert all(len(p) == limit for p in pages[:-1]), q
        assert len(pages[-1]) <= limit


STRATEGIES = {
    # Only the ordered walk (newest first along an index, stopping at `limit`).
    "walk": {
        "sqlite_search._WALK_BUDGET": 10**9,
        "sqlite_search._TEXT_BUDGET": 10**9,
        "sqlite_search._SORT_LIMIT": -1,
        "postgres_search._SORT_LIMIT": -1,
        "postgres_search._TEXT_DRIVER_LIMIT": -1,
        "postgres_search._TEXT_DRIVER_BUDGET_MS": None,
        "postgres_search._FILTER_BUDGET_MS": "100s",
        "postgres_search._TEXT_PLANNER_BUDGET_MS": None,
        "postgres_search._TEXT_JOIN_BUDGET_MS": None,
        "postgres_search._MANY_LOOKUP_BUDGET_MS": None,
        "postgres_search._TEXT_BUDGET_MS": "100s",
    },
    # Several terms' newest postings merged, lists cut short after one
    # posting (so cutoffs and the retry are exercised), then the sort.
    "merge": {
        "sqlite_search._SORT_LIMIT": -1,
        "sqlite_search._MERGE_MIN": 1,
        "sqlite_search._MERGE_SHARE": 0,
        "sqlite_search._WALK_BUDGET": -1,
        "postgres_search._SORT_LIMIT": 10**9,
        "postgres_search._MERGE_MIN": 1,
        "postgres_search._MERGE_SHARE": 0,
    },
    # PostgreSQL: free text looked up one document at a time, in the
    # planner's order (the first try for a page of words).
    "probe": {
        "postgres_search._TEXT_DRIVER_LIMIT": -1,
        "postgres_search._TEXT_DRIVER_BUDGET_MS": None,
        "postgres_search._TEXT_PLANNER_BUDGET_MS": "100s",
    },
    # PostgreSQL: free text beside a filter of many postings, the filter's
    # postings read newest first and each document checked (the first try).
    "postings-then-words": {
        "postgres_search._TEXT_DRIVER_LIMIT": -1,
        "postgres_search._TEXT_DRIVER_BUDGET_MS": "100s",
    },
    # Only the last resort (the planner's choice of index, then a sort).
    "lookup": {
        "sqlite_search._MERGE_TERMS": 0,
        "postgres_search._MERGE_TERMS": 0,
        "sqlite_search._WALK_BUDGET": -1,
        "sqlite_search._TEXT_BUDGET": -1,
        "sqlite_search._SORT_LIMIT": 10**9,
        "postgres_search._SORT_LIMIT": 10**9,
        "postgres_search._TEXT_DRIVER_LIMIT": 10**9,
        "postgres_search._TEXT_DRIVER_BUDGET_MS": None,
        "postgres_search._FILTER_BUDGET_MS": None,
        "postgres_search._TEXT_PLANNER_BUDGET_MS": None,
        "postgres_search._TEXT_JOIN_BUDGET_MS": None,
        "postgres_search._MANY_LOOKUP_BUDGET_MS": None,
        "postgres_search._WALK_RETRY_BUDGET_MS": None,
        "postgres_search._TEXT_BUDGET_MS": None,
    },
}


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_every_strategy_gives_the_same_pages(log, clock, monkeypatch, strategy):
    """Whichever way a store finds a page (walking an index in order, or
    looking matches up and sorting them), the pages are the same."""
    for name, value in STRATEGIES[strategy].items():
        monkeypatch.setattr(f"kimonaudit.store.{name}", value)
    t = log.create_tenant("acme")
    fill(log, clock, t.id)
    for q in QUERIES:
        assert [s for p in all_pages(log, t.id, q, 9) for s in p] == naive(log, t.id, q), q


def test_merged_postings_never_skip_past_their_cutoff(log, monkeypatch):
    """A driver of several terms merged from short lists: an old match of
    one term must not come before newer matches of another that were not
    read yet."""
    for name, value in STRATEGIES["merge"].items():
        monkeypatch.setattr(f"kimonaudit.store.{name}", value)
    t = log.create_tenant("acme")
    old = [event(2, actor={"id": "agent_2"}) for _ in range(5)]
    mid = [event(0, actor={"id": "agent_2"}) for _ in range(5)]
    new = [event(0, actor={"id": "agent_1"}) for _ in range(10)]
    assert {e["action"] for e in old} == {"auth.login.succeeded"}
    for batch in (old, mid, new):
        log.append(t.id, batch)
    assert log.store.wait_indexed()
    q = "action:ticket.viewed,auth.login.succeeded -actor:agent_1"
    want = naive(log, t.id, q)
    assert len(want) == 10
    assert [s for p in all_pages(log, t.id, q, 3) for s in p] == want


def test_several_terms_are_merged_first_however_few_their_postings(
    tmp_path, key_file, clock, monkeypatch
):
    """SQLite: a driver of several terms takes the newest postings of each
    first even when it has few postings in all (sorting them meant a ledger
    lookup per posting: 71 ms for an IP range and is:failure at 1M
    entries), and the pages are the same."""
    import kimonaudit
    from kimonaudit.store import sqlite_search

    calls: list[int] = []
    real = sqlite_search.SQLiteSearch._merged

    def counted(conn, ids, lo, hi, sql, limit):
        calls.append(len(ids))
        return real(conn, ids, lo, hi, sql, limit)

    monkeypatch.setattr(sqlite_search.SQLiteSearch, "_merged", staticmethod(counted))
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    with kimonaudit.open(url, key_file=key_file, clock=clock) as log:
        t = log.create_tenant("acme")
        fill(log, clock, t.id)
        assert log.store.wait_indexed()
        q = "action:ticket.viewed,auth.login.succeeded"
        assert [s for p in all_pages(log, t.id, q, 9) for s in p] == naive(log, t.id, q)
    assert calls and all(n == 2 for n in calls)


_WORDS = ["pending", "refund", "mozilla", "ticket", "status", "viewed", "admin", "web"]
_FILTERS = [
    "action:ticket.viewed",
    "action:ticket.*",
    "action:*.assigned",
    "actor:agent_42",
    "actor:agent_1,admin_7",
    "actor_type:agent",
    "is:security",
    "is:failure",
    "outcome:success",
    "severity:>=low",
    "target_type:ticket",
    "target:ticket:10007",
    "ip:203.0.113.0/26",
    "created:>-1d",
    "created:<-1d",
    "created:-3d..-2d",
    "seq:>100",
    "seq:20..200",
]
_terms = st.one_of(
    st.sampled_from(_FILTERS),
    st.sampled_from(_WORDS),
    st.sampled_from(_WORDS).map(lambda w: '"status ' + w + '"'),
)
_queries = st.lists(
    st.tuples(st.booleans(), _terms).map(lambda nt: ("-" if nt[0] else "") + nt[1]), max_size=3
).map(" ".join)


def test_generated_queries_page_like_the_plain_predicate(log, clock):
    """For generated combinations of filters, negations and free text, the
    pages equal the plain predicate's matches."""
    t = log.create_tenant("acme")
    fill(log, clock, t.id, 120)

    @settings(
        max_examples=40, deadline=None, database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )  # fmt: skip
    @given(_queries, st.integers(3, 40))
    def check(q: str, limit: int) -> None:
        assert [s for p in all_pages(log, t.id, q, limit) for s in p] == naive(log, t.id, q)

    check()


def test_pages_are_stable_while_events_arrive(log, clock):
    """Entries appended between pages (matching ones included) neither shift
    nor repeat the pages still to come."""
    t = log.create_tenant("acme")
    fill(log, clock, t.id)
    q = "action:ticket.* -actor:admin_7"
    before = naive(log, t.id, q)
    page = log.search(t.id, q, limit=20)
    seen = [r.seq for r in page]
    cursor = page.next_cursor
    while cursor:
        log.append(t.id, [event(0), event(1), event(5)])  # ticket events, newer than all
        clock.advance(minutes=5)
        page = log.search(t.id, q, limit=20, cursor=cursor)
        seen += [r.seq for r in page]
        cursor = page.next_cursor
    assert seen == before
    assert naive(log, t.id, q)[: len(before)] != before  # the new entries do match


def test_relative_times_keep_their_meaning_across_pages(log, clock):
    """`created:>-1d` on page 2 counts back from when page 1 ran, not from
    the later moment page 2 is asked for."""
    t = log.create_tenant("acme")
    fill(log, clock, t.id)
    q = "created:>-1d"
    want = naive(log, t.id, q)
    page = log.search(t.id, q, limit=10)
    clock.advance(hours=12)  # without the cursor's time, half the matches would drop out
    rest = all_pages_from(log, t.id, q, page.next_cursor)
    assert [r.seq for r in page] + rest == want


def all_pages_from(log: AuditLog, tenant_id: str, q: str, cursor: str | None) -> list[int]:
    out: list[int] = []
    while cursor:
        page = log.search(tenant_id, q, limit=10, cursor=cursor)
        out += [r.seq for r in page]
        cursor = page.next_cursor
    return out


def _flip(cursor: str, at: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[at] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def test_a_cursor_works_only_unaltered_with_its_query_and_tenant(log, clock):
    """Any changed bit, another query, another tenant, or garbage: InvalidCursor
    (field "cursor"), never a silently different page."""
    a = log.create_tenant("a")
    b = log.create_tenant("b")
    fill(log, clock, a.id, 60)
    fill(log, clock, b.id, 60)
    cursor = log.search(a.id, "action:ticket.*", limit=5).next_cursor
    assert cursor is not None
    # the same query written differently is the same query
    assert log.search(a.id, "Action:ticket.*  ", limit=5, cursor=cursor).entries
    n = len(base64.urlsafe_b64decode(cursor + "=="))
    bad = [_flip(cursor, i) for i in range(n)]
    bad += ["", "x", cursor[:-2], cursor + "AA", "!!!!", "é" * 20, "A" * 101]
    for c in bad:
        if c == "":
            continue  # empty means "no cursor"
        with pytest.raises(InvalidCursor) as info:
            log.search(a.id, "action:ticket.*", limit=5, cursor=c)
        assert info.value.field == "cursor"
    for q, tid in (("action:ticket.viewed", a.id), ("action:ticket.*", b.id)):
        with pytest.raises(InvalidCursor, match="does not belong to this query"):
            log.search(tid, q, limit=5, cursor=cursor)


def test_bad_input_is_refused(log):
    """A bad query, limit or tenant is a clear error, before any SQL runs."""
    t = log.create_tenant("acme")
    with pytest.raises(InvalidQuery):
        log.search(t.id, "foo:bar")
    for limit in (0, -1, 1001):
        with pytest.raises(InvalidInput, match="limit"):
            log.search(t.id, "", limit=limit)
    with pytest.raises(NotFound):
        log.search("t_nosuchtenant000000", "")
    with pytest.raises(InvalidInput, match="interval"):
        log.histogram(t.id, "", interval="year")


def _day(us: int) -> str:
    return from_us(us).date().isoformat()


@pytest.mark.parametrize("q", ["", "action:ticket.*", "pending", "is:failure created:>-4d"])
def test_histogram_counts_equal_per_day_counts(log, clock, q):
    """Day buckets hold exactly the matches recorded that UTC day, from the
    first day with a match to the last, empty days included."""
    t = log.create_tenant("acme")
    fill(log, clock, t.id)
    clock.advance(days=2)  # an empty day, then more
    log.append(t.id, [event(i) for i in range(30)])
    want = Counter(_day(log.get_entry(t.id, s).recorded_at) for s in naive(log, t.id, q))
    hist = log.histogram(t.id, q, "day")
    got = {_day(start): n for start, n in hist.buckets}
    assert {d: n for d, n in got.items() if n} == dict(want)
    days = sorted(datetime.fromisoformat(d) for d in got)
    assert len(days) == (days[-1] - days[0]).days + 1
    assert hist.total == sum(want.values())
    assert hist.to_json()["buckets"][0]["start"].endswith("T00:00:00.000000Z")


def test_histogram_intervals(log, clock):
    """Hours, ISO weeks (from Monday) and calendar months add up to the same
    total, with bucket starts on their boundaries."""
    clock.now = datetime(2026, 1, 30, 22, 0, tzinfo=UTC)  # two days before February
    t = log.create_tenant("acme")
    fill(log, clock, t.id)  # runs into February
    totals = {}
    for interval in ("hour", "day", "week", "month"):
        hist = log.histogram(t.id, "", interval)
        totals[interval] = hist.total
        for start, _ in hist.buckets:
            d = from_us(start)
            assert (d.minute, d.second) == (0, 0)
            if interval != "hour":
                assert d.hour == 0
            if interval == "week":
                assert d.weekday() == 0
            if interval == "month":
                assert d.day == 1
    assert set(totals.values()) == {N}
    months = log.histogram(t.id, "", "month").buckets
    assert [from_us(s).month for s, _ in months] == [1, 2]


def test_histogram_of_nothing_is_empty(log):
    """No match: no buckets and a total of 0."""
    t = log.create_tenant("acme")
    hist = log.histogram(t.id, "action:ticket.viewed")
    assert hist.buckets == () and hist.total == 0


def test_record_access_appends_the_query_and_row_count(log, clock):
    """record_access appends audit_log.searched/exported/viewed with the
    actor, the query, the rows and the channel, after the page it describes."""
    t = log.create_tenant("acme")
    fill(log, clock, t.id, 24)
    page = log.search(t.id, "action:ticket.viewed", limit=3)
    actor = {"id": "api_key:abcdefghijkl", "type": "api_key"}
    receipt = record_access(
        log, t.id, "audit_log.searched", actor, page.query, len(page), "api",
        context={"ip": "192.0.2.7"}, details={"cursor": False},
    )  # fmt: skip
    assert receipt.seq > max(r.seq for r in page)  # never part of the page it describes
    row = log.get_entry(t.id, receipt.seq)
    assert row.action == "audit_log.searched" and not row.security  # log access
    assert row.actor_hash == log.actor_hash(t.id, "api_key:abcdefghijkl")
    found = log.search(t.id, "action:audit_log.searched")
    assert [r.seq for r in found] == [receipt.seq]
    from kimonaudit.views import entry_json

    body = entry_json(row)
    assert body["metadata"] == {
        "query": "action:ticket.viewed",
        "rows": 3,
        "via": "api",
        "cursor": False,
    }
    assert body["ip"] == "192.0.2.7" and body["target"] == {"type": "audit_log", "id": t.id}
    with pytest.raises(ValueError):
        record_access(log, t.id, "ticket.viewed", actor, "", 0, "api")


def test_request_context_keeps_only_what_makes_a_valid_event():
    """A peer name that is not an IP, control characters and overlong
    headers are dropped or trimmed instead of failing the caller's request."""
    ctx = search_mod.request_context("testclient", "ua\x00\x1b[31m" + "x" * 900, "r\nid")
    assert "ip" not in ctx
    assert ctx["user_agent"].startswith("ua[31m") and len(ctx["user_agent"]) == 500
    assert ctx["request_id"] == "rid"
    assert search_mod.request_context("::ffff:192.0.2.1")["ip"] == "::ffff:192.0.2.1"


def test_the_library_contract(db_url, key_file):
    """log.search(tenant, "action:... actor:...", limit=50) as DESIGN.md shows it."""
    with kimonaudit.open(db_url, key_file=key_file) as log:
        t = log.create_tenant("acme", plan="business")
        log.append(t.id, [event(i) for i in range(40)])
        page = log.search(t.id, "action:ticket.viewed actor:agent_42", limit=50)
        assert page.entries and all(
            r.action == "ticket.viewed" and r.actor_hash == log.actor_hash(t.id, "agent_42")
            for r in page
        )
        assert page.next_cursor is None and page.query == "action:ticket.viewed actor:agent_42"


def test_cli_search_prints_a_page_and_is_audited(tmp_path):
    """`kimonaudit search --tenant T QUERY --json` prints the page as the API
    would, and appends audit_log.searched with the query, rows and via=cli."""
    from click.testing import CliRunner

    from kimonaudit.cli import cli
    from kimonaudit.views import entry_json

    db, key = f"sqlite:///{tmp_path / 'cli.db'}", str(tmp_path / "cli.key")
    with kimonaudit.open(db, key_file=key) as log:
        tid = log.create_tenant("acme").id
        log.append(tid, [event(i) for i in range(30)])
    runner = CliRunner()
    base = ["--db", db, "--key-file", key, "search", "--tenant", tid]
    res = runner.invoke(cli, [*base, "action:ticket.viewed", "--limit", "4", "--json"])
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout)
    assert [e["seq"] for e in body["events"]] == [25, 20, 15, 10]
    assert body["next_cursor"] and body["query"] == "action:ticket.viewed"
    more = ["action:ticket.viewed", "--limit", "4", "--json", "--cursor", body["next_cursor"]]
    res = runner.invoke(cli, [*base, *more])
    assert [e["seq"] for e in json.loads(res.stdout)["events"]] == [5, 0]
    res = runner.invoke(cli, [*base, "actor:agent_42"])  # the table form
    assert res.exit_code == 0 and "agent_42" in res.stdout and "seq" in res.stdout
    with kimonaudit.open(db, key_file=key) as log:
        audit = [entry_json(r) for r in log.search(tid, "action:audit_log.searched")]
    assert [a["metadata"]["rows"] for a in audit] == [7, 2, 4]
    assert audit[2]["metadata"]["query"] == "action:ticket.viewed"
    assert {a["metadata"]["via"] for a in audit} == {"cli"}
    assert audit[0]["actor"]["type"] == "system"
