"""Compile a parsed query (kimonaudit.core.query) to a parameterised SQL
predicate over ``entries e``, for SQLite or PostgreSQL.

Every value the user typed reaches the database as a bound parameter; the
SQL text is built only from constants in this module. Free text goes
through the same word splitting as the indexed document
(kimonaudit.core.searchtext), and what reaches FTS5 is a string of quoted
phrases, so no FTS5 operator, column filter or prefix syntax from the user
can get through.

The tenant condition is not added here: the store puts it around this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from kimonaudit.core import projection as P
from kimonaudit.core.ipaddr import cidr_bounds, ip_to_bytes
from kimonaudit.core.query import (
    FAILURE_OUTCOMES,
    SEVERITIES,
    Filter,
    Query,
    Range,
    RelativeTime,
    Scalar,
    Target,
    Text,
    Value,
    time_bounds,
)
from kimonaudit.core.searchtext import search_words
from kimonaudit.errors import InvalidQuery

_COLUMNS = {
    "actor_type": "e.actor_type",
    "category": "e.category",
    "outcome": "e.outcome",
    "target_type": "e.target_type",
}
# LIKE's escape character. Not a backslash: PostgreSQL reads backslashes in
# string literals differently depending on standard_conforming_strings.
_LIKE_ESCAPE = "!"
# PostgreSQL: the entry's stored tsvector in the search projection (GIN
# indexed; written by store/postgres_index.py). Only entries below the
# index's mark have one: the store matches the rest from the ledger.
_PG_DOCUMENT = (
    "EXISTS (SELECT 1 FROM search_docs d WHERE d.tenant_id = e.tenant_id AND d.seq = e.seq"
    " AND d.doc @@ phraseto_tsquery('simple', {}))"
)


@dataclass(frozen=True)
class CompileContext:
    """What compiling needs besides the query: the SQL flavour, the time that
    relative times count back from, and the tenant's actor hash function."""

    dialect: Literal["sqlite", "postgres"]
    now_us: int
    # An actor id's hashes: one, or (through the directory) any number.
    actor_hash: Callable[[str], str | list[str]]


@dataclass
class _Sql:
    ctx: CompileContext
    params: list[object] = field(default_factory=list)

    def p(self, value: object) -> str:
        self.params.append(value)
        return "?" if self.ctx.dialect == "sqlite" else "%s"

    def one_of(self, column: str, values: list[object]) -> str:
        if len(values) == 1:
            return f"{column} = {self.p(values[0])}"
        return f"{column} IN ({', '.join(self.p(v) for v in values)})"


def compile_where(q: Query, ctx: CompileContext) -> tuple[str, list[object]]:
    """A SQL boolean expression over alias ``e`` and its parameters.

    Placeholders are ``?`` for SQLite and ``%s`` for PostgreSQL; an empty
    query gives ``1=1``.
    """
    if ctx.dialect not in ("sqlite", "postgres"):
        raise ValueError(f"unknown SQL dialect {ctx.dialect!r}")
    sql = _Sql(ctx)
    conditions = [_filter(sql, t) for t in q.terms if isinstance(t, Filter)]
    texts = [t for t in q.terms if isinstance(t, Text)]
    if ctx.dialect == "sqlite":
        conditions += _fts5(sql, texts)
    else:
        conditions += [_tsquery(sql, t) for t in texts]
    if not conditions:
        return "1=1", []
    return " AND ".join(conditions), sql.params


def _negate(condition: str) -> str:
    # IS NOT TRUE rather than NOT: a NULL column (no actor, no IP) makes the
    # inner test NULL, and "-actor:x" must still keep entries without an actor.
    return f"({condition}) IS NOT TRUE"


def _any(conditions: list[str]) -> str:
    return conditions[0] if len(conditions) == 1 else "(" + " OR ".join(conditions) + ")"


def _filter(sql: _Sql, f: Filter) -> str:
    if f.op != "=":
        (value,) = f.values
        condition = _compare(sql, f.key, f.op, value)
    else:
        condition = _any(_MATCHERS[f.key](sql, list(f.values)))
    return _negate(condition) if f.negated else condition


def _compare(sql: _Sql, key: str, op: str, value: Value) -> str:
    if key == "seq":
        return f"e.seq {op} {sql.p(value)}"
    if key == "severity":
        return f"e.severity {op} {sql.p(SEVERITIES.index(str(value)))}"
    if key == "created":
        assert not isinstance(value, Range)
        start, end = time_bounds(_time(value), sql.ctx.now_us)
        # A date means its whole day: ">2026-11-01" starts the next day,
        # "<=2026-11-01" includes all of it.
        column, bound = {
            ">": (">=", end),
            ">=": (">=", start),
            "<": ("<", start),
            "<=": ("<", end),
        }[op]
        return f"e.recorded_at {column} {sql.p(bound)}"
    raise InvalidQuery(f"{key}: takes no comparison")  # parse() never builds this


# One function per key: the alternatives in a filter -> conditions to OR.


def _points_and_ranges(
    sql: _Sql, column: str, values: list[Value], convert: Callable[[Scalar], object]
) -> list[str]:
    points = [convert(v) for v in values if not isinstance(v, Range)]
    out = [sql.one_of(column, points)] if points else []
    for v in values:
        if isinstance(v, Range):
            out.append(f"{column} BETWEEN {sql.p(convert(v.low))} AND {sql.p(convert(v.high))}")
    return out


def _seq(sql: _Sql, values: list[Value]) -> list[str]:
    return _points_and_ranges(sql, "e.seq", values, lambda v: v)


def _severity(sql: _Sql, values: list[Value]) -> list[str]:
    return _points_and_ranges(sql, "e.severity", values, lambda v: SEVERITIES.index(str(v)))


def _time(value: Scalar) -> date | RelativeTime:
    assert isinstance(value, date | RelativeTime), value  # parse() guarantees it
    return value


def _created(sql: _Sql, values: list[Value]) -> list[str]:
    out = []
    now = sql.ctx.now_us
    for v in values:
        if isinstance(v, RelativeTime):
            # "created:-7d" reads as "in the last 7 days", not "exactly then".
            out.append(f"e.recorded_at >= {sql.p(time_bounds(v, now)[0])}")
            continue
        if isinstance(v, Range):
            start, end = time_bounds(_time(v.low), now)[0], time_bounds(_time(v.high), now)[1]
        else:
            start, end = time_bounds(_time(v), now)
        out.append(f"(e.recorded_at >= {sql.p(start)} AND e.recorded_at < {sql.p(end)})")
    return out


def _action(sql: _Sql, values: list[Value]) -> list[str]:
    exact = [v for v in values if "*" not in str(v)]
    out = [sql.one_of("e.action", list(exact))] if exact else []
    for v in values:
        pattern = str(v)
        if "*" not in pattern:
            continue
        if pattern.strip("*") == "":
            out.append("1=1")
        elif sql.ctx.dialect == "sqlite" and pattern.index("*") == len(pattern) - 1:
            # A prefix as a range, which SQLite serves from the action index
            # (its LIKE is case-insensitive and would not use it).
            prefix = pattern[:-1]
            upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            out.append(f"(e.action >= {sql.p(prefix)} AND e.action < {sql.p(upper)})")
        else:
            out.append(f"e.action LIKE {sql.p(_like(pattern))} ESCAPE '{_LIKE_ESCAPE}'")
    return out


def _like(pattern: str) -> str:
    escaped = "".join(_LIKE_ESCAPE + c if c in "%_" + _LIKE_ESCAPE else c for c in pattern)
    return escaped.replace("*", "%")


def _actor(sql: _Sql, values: list[Value]) -> list[str]:
    hashes: list[object] = []
    for v in values:
        h = sql.ctx.actor_hash(str(v))
        hashes.extend([h] if isinstance(h, str) else h)
    # No hash (an unknown or erased actor): "" is never a stored hash.
    return [sql.one_of("e.actor_hash", hashes or [""])]


def _column(key: str) -> Callable[[_Sql, list[Value]], list[str]]:
    def matcher(sql: _Sql, values: list[Value]) -> list[str]:
        return [sql.one_of(_COLUMNS[key], list(values))]

    return matcher


def _target(sql: _Sql, values: list[Value]) -> list[str]:
    out = []
    for v in values:
        assert isinstance(v, Target)
        if v.type is None:
            out.append(f"e.target_id = {sql.p(v.id)}")
        else:
            out.append(f"(e.target_type = {sql.p(v.type)} AND e.target_id = {sql.p(v.id)})")
    return out


def _ip(sql: _Sql, values: list[Value]) -> list[str]:
    addresses = [ip_to_bytes(str(v)) for v in values if "/" not in str(v)]
    out = [sql.one_of("e.ip", list(addresses))] if addresses else []
    for v in values:
        if "/" in str(v):
            low, high = cidr_bounds(str(v))
            out.append(f"e.ip BETWEEN {sql.p(low)} AND {sql.p(high)}")
    return out


def _is(sql: _Sql, values: list[Value]) -> list[str]:
    out = []
    for v in values:
        if v == "security":
            out.append("e.security = 1" if sql.ctx.dialect == "sqlite" else "e.security")
        elif v == "failure":
            out.append(sql.one_of("e.outcome", list(FAILURE_OUTCOMES)))
        else:
            raise InvalidQuery(f"is:{v} is not supported")  # parse() never builds this
    return out


_MATCHERS: dict[str, Callable[[_Sql, list[Value]], list[str]]] = {
    "action": _action,
    "actor": _actor,
    "actor_type": _column("actor_type"),
    "category": _column("category"),
    "created": _created,
    "ip": _ip,
    "is": _is,
    "outcome": _column("outcome"),
    "seq": _seq,
    "severity": _severity,
    "target": _target,
    "target_type": _column("target_type"),
}


# Free text.


def _words(t: Text) -> list[str]:
    words = search_words(t.value)
    if not words:  # parse() rejects these; a hand-built AST might not
        raise InvalidQuery(f"nothing to search for in {t.value!r}")
    return words


def _fts5_phrase(t: Text) -> str:
    # Each term becomes one FTS5 string: words of letters and digits only,
    # so the doubling of '"' is belt and braces.
    return '"' + " ".join(_words(t)).replace('"', '""') + '"'


def _fts5(sql: _Sql, texts: list[Text]) -> list[str]:
    out = []
    wanted = [_fts5_phrase(t) for t in texts if not t.negated]
    unwanted = [_fts5_phrase(t) for t in texts if t.negated]
    subquery = "SELECT rowid FROM entries_fts WHERE entries_fts MATCH "
    if wanted:
        out.append(f"e.rid IN ({subquery}{sql.p(' AND '.join(wanted))})")
    if unwanted:
        out.append(f"e.rid NOT IN ({subquery}{sql.p(' OR '.join(unwanted))})")
    return out


def _tsquery(sql: _Sql, t: Text) -> str:
    condition = _PG_DOCUMENT.format(sql.p(" ".join(_words(t))))
    return f"NOT {condition}" if t.negated else condition


# Posting drivers: which projection terms an indexed search can start from.
# Only positive "=" filters (and severity comparisons) drive; negations,
# categories and the like are checked on the ledger rows the drivers find.

DriverSpec = tuple[int, str, tuple[str, ...]]


def posting_drivers(q: Query, ctx: CompileContext) -> tuple[tuple[DriverSpec, ...], ...]:
    """For each filter that restricts matches to entries holding one of a set
    of posting terms, those terms as (field, mode, values) alternatives."""
    out = []
    for t in q.terms:
        if not isinstance(t, Filter) or t.negated:
            continue
        driver = _driver(t, ctx)
        if driver:
            out.append(tuple(driver))
    return tuple(out)


def _driver(f: Filter, ctx: CompileContext) -> list[DriverSpec] | None:
    values = list(f.values)
    if f.key == "severity":
        levels = _severity_levels(f)
        if levels is None or 0 in levels:
            return None  # info entries have no posting
        return [(P.F_SEVERITY, "eq", tuple(str(v) for v in sorted(levels)))]
    if f.op != "=":
        return None
    specs: list[DriverSpec] = []
    if f.key == "action":
        exact = tuple(str(v) for v in values if "*" not in str(v))
        if exact:
            specs.append((P.F_ACTION, "eq", exact))
        for v in values:
            pattern = str(v)
            if "*" not in pattern:
                continue
            if pattern.strip("*") == "":
                return None
            specs.append((P.F_ACTION, "glob", (_glob(pattern),)))
        return specs
    if f.key == "actor":
        hashes: list[str] = []
        for v in values:
            h = ctx.actor_hash(str(v))
            hashes.extend([h] if isinstance(h, str) else h)
        return [(P.F_ACTOR, "eq", tuple(hashes))]  # none: an unknown or erased actor
    if f.key == "target":
        for v in values:
            assert isinstance(v, Target)
            specs.append((P.F_TARGET_ID, "eq", (v.id,)))
        return specs
    if f.key == "target_type":
        return [(P.F_TARGET_TYPE, "eq", tuple(str(v) for v in values))]
    if f.key == "outcome":
        if any(str(v) == "success" for v in values):
            return None
        return [(P.F_FAILURE, "eq", tuple(str(v) for v in values))]
    if f.key == "is":
        for v in values:
            if v == "security":
                specs.append((P.F_SECURITY, "eq", ("1",)))
            elif v == "failure":
                specs.append((P.F_FAILURE, "eq", FAILURE_OUTCOMES))
            else:
                return None
        return specs
    if f.key == "ip":
        for v in values:
            text = str(v)
            if "/" in text:
                low, high = cidr_bounds(text)
                specs.append((P.F_IP, "range", (low.hex(), high.hex())))
            else:
                specs.append((P.F_IP, "eq", (ip_to_bytes(text).hex(),)))
        return specs
    return None


def _severity_levels(f: Filter) -> set[int] | None:
    if f.op == "=":
        levels: set[int] = set()
        for v in f.values:
            if isinstance(v, Range):
                lo, hi = SEVERITIES.index(str(v.low)), SEVERITIES.index(str(v.high))
                levels.update(range(lo, hi + 1))
            else:
                levels.add(SEVERITIES.index(str(v)))
        return levels
    (value,) = f.values
    n = SEVERITIES.index(str(value))
    every = range(len(SEVERITIES))
    keep = {
        ">": lambda x: x > n,
        ">=": lambda x: x >= n,
        "<": lambda x: x < n,
        "<=": lambda x: x <= n,
    }[f.op]
    return {x for x in every if keep(x)}


def _glob(pattern: str) -> str:
    # GLOB is case-sensitive like the action column; its own metacharacters
    # in an action are matched literally.
    return "".join(f"[{c}]" if c in "?[]" else c for c in pattern)


def text_phrases(q: Query) -> tuple[tuple[tuple[str, ...], bool], ...]:
    """The free-text terms as (words, negated), as the documents hold words."""
    return tuple((tuple(_words(t)), t.negated) for t in q.terms if isinstance(t, Text))
