"""Search: a query in, one page of entries out (newest first), with a keyset
cursor for the next page; counts over time; and the audit trail of the
log's own use.

    page = search(log, tenant_id, "action:ticket.viewed actor:agent_42", limit=50)
    more = search(log, tenant_id, "action:ticket.viewed actor:agent_42",
                  cursor=page.next_cursor)

The cursor is the last sequence number returned, plus the moment the first
page ran (so ``created:-7d`` means the same on every page), MACed with
`AuditLog.sign_token` over the tenant and the canonical query. Pages are
"entries with seq below the cursor": entries appended while a client pages
have higher numbers and never shift a page it has not read yet.

Searching through an adapter (API, CLI, console) is itself audited
(PCI DSS 10.2.1.3) with `record_access`, called after the page is computed
so the entry it appends is never part of the page it describes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import ipaddress
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from kimonaudit.core.query import (
    Filter,
    Query,
    Range,
    RelativeTime,
    Text,
    parse,
    time_bounds,
    to_string,
)
from kimonaudit.core.records import ActorRecord, EntryRow, Receipt
from kimonaudit.core.timefmt import format_ts, from_us
from kimonaudit.errors import InvalidInput, NotFound
from kimonaudit.querylog import UNKNOWN_ACTOR, pseudonymise
from kimonaudit.store.base import SearchSql, SearchStore
from kimonaudit.store.querysql import (
    CompileContext,
    compile_where,
    posting_drivers,
    text_phrases,
)
from kimonaudit.views import entry_json

if TYPE_CHECKING:
    # The facade's shape, not the facade: no import back up to the service.
    from kimonaudit.ports import LogPort as AuditLog

DEFAULT_LIMIT = 50
MAX_LIMIT = 1_000
CURSOR_PURPOSE = "search-cursor"
_CURSOR_VERSION = 1
_CURSOR_BODY = struct.Struct(">Bqq")  # version, last seq returned, "now" of page one
_MAC_BYTES = 16
_CURSOR_BYTES = _CURSOR_BODY.size + _MAC_BYTES

INTERVALS: tuple[str, ...] = ("hour", "day", "week", "month")
_HOUR_US = 3_600_000_000
_DAY_US = 24 * _HOUR_US
# Weeks start on Monday (ISO 8601); 1970-01-01 was a Thursday.
_MONDAY_ORIGIN_US = -3 * _DAY_US
MAX_BUCKETS = 10_000

ACCESS_ACTIONS = ("audit_log.viewed", "audit_log.searched", "audit_log.exported")


class InvalidCursor(InvalidInput):
    """A cursor that was altered, or issued for another query or tenant."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="cursor")


@dataclass(frozen=True)
class Compiled:
    """A parsed query bound to a tenant and a moment, as SQL for its store."""

    query: Query
    text: str  # canonical: what cursors are bound to and what audit entries record
    sql: SearchSql
    now_us: int


@dataclass(frozen=True)
class SearchPage:
    """One page of results, newest first. `next_cursor` is None on the last page."""

    tenant_id: str
    query: str
    entries: tuple[EntryRow, ...]
    next_cursor: str | None

    def __iter__(self) -> Iterator[EntryRow]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


@dataclass(frozen=True)
class Histogram:
    """Matching entries counted per UTC interval, from the first interval
    holding a match to the last (empty intervals between them included)."""

    query: str
    interval: str
    buckets: tuple[tuple[int, int], ...]  # (interval start in µs, count)

    @property
    def total(self) -> int:
        return sum(n for _, n in self.buckets)

    def to_json(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "interval": self.interval,
            "total": self.total,
            "buckets": [{"start": format_ts(s), "count": n} for s, n in self.buckets],
        }


# -- compiling -----------------------------------------------------------------
def _store(log: AuditLog) -> SearchStore:
    return log.store  # type: ignore[return-value]


def compile_query(
    log: AuditLog, tenant_id: str, q: str | Query, now_us: int | None = None
) -> Compiled:
    """Parse (if text) and compile `q` for the tenant's store: actor ids are
    hashed with the tenant's key, relative times count back from `now_us`
    (default: the log's clock)."""
    query = parse(q) if isinstance(q, str) else q
    now = log.now_us() if now_us is None else now_us
    from kimonaudit.store.retention import hashes_for_search

    def actor_hash(actor_id: str) -> list[str]:
        # Through the directory: an erased actor matches nothing (issue 8).
        return hashes_for_search(log.store, tenant_id, actor_id)

    dialect = log.store.dialect
    ctx = CompileContext(dialect, now, actor_hash)  # type: ignore[arg-type]
    # recorded_at never decreases along seq, so a time range is also a seq
    # range, which the (tenant_id, seq) order serves without a sort.
    narrowed, seq_low, seq_high = _with_seq_range(query, _store(log), tenant_id, now)
    where, params = compile_where(narrowed, ctx)
    no_text = Query(tuple(t for t in narrowed.terms if not isinstance(t, Text)))
    scan_where, scan_params = compile_where(no_text, ctx)
    sql = SearchSql(
        where,
        tuple(params),
        scan_where=scan_where,
        scan_params=tuple(scan_params),
        texts=text_phrases(narrowed),
        drivers=posting_drivers(narrowed, ctx),
        seq_low=seq_low,
        seq_high=seq_high,
    )
    wanted = [t for t in narrowed.terms if isinstance(t, Text) and not t.negated]
    if dialect == "sqlite" and wanted:
        sql = _split_text(sql, narrowed, wanted, ctx)
    return Compiled(query, to_string(query), sql, now)


def _split_text(sql: SearchSql, query: Query, wanted: list[Text], ctx: CompileContext) -> SearchSql:
    """Add the FTS5 expression of the wanted free text, and the predicate of
    everything else, so the SQLite store can walk the full-text index."""
    text_where, text_params = compile_where(Query(tuple(wanted)), ctx)
    if text_where != _FTS_SHAPE or len(text_params) != 1:
        return sql  # not the shape this knows: the whole predicate still works
    others = Query(tuple(t for t in query.terms if not (isinstance(t, Text) and t in wanted)))
    rest_where, rest_params = compile_where(others, ctx)
    return replace(
        sql, text_match=str(text_params[0]), rest_where=rest_where, rest_params=tuple(rest_params)
    )


_FTS_SHAPE = "e.rid IN (SELECT rowid FROM entries_fts WHERE entries_fts MATCH ?)"


def _created_span(f: Filter, now_us: int) -> tuple[int | None, int | None]:
    """[start, end) in µs that a positive created: filter keeps (None:
    unbounded), as kimonaudit.store.querysql reads it, or wider."""
    if f.op != "=":
        (value,) = f.values
        assert isinstance(value, date | RelativeTime), value
        start, end = time_bounds(value, now_us)
        return {">": (end, None), ">=": (start, None), "<": (None, start), "<=": (None, end)}[f.op]
    spans = []
    for v in f.values:
        if isinstance(v, RelativeTime):
            spans.append((time_bounds(v, now_us)[0], None))  # "since then"
        elif isinstance(v, Range):
            assert isinstance(v.low, date | RelativeTime), v
            assert isinstance(v.high, date | RelativeTime), v
            spans.append((time_bounds(v.low, now_us)[0], time_bounds(v.high, now_us)[1]))
        else:
            assert isinstance(v, date), v
            spans.append(time_bounds(v, now_us))
    # Alternatives: the span enclosing all of them.
    low = min(lo for lo, _ in spans)
    ends = [hi for _, hi in spans]
    high = None if None in ends else max(hi for hi in ends if hi is not None)
    return low, high


def _with_seq_range(
    query: Query, store: SearchStore, tenant_id: str, now_us: int
) -> tuple[Query, int, int | None]:
    """The query with its created: bounds also as a seq range, and that
    range as [low, high) (high None: unbounded)."""
    start: int | None = None
    end: int | None = None
    for t in query.terms:
        if isinstance(t, Filter) and t.key == "created" and not t.negated:
            lo, hi = _created_span(t, now_us)
            if lo is not None:
                start = lo if start is None else max(start, lo)
            if hi is not None:
                end = hi if end is None else min(end, hi)
    if start is None and end is None:
        return query, 0, None
    first = 0 if start is None else store.seq_at(tenant_id, start)
    if first is None:  # nothing recorded that late
        return Query((*query.terms, Filter("seq", "=", (Range(1, 0),)))), 0, 0
    last = None if end is None else store.seq_at(tenant_id, end)
    if last is None:
        return Query((*query.terms, Filter("seq", ">=", (first,)))), first, None
    return Query((*query.terms, Filter("seq", "=", (Range(first, last - 1),)))), first, last


# -- cursors -------------------------------------------------------------------
def _mac(log: AuditLog, tenant_id: str, query: str, body: bytes) -> bytes:
    # Length-prefixed fields: no (tenant, query) pair can forge another's input.
    t, q = tenant_id.encode(), query.encode()
    data = struct.pack(">I", len(t)) + t + struct.pack(">I", len(q)) + q + body
    return log.sign_token(CURSOR_PURPOSE, data)[:_MAC_BYTES]


def encode_cursor(log: AuditLog, tenant_id: str, query: str, last_seq: int, now_us: int) -> str:
    body = _CURSOR_BODY.pack(_CURSOR_VERSION, last_seq, now_us)
    token = body + _mac(log, tenant_id, query, body)
    return base64.urlsafe_b64encode(token).rstrip(b"=").decode("ascii")


def decode_cursor(log: AuditLog, tenant_id: str, query: str, cursor: str) -> tuple[int, int]:
    """(last seq returned, "now" of the first page) of a cursor issued for
    this tenant and canonical query; InvalidCursor otherwise."""
    malformed = InvalidCursor(
        "malformed cursor: pass the next_cursor of the previous page unchanged"
    )
    if not isinstance(cursor, str) or len(cursor) > 100 or not cursor.isascii():
        raise malformed
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise malformed from None
    if len(raw) != _CURSOR_BYTES or raw[0] != _CURSOR_VERSION:
        raise malformed
    body, mac = raw[: _CURSOR_BODY.size], raw[_CURSOR_BODY.size :]
    if not hmac.compare_digest(mac, _mac(log, tenant_id, query, body)):
        raise InvalidCursor(
            "this cursor does not belong to this query in this tenant (or it was altered): "
            "repeat the search without a cursor, or send the cursor with the query it came from"
        )
    _, last_seq, now_us = _CURSOR_BODY.unpack(body)
    return last_seq, now_us


# -- searching -----------------------------------------------------------------
def check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"must be a whole number from 1 to {MAX_LIMIT}", field="limit")
    return limit


def search(
    log: AuditLog,
    tenant_id: str,
    q: str | Query,
    limit: int = DEFAULT_LIMIT,
    cursor: str | None = None,
) -> SearchPage:
    """One page of the tenant's entries matching `q`, newest first."""
    check_limit(limit)
    log.get_tenant(tenant_id)
    query = parse(q) if isinstance(q, str) else q
    text = to_string(query)
    before: int | None = None
    now: int | None = None
    if cursor:
        last_seq, now = decode_cursor(log, tenant_id, text, cursor)
        before = last_seq
    c = compile_query(log, tenant_id, query, now)
    # One extra row says whether another page exists, so the last page
    # carries no cursor to an empty one.
    rows = _store(log).search_page(tenant_id, c.sql, limit + 1, before_seq=before)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(log, tenant_id, text, rows[-1].seq, c.now_us)
    return SearchPage(tenant_id, text, tuple(rows), next_cursor)


class ActorLookup:
    """Directory lookups for rendering entries, remembered per actor (at
    most `size` of them, so an export of millions of rows stays small)."""

    def __init__(self, log: AuditLog, tenant_id: str, size: int = 10_000) -> None:
        self._log = log
        self._tenant_id = tenant_id
        self._size = size
        self._known: dict[str, ActorRecord | None] = {}

    def __call__(self, actor_hash: str | None) -> ActorRecord | None:
        if actor_hash is None:
            return None
        try:
            return self._known[actor_hash]
        except KeyError:
            pass
        if len(self._known) >= self._size:
            self._known.clear()
        rec = self._log.resolve_actor(self._tenant_id, actor_hash)
        self._known[actor_hash] = rec
        return rec


class RedactionLookup:
    """The (reason, redacted_at) of a redacted entry, for rendering it; read
    only for rows whose payload is gone, so unredacted rows cost nothing."""

    def __init__(self, log: AuditLog, tenant_id: str) -> None:
        self._log = log
        self._tenant_id = tenant_id

    def __call__(self, row: EntryRow) -> tuple[str, int] | None:
        if row.payload is not None:
            return None
        return self._log.redaction(self._tenant_id, row.seq)


def page_json(log: AuditLog, page: SearchPage) -> dict[str, Any]:
    """The public JSON of a page: entries as `entry_json` (with the actor's
    directory fields) and the cursor of the next page."""
    actor = ActorLookup(log, page.tenant_id)
    redaction = RedactionLookup(log, page.tenant_id)
    return {
        "query": page.query,
        "events": [entry_json(r, actor(r.actor_hash), redaction(r)) for r in page.entries],
        "next_cursor": page.next_cursor,
    }


# -- histogram -----------------------------------------------------------------
def histogram(log: AuditLog, tenant_id: str, q: str | Query, interval: str = "day") -> Histogram:
    """Count the tenant's entries matching `q` per UTC hour, day, week
    (from Monday) or calendar month."""
    if interval not in INTERVALS:
        raise InvalidInput(
            f"unknown interval {interval!r}; one of {', '.join(INTERVALS)}", field="interval"
        )
    log.get_tenant(tenant_id)
    c = compile_query(log, tenant_id, q)
    if interval == "week":
        width, origin = 7 * _DAY_US, _MONDAY_ORIGIN_US
    elif interval == "hour":
        width, origin = _HOUR_US, 0
    else:  # months are folded from days below
        width, origin = _DAY_US, 0
    counts = {
        origin + b * width: n for b, n in _store(log).histogram(tenant_id, c.sql, width, origin)
    }
    if interval == "month":
        counts = _by_month(counts)
        starts = _months(min(counts), max(counts)) if counts else []
    elif counts:
        first, last = min(counts), max(counts)
        if (last - first) // width >= MAX_BUCKETS:
            raise _too_many(interval)
        starts = list(range(first, last + width, width))
    else:
        starts = []
    if len(starts) > MAX_BUCKETS:
        raise _too_many(interval)
    return Histogram(c.text, interval, tuple((s, counts.get(s, 0)) for s in starts))


def _too_many(interval: str) -> InvalidInput:
    return InvalidInput(
        f"more than {MAX_BUCKETS} {interval}s between the first and last match: "
        "use a longer interval or narrow the query with created:",
        field="interval",
    )


def _month_start(us: int) -> int:
    d = from_us(us)
    return _us(date(d.year, d.month, 1))


def _us(d: date) -> int:
    return (datetime(d.year, d.month, d.day, tzinfo=UTC) - from_us(0)) // timedelta(microseconds=1)


def _by_month(days: Mapping[int, int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for start, n in days.items():
        m = _month_start(start)
        out[m] = out.get(m, 0) + n
    return out


def _months(first: int, last: int) -> list[int]:
    d = from_us(first).date()
    end = from_us(last).date()
    out = []
    y, m = d.year, d.month
    while (y, m) <= (end.year, end.month) and len(out) <= MAX_BUCKETS:
        out.append(_us(date(y, m, 1)))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


# -- auditing the log's own use ------------------------------------------------
def request_context(
    ip: str | None = None, user_agent: str | None = None, request_id: str | None = None
) -> dict[str, str]:
    """The `context` of an access entry from what a request carries; values
    that would make the entry invalid (a non-IP peer name, overlong text)
    are left out rather than failing the caller's request."""
    out: dict[str, str] = {}
    if ip:
        address = ip.split("%", 1)[0]  # a zone index means nothing to the log
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(address)
            out["ip"] = address
    if user_agent:
        out["user_agent"] = _printable(user_agent)[:500]
    if request_id:
        out["request_id"] = _printable(request_id)[:200]
    return out


def _printable(text: str) -> str:
    return "".join(c for c in text if c.isprintable())


def record_access(
    log: AuditLog,
    tenant_id: str,
    action: str,
    actor: Mapping[str, str],
    query: str,
    rows: int,
    via: str,
    *,
    context: Mapping[str, str] | None = None,
    details: Mapping[str, Any] | None = None,
) -> Receipt:
    """Append `audit_log.viewed`, `.searched` or `.exported` (PCI DSS
    10.2.1.3): who (`actor`: an API key as ``{"id": "api_key:<id>", "type":
    "api_key"}``, or a console user), through what (`via`), which query and
    how many rows were returned. Call it after the rows are computed."""
    if action not in ACCESS_ACTIONS:
        raise ValueError(f"not an access action: {action!r}; one of {ACCESS_ACTIONS}")
    # Actor ids become their hashes (kimonaudit.querylog): nothing personal
    # outlives an erasure inside a recorded query.
    query = pseudonymise(query, lambda actor_id: _recorded_hash(log, tenant_id, actor_id))
    metadata: dict[str, Any] = {"query": query, "rows": rows, "via": via, **(details or {})}
    event: dict[str, Any] = {
        "action": action,
        "actor": dict(actor),
        "target": {"type": "audit_log", "id": tenant_id},
        "metadata": metadata,
    }
    if context:
        event["context"] = dict(context)
    return log.append(tenant_id, [event])[0]


def _recorded_hash(log: AuditLog, tenant_id: str, actor_id: str) -> str:
    """The actor's hash, or `UNKNOWN_ACTOR` for an id the directory does not
    hold (never seen, or erased): the id itself is never recorded."""
    try:
        return log.actor_hash(tenant_id, actor_id)
    except NotFound:
        return UNKNOWN_ACTOR
