"""Export of any search as CSV or NDJSON, streamed in small stages:

    select (store keyset pages, seq order) -> format (row -> cells / JSON)
        -> encode (UTF-8 chunks of about 64 KiB)

Memory stays flat at any size: the store hands over one page at a time and
holds no cursor or snapshot between pages, and each stage keeps only what
one chunk needs. An export covers the entries that existed when it started
(seq below the tree size then), so it ends even while entries keep arriving
and never contains its own `audit_log.exported` entry.

CSV follows RFC 4180: a header row, CRLF line ends, every field in double
quotes (quotes doubled), UTF-8 without a byte order mark. Timestamps are
RFC 3339 UTC ending in ``Z``. A cell that a spreadsheet would read as a
formula (it begins with ``=``, ``+``, ``-``, ``@``, tab, CR or LF) gets a
leading ``'`` (OWASP "CSV Injection"). The columns are `CSV_COLUMNS`, in
that order; docs/export.md documents each one. NDJSON has one
`kimonaudit.views.entry_json` object per line.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from kimonaudit.core.catalogue import Severity
from kimonaudit.core.ipaddr import bytes_to_ip
from kimonaudit.core.query import Query
from kimonaudit.core.records import ActorRecord, EntryRow
from kimonaudit.core.timefmt import format_ts
from kimonaudit.errors import InvalidInput
from kimonaudit.search import ActorLookup, Compiled, RedactionLookup, compile_query
from kimonaudit.store.base import SearchStore
from kimonaudit.views import entry_json

if TYPE_CHECKING:
    # The facade's shape, not the facade: no import back up to the service.
    from kimonaudit.ports import LogPort as AuditLog

Format = Literal["csv", "ndjson"]
FORMATS: tuple[str, ...] = ("csv", "ndjson")
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8; header=present",
    "ndjson": "application/x-ndjson",
}

# The stable CSV column set. New columns may only ever be appended at the end.
CSV_COLUMNS: tuple[str, ...] = (
    "id",
    "seq",
    "recorded_at",
    "occurred_at",
    "action",
    "category",
    "severity",
    "security",
    "outcome",
    "actor_hash",
    "actor_type",
    "actor_id",
    "actor_name",
    "actor_email",
    "target_type",
    "target_id",
    "ip",
    "user_agent",
    "request_id",
    "changes",
    "context",
    "metadata",
    "redacted",
    "leaf_hash",
    # Last, so that the columns before keep their numbers (docs/export.md).
    "redaction_reason",
)

CHUNK_BYTES = 64 * 1024
# First characters that make a spreadsheet evaluate a cell (OWASP).
FORMULA_STARTS = frozenset("=+-@\t\r\n")
_SEVERITIES = tuple(s.label for s in Severity)


def neutralise(cell: str) -> str:
    """`cell` made safe to open in a spreadsheet: a leading ``'`` if it would
    otherwise start a formula."""
    return "'" + cell if cell and cell[0] in FORMULA_STARTS else cell


def check_format(fmt: str) -> Format:
    if fmt not in FORMATS:
        raise InvalidInput(
            f"unknown export format {fmt!r}; one of {', '.join(FORMATS)}", field="format"
        )
    return fmt  # type: ignore[return-value]


# -- stage 1: select -------------------------------------------------------------
@dataclass(frozen=True)
class Selection:
    """What an export covers: the matches of `compiled` with seq < `before_seq`."""

    log: AuditLog
    tenant_id: str
    compiled: Compiled
    before_seq: int

    def rows(self) -> Iterator[EntryRow]:
        """The entries in seq order, read lazily, a page at a time."""
        store: SearchStore = self.log.store  # type: ignore[assignment]
        return store.iter_search(self.tenant_id, self.compiled.sql, before_seq=self.before_seq)

    def count(self) -> int:
        """How many entries `rows` gives (one more query: for progress bars)."""
        store: SearchStore = self.log.store  # type: ignore[assignment]
        return store.count_matches(self.tenant_id, self.compiled.sql, self.before_seq)


def select(log: AuditLog, tenant_id: str, q: str | Query) -> Selection:
    """The entries matching `q` as they stand now."""
    log.get_tenant(tenant_id)
    # The tree size first: an entry appended after it is outside the export
    # even if a created: bound below would admit it.
    size = log.store.tree_state(tenant_id).size
    return Selection(log, tenant_id, compile_query(log, tenant_id, q), size)


# -- stage 2: format -------------------------------------------------------------
# The C scanner behind json.loads, called at known offsets.
_scan = json.JSONDecoder().scan_once
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_encode_sorted = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode


def _payload_parts(payload: bytes) -> tuple[str, dict[str, Any], str, str, Any]:
    """(changes JSON, context, context JSON, metadata JSON, occurred_at).

    A payload is RFC 8785 JSON of four keys in sorted order, so each value's
    text is already compact, canonical JSON: it is cut out where the one
    decoding pass found it rather than encoded again."""
    text = payload.decode("utf-8")
    scan = _scan
    try:
        if not text.startswith('{"changes":'):
            return _payload_fallback(text)
        _, e1 = scan(text, 11)
        if not text.startswith(',"context":', e1):
            return _payload_fallback(text)
        context, e2 = scan(text, e1 + 11)
        if not text.startswith(',"metadata":', e2):
            return _payload_fallback(text)
        _, e3 = scan(text, e2 + 12)
        if not text.startswith(',"occurred_at":', e3):
            return _payload_fallback(text)
        occurred, e4 = scan(text, e3 + 15)
    except (StopIteration, ValueError):
        return _payload_fallback(text)
    if e4 != len(text) - 1 or not isinstance(context, dict):
        return _payload_fallback(text)
    return text[11:e1], context, text[e1 + 11 : e2], text[e2 + 12 : e3], occurred


def _payload_fallback(text: str) -> tuple[str, dict[str, Any], str, str, Any]:
    p = json.loads(text)
    context = p.get("context") or {}
    return (
        _encode_sorted(p.get("changes") or []),
        context,
        _encode_sorted(context),
        _encode_sorted(p.get("metadata") or {}),
        p.get("occurred_at"),
    )


class _IpText:
    """bytes_to_ip, remembered: a tenant's traffic comes from few addresses."""

    def __init__(self, size: int = 50_000) -> None:
        self._known: dict[bytes, str] = {}
        self._size = size

    def __call__(self, ip: bytes | None) -> str:
        if ip is None:
            return ""
        text = self._known.get(ip)
        if text is None:
            if len(self._known) >= self._size:
                self._known.clear()
            text = self._known[ip] = bytes_to_ip(ip)
        return text


def cell(value: object) -> str:
    """A CSV field's text, neutralised and with its quotes doubled (the
    surrounding quotes are added by the record)."""
    if value is None:
        return ""
    s = value if isinstance(value, str) else str(value)
    if s and s[0] in FORMULA_STARTS:
        s = "'" + s
    return s.replace('"', '""')


def csv_record(cells: Iterable[object]) -> str:
    """One RFC 4180 record of any values: every field quoted, CRLF."""
    return '"' + '","'.join(cell(c) for c in cells) + '"\r\n'


def csv_records(
    rows: Iterable[EntryRow],
    actors: Callable[[str | None], ActorRecord | None],
    redactions: Callable[[EntryRow], tuple[str, int] | None] = lambda row: None,
) -> Iterator[str]:
    """One RFC 4180 record per entry, `CSV_COLUMNS` in order.

    Every field is quoted. Fields from outside (ids, names, user agent,
    changes ...) go through `cell`; the rest (numbers, timestamps, hashes,
    catalogue names, booleans) hold no quote and cannot start a formula, and
    are written as they are: this loop is the export's hot path. The one
    exception is the base64 leaf hash, which can begin with ``+``."""
    ip_text = _IpText()
    b64 = binascii.b2a_base64
    sev = _SEVERITIES
    # The actor's three directory cells, escaped, per actor hash.
    known: dict[str | None, tuple[str, str, str]] = {}
    for r in rows:
        (_, seq, event_id, recorded_at, action, category, severity, security, a_hash,
         a_type, t_type, t_id, outcome, _, ip, payload, _, _, leaf_hash) = r  # fmt: skip
        if payload is not None:
            changes, context, context_json, metadata, occurred = _payload_parts(payload)
            ua = cell(context.get("user_agent"))
            rid = cell(context.get("request_id"))
            changes = changes.replace('"', '""')
            context_json = context_json.replace('"', '""')
            metadata = metadata.replace('"', '""')
            occurred = occurred if isinstance(occurred, str) else ""
            reason = ""
        else:
            changes = context_json = metadata = occurred = ua = rid = ""
            red = redactions(r)
            reason = "" if red is None else cell(red[0])
        who = known.get(a_hash)
        if who is None:
            rec = actors(a_hash)
            who = ("", "", "")
            if rec is not None and rec.erased_at is None:
                who = (cell(rec.actor_id), cell(rec.name), cell(rec.email))
            if len(known) >= 10_000:
                known.clear()
            known[a_hash] = who
        a_id, a_name, a_email = who
        yield (
            f'"{cell(event_id)}","{seq}","{format_ts(recorded_at)}","{occurred}","{action}",'
            f'"{category}","{sev[severity]}","{"true" if security else "false"}","{outcome}",'
            f'"{a_hash or ""}","{cell(a_type)}","{a_id}","{a_name}","{a_email}",'
            f'"{cell(t_type)}","{cell(t_id)}","{ip_text(ip)}","{ua}","{rid}",'
            f'"{changes}","{context_json}","{metadata}",'
            f'"{"true" if payload is None else "false"}",'
            f'"{_leaf_cell(b64(leaf_hash, newline=False))}",'
            f'"{reason}"\r\n'
        )


def _leaf_cell(b64_hash: bytes) -> str:
    """Base64 can begin with ``+`` (one hash in 64): neutralised like any
    other field, or a spreadsheet reads the hash as a formula."""
    text = b64_hash.decode("ascii")
    return "'" + text if text[0] == "+" else text


def ndjson_records(
    rows: Iterable[EntryRow],
    actors: Callable[[str | None], ActorRecord | None],
    redactions: Callable[[EntryRow], tuple[str, int] | None] = lambda row: None,
) -> Iterator[str]:
    """One `entry_json` object per line."""
    for r in rows:
        yield _encode_json(entry_json(r, actors(r.actor_hash), redactions(r))) + "\n"


# -- stage 3: encode --------------------------------------------------------------
class _Counter:
    def __init__(self) -> None:
        self.n = 0


def chunks(
    records: Iterable[str], counter: _Counter, head: str = "", chunk_bytes: int = CHUNK_BYTES
) -> Iterator[bytes]:
    """`head`, then the records, as UTF-8 chunks of about `chunk_bytes`;
    `counter` counts the records in the chunks handed out."""
    parts = [head] if head else []
    size = n = 0
    for text in records:
        parts.append(text)
        size += len(text)
        n += 1
        if size >= chunk_bytes:
            counter.n += n
            n = size = 0
            yield "".join(parts).encode("utf-8")
            parts.clear()
    counter.n += n
    if parts:
        yield "".join(parts).encode("utf-8")


# -- the whole pipeline -------------------------------------------------------------
@dataclass
class Export:
    """One export being streamed. `rows` counts the entries in the chunks
    handed out so far; `complete` turns true when the last chunk has been."""

    selection: Selection
    format: Format
    _chunks: Iterator[bytes] = field(repr=False)
    _counter: _Counter = field(repr=False)
    complete: bool = False

    @property
    def tenant_id(self) -> str:
        return self.selection.tenant_id

    @property
    def query(self) -> str:
        """The query in canonical form."""
        return self.selection.compiled.text

    @property
    def rows(self) -> int:
        return self._counter.n

    def count(self) -> int:
        """How many rows the whole export has (costs a query)."""
        return self.selection.count()

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    @property
    def filename(self) -> str:
        return f"events-{self.tenant_id}.{self.format}"

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            if chunk:
                yield chunk
        self.complete = True

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()


def export(log: AuditLog, tenant_id: str, q: str | Query = "", fmt: str = "csv") -> Export:
    """Start an export of the tenant's entries matching `q` (oldest first).
    The query is checked now; rows are read as the returned `Export` is
    iterated."""
    fmt = check_format(fmt)
    selection = select(log, tenant_id, q)
    rows = selection.rows()
    actors = ActorLookup(log, tenant_id)
    redactions = RedactionLookup(log, tenant_id)
    counter = _Counter()
    if fmt == "csv":
        out = chunks(csv_records(rows, actors, redactions), counter, head=csv_record(CSV_COLUMNS))
    else:
        out = chunks(ndjson_records(rows, actors, redactions), counter)
    return Export(selection, fmt, out, counter)
