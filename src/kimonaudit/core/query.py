"""The search query language: grammar, AST, parser and canonical serialiser.

    action:role.* -actor_type:system created:>-7d "status pending"

A query is a sequence of terms separated by whitespace; an entry matches
when every term matches (implicit AND). A term is a filter ``key:value`` or
free text (a bare word or a "quoted phrase"); a leading ``-`` negates it.
One filter may list alternatives (``outcome:failure,denied``); the keys
``created``, ``seq`` and ``severity`` also take ``>``, ``>=``, ``<``, ``<=``
and inclusive ranges ``low..high``. docs/query-language.md is the reference.

Pure: parsing never reads the clock. A relative time (``-7d``) stays
relative in the AST and is resolved when the query is compiled to SQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Literal, TypeAlias

from lark import Lark, Token, Transformer
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
)

from kimonaudit.core.catalogue import Severity
from kimonaudit.core.events import OUTCOMES
from kimonaudit.core.ipaddr import canonical_ip
from kimonaudit.core.searchtext import search_words
from kimonaudit.errors import InvalidInput, InvalidQuery

Op: TypeAlias = Literal["=", "<", "<=", ">", ">="]
TimeUnit: TypeAlias = Literal["m", "h", "d", "w"]

SEVERITIES = tuple(s.label for s in Severity)  # in order: info (0) .. critical (4)
# is:failure: every outcome that means "it did not happen as asked".
FAILURE_OUTCOMES = ("failure", "denied", "error")
IS_VALUES = ("security", "failure")

# Bounds that keep one query's SQL inside what both databases accept
# (SQLite's expression depth of 1,000, its 32,766 parameters).
MAX_QUERY_LENGTH = 4_000
MAX_TERMS = 100
MAX_VALUES = 200


# --- AST -------------------------------------------------------------------


@dataclass(frozen=True)
class RelativeTime:
    """The moment `amount` units before the query runs: ``-7d``."""

    amount: int
    unit: TimeUnit


@dataclass(frozen=True)
class Target:
    """``target:ticket:10482`` (type and id) or ``target:10482`` (any type)."""

    type: str | None
    id: str


Scalar: TypeAlias = str | int | date | datetime | RelativeTime | Target


@dataclass(frozen=True)
class Range:
    """``low..high``, both ends included."""

    low: Scalar
    high: Scalar


Value: TypeAlias = Scalar | Range


@dataclass(frozen=True)
class Filter:
    """``key:value``. With op ``=`` the values are alternatives (any may match);
    with a comparison there is exactly one value, never a range.

    Values by key: ``seq`` int; ``created`` date (a whole UTC day), datetime
    (aware, UTC) or RelativeTime; ``target`` Target; all others str (``ip``
    in canonical text form, ``severity``/``outcome``/``is`` lower-case labels).
    """

    key: str
    op: Op
    values: tuple[Value, ...]
    negated: bool = False


@dataclass(frozen=True)
class Text:
    """Free text: a bare word (``phrase=False``) or a quoted phrase."""

    value: str
    phrase: bool = False
    negated: bool = False


Term: TypeAlias = Filter | Text


@dataclass(frozen=True)
class Query:
    """All terms must match; no terms matches every entry."""

    terms: tuple[Term, ...] = ()


# --- grammar ---------------------------------------------------------------

# Whitespace is a token, not ignored: it is what separates terms, and
# "action: x" must be an error, not action:x.
_GRAMMAR = r"""
start: _WS? (term (_WS term)* _WS?)?

term: NEG? KEY _COLON spec    -> filter
    | NEG? STRING             -> phrase
    | NEG? WORD               -> word

spec: OP value                -> compare
    | item (_COMMA item)*     -> alternatives

item: value _DOTDOT value     -> range
    | value                   -> single

value: BARE | STRING

NEG: "-"
_COLON: ":"
_COMMA: ","
_DOTDOT: ".."
OP: ">=" | "<=" | ">" | "<"
KEY.3: /[A-Za-z_][A-Za-z0-9_]*(?=:)/
STRING: /"(?:[^"\\]|\\.)*"/s
BARE: /(?:[^\s",.<>]|\.(?!\.))(?:[^\s",.]|\.(?!\.))*/
WORD: /[^\s"\-][^\s"]*/
_WS: /\s+/
"""

_FULL_BARE = re.compile(r'(?:[^\s",.<>]|\.(?!\.))(?:[^\s",.]|\.(?!\.))*')
_FULL_WORD = re.compile(r'[^\s"\-][^\s"]*')
_KEY_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*:")
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)

_RESERVED_WORDS = {"OR", "AND", "NOT"}

_EXPECTED = {
    "KEY": "a filter",
    "NEG": "'-'",
    "STRING": "a quoted string",
    "WORD": "a word",
    "OP": "an operator",
    "BARE": "a value",
    "_COLON": "':'",
    "_COMMA": "','",
    "_DOTDOT": "'..'",
    "_WS": "a space",
    "$END": "the end of the query",
}


def _describe_expected(names: set[str]) -> str:
    wanted = sorted({_EXPECTED.get(n, n) for n in names})
    if len(wanted) <= 1:
        return "".join(wanted)
    return ", ".join(wanted[:-1]) + " or " + wanted[-1]


def _unquote(token: str) -> str:
    # Only \" and \\ are escapes; any other backslash is kept as typed, so
    # a Windows path or a regex pasted into quotes survives.
    return _ESCAPE.sub(lambda m: m.group(1) if m.group(1) in '"\\' else m.group(0), token[1:-1])


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- values by key -------------------------------------------------------------


class _Bad(ValueError):
    """A value that is well-formed syntax but wrong for its key: ``what`` is
    wrong ("invalid severity 'hgh'"), ``detail`` what was expected."""

    def __init__(self, what: str, detail: str) -> None:
        super().__init__(what)
        self.what = what
        self.detail = detail


_ACTION = re.compile(r"[a-z0-9_.*]{1,128}")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}")
_RELATIVE = re.compile(r"-(\d{1,7})([mhdw])", re.ASCII)
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))?",
    re.ASCII,
)
_MAX_ID = 256
_MAX_SEQ = 2**63 - 1


def _one_of(kind: str, allowed: tuple[str, ...]) -> Callable[[str], Scalar]:
    def convert(raw: str) -> Scalar:
        value = raw.lower()
        if value not in allowed:
            raise _Bad(f"invalid {kind} {raw!r}", f"expected one of {', '.join(allowed)}")
        return value

    return convert


def _action(raw: str) -> Scalar:
    value = raw.lower()
    if not _ACTION.fullmatch(value):
        raise _Bad(
            f"invalid action {raw!r}",
            "expected an action such as ticket.viewed"
            " (letters, digits, '_', '.', and '*' as a wildcard)",
        )
    return value


def _name(kind: str) -> Callable[[str], Scalar]:
    def convert(raw: str) -> Scalar:
        if not _NAME.fullmatch(raw):
            raise _Bad(f"invalid {kind} {raw!r}", "expected letters, digits, '_', '.' or '-'")
        return raw

    return convert


def _identifier(kind: str, raw: str) -> str:
    if not raw or len(raw) > _MAX_ID:
        raise _Bad(f"invalid {kind} {raw!r}", f"expected 1 to {_MAX_ID} characters")
    return raw


def _actor(raw: str) -> Scalar:
    if "*" in raw:
        raise _Bad(
            f"invalid actor {raw!r}",
            "actor: takes no wildcards (actors are stored as keyed hashes, matched exactly)",
        )
    return _identifier("actor id", raw)


def _target(raw: str) -> Scalar:
    kind, sep, ident = raw.partition(":")
    if not sep:
        return Target(None, _identifier("target id", raw))
    if not _NAME.fullmatch(kind):
        raise _Bad(f"invalid target {raw!r}", "expected TYPE:ID such as ticket:10482, or an ID")
    return Target(kind, _identifier("target id", ident))


def _ip(raw: str) -> Scalar:
    try:
        return canonical_ip(raw)
    except InvalidInput:
        raise _Bad(
            f"invalid ip {raw!r}", "expected an IPv4 or IPv6 address or a CIDR network"
        ) from None


def _seq(raw: str) -> Scalar:
    if not raw.isascii() or not raw.isdigit() or int(raw) > _MAX_SEQ:
        raise _Bad(f"invalid seq {raw!r}", "expected a whole number, 0 or more")
    return int(raw)


def _created(raw: str) -> Scalar:
    m = _RELATIVE.fullmatch(raw)
    if m:
        return RelativeTime(int(m.group(1)), m.group(2))  # type: ignore[arg-type]
    try:
        m = _DATE.fullmatch(raw)
        if m:
            return date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        m = _DATETIME.fullmatch(raw)
        if m:
            return _datetime(m)
    except (ValueError, OverflowError):
        raise _Bad(f"invalid created {raw!r}", "no such date or time") from None
    raise _Bad(
        f"invalid created {raw!r}",
        "expected a date (2026-11-01), an RFC 3339 time (2026-11-01T09:30:00Z)"
        " or a relative time (-30m, -12h, -7d, -2w)",
    )


def _datetime(m: re.Match[str]) -> datetime:
    year, month, day, hour, minute = (int(m.group(i)) for i in range(1, 6))
    second = int(m.group(6) or 0)
    micro = int((m.group(7) or "").ljust(6, "0"))
    offset = timedelta(0)
    if m.group(9):
        offset = timedelta(hours=int(m.group(10)), minutes=int(m.group(11)))
        if m.group(9) == "-":
            offset = -offset
    local = datetime(year, month, day, hour, minute, second, micro, timezone(offset))
    return local.astimezone(UTC)


@dataclass(frozen=True)
class _Key:
    convert: Callable[[str], Scalar]
    ordered: bool = False  # takes comparisons and ranges


_KEYS: dict[str, _Key] = {
    "action": _Key(_action),
    "actor": _Key(_actor),
    "actor_type": _Key(_name("actor_type")),
    "category": _Key(_name("category")),
    "created": _Key(_created, ordered=True),
    "ip": _Key(_ip),
    "is": _Key(_one_of("is: value", IS_VALUES)),
    "outcome": _Key(_one_of("outcome", OUTCOMES)),
    "seq": _Key(_seq, ordered=True),
    "severity": _Key(_one_of("severity", SEVERITIES), ordered=True),
    "target": _Key(_target),
    "target_type": _Key(_name("target_type")),
}
KEYS = tuple(sorted(_KEYS))
_ORDERED = ", ".join(f"{k}:" for k in KEYS if _KEYS[k].ordered)


UNIT_US: dict[str, int] = {
    "m": 60_000_000,
    "h": 3_600_000_000,
    "d": 86_400_000_000,
    "w": 604_800_000_000,
}
_DAY_US = UNIT_US["d"]
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def time_bounds(value: date | RelativeTime, now_us: int) -> tuple[int, int]:
    """The span a ``created:`` value stands for, ``[start, end)`` in µs since
    the Unix epoch: a whole UTC day for a date, one microsecond for a time or
    a relative time (resolved against `now_us`)."""
    if isinstance(value, RelativeTime):
        start = now_us - value.amount * UNIT_US[value.unit]
        return start, start + 1
    if isinstance(value, datetime):
        since = value - datetime(1970, 1, 1, tzinfo=UTC)
        start = since // timedelta(microseconds=1)
        return start, start + 1
    start = (value.toordinal() - _EPOCH_ORDINAL) * _DAY_US
    return start, start + _DAY_US


def _is_empty_range(low: Scalar, high: Scalar) -> bool:
    # Only ends of one kind compare at parse time: "-7d..2026-11-01" depends
    # on when the query runs.
    if isinstance(low, RelativeTime) and isinstance(high, RelativeTime):
        return time_bounds(low, 0)[0] > time_bounds(high, 0)[0]
    if isinstance(low, date) and isinstance(high, date):
        return time_bounds(low, 0)[0] >= time_bounds(high, 0)[1]
    if isinstance(low, int) and isinstance(high, int):
        return low > high
    if isinstance(low, str) and isinstance(high, str):
        return SEVERITIES.index(low) > SEVERITIES.index(high)
    return False


# --- parse -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Raw:
    text: str  # unquoted
    pos: int
    source: str  # as typed


class _Build(Transformer[Token, Query]):
    """Runs inside the LALR parser, as each rule is reduced, so errors come
    out left to right, the first problem in the text first."""

    def value(self, children: list[Token]) -> _Raw:
        tok = children[0]
        text = _unquote(tok.value) if tok.type == "STRING" else tok.value
        return _Raw(text, tok.start_pos or 0, tok.value)

    def single(self, children: list[_Raw]) -> _Raw:
        return children[0]

    def range(self, children: list[_Raw]) -> tuple[_Raw, _Raw]:
        return children[0], children[1]

    def compare(self, children: list[object]) -> tuple[Token | None, list[object]]:
        op = children[0]
        assert isinstance(op, Token)
        return op, [children[1]]

    def alternatives(self, children: list[object]) -> tuple[Token | None, list[object]]:
        return None, children

    def filter(self, children: list[object]) -> _At:
        negated = isinstance(children[0], Token) and children[0].type == "NEG"
        key_tok, spec = children[-2], children[-1]
        assert isinstance(key_tok, Token) and isinstance(spec, tuple)
        key = key_tok.value.lower()
        op_tok, items = spec
        rule = _KEYS[key]  # the KEY lexer callback has already vetted it
        if op_tok is not None and not rule.ordered:
            raise InvalidQuery(
                f"operator {op_tok.value!r} at position {op_tok.start_pos} is not allowed"
                f" with {key}:; only {_ORDERED} take comparisons",
                position=op_tok.start_pos,
            )
        if len(items) > MAX_VALUES:
            raise InvalidQuery(
                f"too many values for {key}: at position {key_tok.start_pos}"
                f" (at most {MAX_VALUES})",
                position=key_tok.start_pos,
            )
        values = tuple(_convert(key, rule, item) for item in items)
        op: Op = op_tok.value if op_tok is not None else "="
        return _At(Filter(key, op, values, negated), _start(children[0]))

    def phrase(self, children: list[Token]) -> _At:
        tok = children[-1]
        value = _unquote(tok.value)
        _check_searchable(value, tok)
        return _At(Text(value, phrase=True, negated=len(children) == 2), _start(children[0]))

    def word(self, children: list[Token]) -> _At:
        tok = children[-1]
        if tok.value in _RESERVED_WORDS:
            raise InvalidQuery(
                f"{tok.value!r} at position {tok.start_pos} is not an operator here:"
                " terms are always combined with AND, use key:a,b for alternatives"
                f" and '-' to negate; write \"{tok.value}\" to search for the word",
                position=tok.start_pos,
            )
        _check_searchable(tok.value, tok)
        return _At(Text(tok.value, phrase=False, negated=len(children) == 2), _start(children[0]))

    def start(self, children: list[_At]) -> Query:
        if len(children) > MAX_TERMS:
            pos = children[MAX_TERMS].pos
            raise InvalidQuery(
                f"too many terms: the one at position {pos} is number {MAX_TERMS + 1},"
                f" at most {MAX_TERMS} are allowed",
                position=pos,
            )
        return Query(tuple(c.term for c in children))


@dataclass(frozen=True)
class _At:
    term: Term
    pos: int


def _start(first: object) -> int:
    assert isinstance(first, Token)
    return first.start_pos or 0


def _check_searchable(value: str, tok: Token) -> None:
    if not search_words(value):
        raise InvalidQuery(
            f"nothing to search for in {tok.value!r} at position {tok.start_pos}:"
            " free text needs a letter or a digit",
            position=tok.start_pos,
        )


def _convert(key: str, rule: _Key, item: object) -> Value:
    if isinstance(item, tuple):
        low_raw, high_raw = item
        if not rule.ordered:
            raise InvalidQuery(
                f"range {low_raw.source + '..' + high_raw.source!r} at position"
                f" {low_raw.pos} is not allowed with {key}:; only {_ORDERED} take ranges",
                position=low_raw.pos,
            )
        low, high = _scalar(key, rule, low_raw), _scalar(key, rule, high_raw)
        if _is_empty_range(low, high):
            raise InvalidQuery(
                f"empty range {low_raw.source + '..' + high_raw.source!r} at position"
                f" {low_raw.pos}: the earlier or lower end comes first",
                position=low_raw.pos,
            )
        return Range(low, high)
    assert isinstance(item, _Raw)
    return _scalar(key, rule, item)


def _scalar(key: str, rule: _Key, raw: _Raw) -> Scalar:
    try:
        return rule.convert(raw.text)
    except _Bad as exc:
        raise InvalidQuery(
            f"{exc.what} at position {raw.pos}; {exc.detail}", position=raw.pos
        ) from None


def _check_key(tok: Token) -> Token:
    if tok.value.lower() not in _KEYS:
        raise InvalidQuery(
            f"unknown key {tok.value + ':'!r} at position {tok.start_pos};"
            f" valid keys: {', '.join(KEYS)} (quote the text to search for it)",
            position=tok.start_pos,
        )
    return tok


_PARSER = Lark(
    _GRAMMAR,
    parser="lalr",
    lexer="contextual",
    transformer=_Build(),
    lexer_callbacks={"KEY": _check_key},
)


def _check_characters(text: str) -> None:
    if len(text) > MAX_QUERY_LENGTH:
        raise InvalidQuery(
            f"query too long at position {MAX_QUERY_LENGTH}:"
            f" {len(text)} characters, at most {MAX_QUERY_LENGTH}",
            position=MAX_QUERY_LENGTH,
        )
    for i, c in enumerate(text):
        # Control characters and lone surrogates cannot be stored or sent to
        # a database as text; catch them here with a position rather than
        # as a driver error later.
        if (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 or 0xD800 <= ord(c) < 0xE000) and (
            not c.isspace()
        ):
            raise InvalidQuery(
                f"unexpected control character U+{ord(c):04X} at position {i}", position=i
            )


def _syntax_error(text: str, exc: UnexpectedInput) -> InvalidQuery:
    if isinstance(exc, UnexpectedCharacters):
        pos, found = exc.pos_in_stream or 0, exc.char
        if found == '"':
            return InvalidQuery(f"unterminated quoted string at position {pos}", position=pos)
        expected: set[str] = set(exc.allowed or ())
    elif isinstance(exc, UnexpectedToken) and exc.token.type != "$END":
        pos, found = exc.token.start_pos or 0, exc.token.value
        expected = set(exc.expected)
    elif isinstance(exc, UnexpectedToken | UnexpectedEOF):
        pos, found = len(text), ""
        expected = set(exc.expected)
    else:  # pragma: no cover - lark raises only the three above
        pos, found, expected = len(text), "", set()
    before = text[:pos].split()[-1:] or [""]
    if "BARE" in expected and (found == "" or found.isspace()):
        return InvalidQuery(f"missing value after {before[0]!r} at position {pos}", position=pos)
    if "WORD" in expected and before[0].endswith("-") and (found == "" or found.isspace()):
        return InvalidQuery(f"nothing to negate after '-' at position {pos - 1}", position=pos - 1)
    shown = repr(found) if found else "end of query"
    return InvalidQuery(
        f"unexpected {shown} at position {pos}; expected {_describe_expected(expected)}",
        position=pos,
    )


def parse(text: str) -> Query:
    """Parse a query; raise InvalidQuery naming the problem and its character offset."""
    if not isinstance(text, str):
        raise InvalidQuery(f"a query must be text, not {type(text).__name__}")
    _check_characters(text)
    try:
        result = _PARSER.parse(text)
    except UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None
    assert isinstance(result, Query)
    return result


# --- to_string ---------------------------------------------------------------------


def _time_text(value: datetime) -> str:
    value = value.astimezone(UTC)
    fraction = f".{value.microsecond:06d}" if value.microsecond else ""
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}{fraction}Z"
    )


def _scalar_text(value: Scalar) -> str:
    if isinstance(value, bool):
        raise ValueError("a query value cannot be a bool")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return _time_text(value)
    if isinstance(value, date):
        return f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
    if isinstance(value, RelativeTime):
        return f"-{value.amount}{value.unit}"
    if isinstance(value, Target):
        if value.type is None:
            if ":" in value.id:
                raise ValueError(f"target id {value.id!r} needs a type to be written")
            return _value_text(value.id)
        return _value_text(f"{value.type}:{value.id}")
    return _value_text(value)


def _value_text(text: str) -> str:
    return text if _FULL_BARE.fullmatch(text) else _quote(text)


def _term_text(term: Term) -> str:
    sign = "-" if term.negated else ""
    if isinstance(term, Text):
        if term.phrase:
            return sign + _quote(term.value)
        if (
            not _FULL_WORD.fullmatch(term.value)
            or _KEY_PREFIX.match(term.value)
            or term.value in _RESERVED_WORDS
        ):
            raise ValueError(f"{term.value!r} cannot be written as a bare word")
        return sign + term.value
    parts = []
    for value in term.values:
        if isinstance(value, Range):
            parts.append(f"{_scalar_text(value.low)}..{_scalar_text(value.high)}")
        else:
            parts.append(_scalar_text(value))
    op = "" if term.op == "=" else term.op
    return f"{sign}{term.key}:{op}{','.join(parts)}"


def to_string(q: Query) -> str:
    """The canonical text of a query: ``parse(to_string(q)) == q``."""
    return " ".join(_term_text(t) for t in q.terms)
