"""The query language: parse examples, errors that say where and what, and
the round trip parse(to_string(q)) == q over generated queries."""

from __future__ import annotations

import ipaddress
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kimonaudit.core.ipaddr import bytes_to_ip, canonical_ip, cidr_bounds, ip_to_bytes
from kimonaudit.core.query import (
    IS_VALUES,
    KEYS,
    MAX_QUERY_LENGTH,
    MAX_TERMS,
    SEVERITIES,
    Filter,
    Query,
    Range,
    RelativeTime,
    Target,
    Text,
    parse,
    time_bounds,
    to_string,
)
from kimonaudit.core.searchtext import MAX_SEARCH_TEXT, search_text, search_words
from kimonaudit.errors import InvalidInput, InvalidQuery

OUTCOME_VALUES = ("success", "failure", "denied", "error", "unknown")


def F(key: str, *values: object, op: str = "=", negated: bool = False) -> Filter:
    return Filter(key, op, tuple(values), negated)  # type: ignore[arg-type]


def Q(*terms: Filter | Text) -> Query:
    return Query(tuple(terms))


EXAMPLES = [
    ("", Q()),
    ("   \t\n", Q()),
    ("action:ticket.viewed", Q(F("action", "ticket.viewed"))),
    ("action:ticket.*", Q(F("action", "ticket.*"))),
    ("action:role.assigned,role.revoked", Q(F("action", "role.assigned", "role.revoked"))),
    ("-action:api.request", Q(F("action", "api.request", negated=True))),
    ("Action:Ticket.Viewed", Q(F("action", "ticket.viewed"))),
    ("actor:agent_42", Q(F("actor", "agent_42"))),
    ('actor:"Ann Lee, \\"the\\" agent"', Q(F("actor", 'Ann Lee, "the" agent'))),
    ("actor_type:api_key", Q(F("actor_type", "api_key"))),
    ("target:ticket:10482", Q(F("target", Target("ticket", "10482")))),
    ("target:10482", Q(F("target", Target(None, "10482")))),
    ("target:file:a:b", Q(F("target", Target("file", "a:b")))),
    ("target_type:ticket,macro", Q(F("target_type", "ticket", "macro"))),
    ("category:auth", Q(F("category", "auth"))),
    ("ip:203.0.113.9", Q(F("ip", "203.0.113.9"))),
    ("ip:::ffff:203.0.113.9", Q(F("ip", "203.0.113.9"))),
    ("ip:10.1.2.3/8", Q(F("ip", "10.0.0.0/8"))),
    ("ip:2001:DB8::0:1", Q(F("ip", "2001:db8::1"))),
    ("ip:2001:db8::/32,192.0.2.1", Q(F("ip", "2001:db8::/32", "192.0.2.1"))),
    ("outcome:failure,denied", Q(F("outcome", "failure", "denied"))),
    ("severity:>=high", Q(F("severity", "high", op=">="))),
    ("severity:low..high", Q(F("severity", Range("low", "high")))),
    ("is:security", Q(F("is", "security"))),
    ("-is:failure", Q(F("is", "failure", negated=True))),
    ("seq:42", Q(F("seq", 42))),
    ("seq:1..5,9", Q(F("seq", Range(1, 5), 9))),
    ("seq:<10", Q(F("seq", 10, op="<"))),
    ("created:>-7d", Q(F("created", RelativeTime(7, "d"), op=">"))),
    ("created:-12h", Q(F("created", RelativeTime(12, "h")))),
    ("created:<=-30m", Q(F("created", RelativeTime(30, "m"), op="<="))),
    ("created:>=-2w", Q(F("created", RelativeTime(2, "w"), op=">="))),
    ("created:2026-11-01", Q(F("created", date(2026, 11, 1)))),
    (
        "created:2026-11-01..2026-11-30",
        Q(F("created", Range(date(2026, 11, 1), date(2026, 11, 30)))),
    ),
    (
        "created:>2026-11-01T10:30:00Z",
        Q(F("created", datetime(2026, 11, 1, 10, 30, tzinfo=UTC), op=">")),
    ),
    (
        "created:2026-11-01T12:30:00.25+02:00",
        Q(F("created", datetime(2026, 11, 1, 10, 30, 0, 250000, tzinfo=UTC))),
    ),
    ("created:-14d..-7d", Q(F("created", Range(RelativeTime(14, "d"), RelativeTime(7, "d"))))),
    ("printer", Q(Text("printer"))),
    ("-printer", Q(Text("printer", negated=True))),
    ('"status pending"', Q(Text("status pending", phrase=True))),
    ('-"status pending"', Q(Text("status pending", phrase=True, negated=True))),
    ("10:30", Q(Text("10:30"))),
    ("e-mail", Q(Text("e-mail"))),
    (
        'action:role.* created:>-7d -actor_type:system "on call"',
        Q(
            F("action", "role.*"),
            F("created", RelativeTime(7, "d"), op=">"),
            F("actor_type", "system", negated=True),
            Text("on call", phrase=True),
        ),
    ),
    (
        "action:ticket.viewed target:ticket:10482",
        Q(F("action", "ticket.viewed"), F("target", Target("ticket", "10482"))),
    ),
]


@pytest.mark.parametrize(("text", "expected"), EXAMPLES)
def test_examples_parse_to_their_ast(text: str, expected: Query) -> None:
    """Each documented form parses to the AST it stands for."""
    assert parse(text) == expected


@pytest.mark.parametrize(("text", "expected"), EXAMPLES)
def test_examples_round_trip(text: str, expected: Query) -> None:
    """The canonical text of every example parses back to the same AST."""
    assert parse(to_string(expected)) == expected


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("  action:A.B   -x  ", "action:a.b -x"),
        ("ip:::ffff:10.0.0.0/104", "ip:10.0.0.0/8"),
        ("created:2026-11-01T10:00+01:00", "created:2026-11-01T09:00:00Z"),
        ('actor:"plain"', "actor:plain"),
        ('actor:"a..b"', 'actor:"a..b"'),
        ('target:"ticket:a b"', 'target:"ticket:a b"'),
        ("seq:007", "seq:7"),
    ],
)
def test_to_string_is_canonical(text: str, canonical: str) -> None:
    """to_string writes one spelling: normalised values, quotes only when needed."""
    assert to_string(parse(text)) == canonical


def test_quoted_and_bare_values_mean_the_same() -> None:
    """Quoting a value only changes how it is read, not what it means."""
    assert parse('seq:"5" action:"ticket.*"') == parse("seq:5 action:ticket.*")


def test_backslash_escapes_only_quote_and_backslash() -> None:
    r"""Inside quotes \" and \\ are escapes; any other backslash is kept."""
    assert parse(r'"C:\temp \"x\" \\"') == Q(Text('C:\\temp "x" \\', phrase=True))


ERRORS = [
    # (query, position, words the message must contain)
    ("foo:bar", 0, ["unknown key 'foo:'", "action, actor, actor_type"]),
    ("action:x https://example.test", 9, ["unknown key 'https:'"]),
    ("action:", 7, ["missing value", "'action:'"]),
    ("action: ticket.viewed", 7, ["missing value"]),
    ("action:a,", 9, ["missing value"]),
    ("seq:5..", 7, ["missing value"]),
    ("severity:hgh", 9, ["invalid severity 'hgh'", "info, low, medium, high, critical"]),
    ("outcome:ok", 8, ["invalid outcome 'ok'", "success"]),
    ("is:important", 3, ["'important'", "security, failure"]),
    ("ip:1.2.3", 3, ["invalid ip '1.2.3'"]),
    ("ip:10.0.0.0/33", 3, ["invalid ip"]),
    ("seq:-1", 4, ["invalid seq '-1'"]),
    ("seq:1e3", 4, ["invalid seq"]),
    ("created:yesterday", 8, ["invalid created 'yesterday'", "-7d"]),
    ("created:2026-02-30", 8, ["no such date"]),
    ("created:2026-11-01T25:00Z", 8, ["no such date"]),
    ("created:7d", 8, ["invalid created '7d'"]),
    ("action:Ticket!", 7, ["invalid action"]),
    ("actor:agent*", 6, ["no wildcards"]),
    ("actor_type:a'b", 11, ["invalid actor_type"]),
    ("target::1", 7, ["invalid target ':1'"]),
    ("action:>x", 7, ["operator '>'", "not allowed with action:"]),
    ("action:a..b", 7, ["range 'a..b'", "not allowed with action:"]),
    ("seq:10..5", 4, ["empty range '10..5'"]),
    ("severity:high..low", 9, ["empty range"]),
    ("created:2026-11-02..2026-11-01", 8, ["empty range"]),
    ("created:-1d..-2d", 8, ["empty range"]),
    ("seq:>1,2", 6, ["unexpected ','"]),
    ('"unterminated', 0, ["unterminated quoted string"]),
    ('action:"ticket.viewed', 7, ["unterminated quoted string"]),
    ('ab"c"', 2, ["unexpected '\"c\"'", "a space"]),
    ("- foo", 0, ["nothing to negate"]),
    ("foo -", 4, ["nothing to negate"]),
    ("--foo", 1, ["unexpected '-foo'"]),
    ("a OR b", 2, ["'OR'", "alternatives"]),
    ("NOT a", 0, ["'NOT'"]),
    ("@@@", 0, ["nothing to search for in '@@@'"]),
    ('""', 0, ["nothing to search for"]),
    ("ok\x00", 2, ["control character U+0000"]),
    ("ok \x7f", 3, ["control character U+007F"]),
    ("x" * (MAX_QUERY_LENGTH + 1), MAX_QUERY_LENGTH, ["too long"]),
    ("seq:" + ",".join(["1"] * 201), 0, ["too many values"]),
]


@pytest.mark.parametrize(("text", "position", "words"), ERRORS)
def test_errors_name_position_and_problem(text: str, position: int, words: list[str]) -> None:
    """A bad query raises InvalidQuery with the offset and a message naming the problem."""
    with pytest.raises(InvalidQuery) as info:
        parse(text)
    err = info.value
    assert err.position == position
    assert f"position {position}" in err.message
    for word in words:
        assert word in err.message


def test_too_many_terms_is_an_error() -> None:
    """More than MAX_TERMS terms is refused rather than compiled to giant SQL."""
    with pytest.raises(InvalidQuery, match="too many terms") as info:
        parse(" ".join(["x"] * (MAX_TERMS + 1)))
    assert info.value.position == 2 * MAX_TERMS
    assert len(parse(" ".join(["x"] * MAX_TERMS)).terms) == MAX_TERMS


def test_invalid_query_is_invalid_input_for_the_q_field() -> None:
    """Adapters handle query errors as bad input on the `q` parameter."""
    with pytest.raises(InvalidInput) as info:
        parse("nope:1")
    assert info.value.field == "q"


def test_non_text_is_an_invalid_query() -> None:
    """parse() refuses a non-string with InvalidQuery, not a TypeError."""
    with pytest.raises(InvalidQuery):
        parse(b"action:x")  # type: ignore[arg-type]


def test_every_key_is_documented() -> None:
    """docs/query-language.md has a section for every key the parser accepts."""
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "query-language.md").read_text()
    for key in KEYS:
        assert f"`{key}:" in doc, key


def test_time_bounds_cover_a_day_a_moment_and_a_relative_time() -> None:
    """Dates span their whole UTC day; times and relative times one microsecond."""
    day = 86_400_000_000
    start = 1_793_491_200_000_000  # 2026-11-01T00:00:00Z
    assert time_bounds(date(2026, 11, 1), 0) == (start, start + day)
    assert time_bounds(datetime(2026, 11, 1, tzinfo=UTC), 0) == (start, start + 1)
    assert time_bounds(RelativeTime(1, "d"), start + day) == (start, start + 1)


def test_to_string_refuses_what_it_cannot_write() -> None:
    """An AST that no text could produce is an error, not a silently different query."""
    with pytest.raises(ValueError, match="bare word"):
        to_string(Q(Text("two words")))
    with pytest.raises(ValueError, match="needs a type"):
        to_string(Q(F("target", Target(None, "a:b"))))


# --- generated queries -------------------------------------------------------

_NO_CONTROLS = st.characters(blacklist_categories=("Cc", "Cs"))
names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,8}", fullmatch=True)
free_ids = st.text(_NO_CONTROLS, min_size=1, max_size=12)
actions = st.from_regex(r"[a-z0-9_*]{1,6}(\.[a-z0-9_*]{1,6}){0,3}", fullmatch=True)
targets = st.one_of(
    st.builds(Target, names, free_ids),
    st.builds(Target, st.none(), free_ids.filter(lambda s: ":" not in s)),
)
addresses = st.ip_addresses().map(lambda a: canonical_ip(str(a)))
networks = st.one_of(
    st.tuples(st.ip_addresses(v=4), st.integers(0, 32)),
    st.tuples(st.ip_addresses(v=6), st.integers(0, 128)),
).map(lambda t: canonical_ip(str(ipaddress.ip_network(f"{t[0]}/{t[1]}", strict=False))))
# (parse() keeps networks in their canonical spelling, e.g. ::ffff:0:0/96 as 0.0.0.0/0, so the
# generated ASTs use it too.)
relative = st.builds(RelativeTime, st.integers(0, 9_999_999), st.sampled_from("mhdw"))
moments = st.datetimes(timezones=st.just(UTC)).map(lambda d: d.replace(fold=0))
instants = st.one_of(st.dates(), moments, relative)
seqs = st.integers(0, 2**63 - 1)
severities = st.sampled_from(SEVERITIES)


def _ordered_range(values: st.SearchStrategy[object]) -> st.SearchStrategy[Range]:
    def build(pair: tuple[object, object]) -> Range:
        low, high = pair
        same_kind = isinstance(low, date) == isinstance(high, date)
        if isinstance(low, date | RelativeTime) and same_kind:
            key = lambda v: time_bounds(v, 0)[0]  # noqa: E731
        elif isinstance(low, str):
            key = SEVERITIES.index
        elif isinstance(low, int):
            key = int
        else:
            return Range(low, high)  # type: ignore[arg-type]
        a, b = sorted(pair, key=key)
        return Range(a, b)  # type: ignore[arg-type]

    return st.tuples(values, values).map(build)


def _alternatives(scalar: st.SearchStrategy[object], ranged: bool) -> st.SearchStrategy:
    item = st.one_of(scalar, _ordered_range(scalar)) if ranged else scalar
    return st.lists(item, min_size=1, max_size=3).map(tuple)


_SCALARS = {
    "action": actions,
    "actor": free_ids.filter(lambda s: "*" not in s),
    "actor_type": names,
    "category": names,
    "created": instants,
    "ip": st.one_of(addresses, networks),
    "is": st.sampled_from(IS_VALUES),
    "outcome": st.sampled_from(OUTCOME_VALUES),
    "seq": seqs,
    "severity": severities,
    "target": targets,
    "target_type": names,
}
_ORDERED = {"created", "seq", "severity"}


@st.composite
def filters(draw: st.DrawFn) -> Filter:
    key = draw(st.sampled_from(sorted(_SCALARS)))
    negated = draw(st.booleans())
    if key in _ORDERED and draw(st.booleans()):
        op = draw(st.sampled_from([">", ">=", "<", "<="]))
        return Filter(key, op, (draw(_SCALARS[key]),), negated)
    return Filter(key, "=", draw(_alternatives(_SCALARS[key], key in _ORDERED)), negated)


def _bare_word(s: str) -> bool:
    try:
        return parse(s) == Q(Text(s))
    except InvalidQuery:
        return False


words = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.@/_'\-]{0,10}", fullmatch=True),
    st.text(_NO_CONTROLS, min_size=1, max_size=8),
).filter(_bare_word)
phrases = st.text(_NO_CONTROLS, min_size=1, max_size=20).filter(lambda s: bool(search_words(s)))
texts = st.one_of(
    st.builds(Text, words, st.just(False), st.booleans()),
    st.builds(Text, phrases, st.just(True), st.booleans()),
)
terms = st.one_of(filters(), texts)
queries = st.lists(terms, max_size=6).map(lambda ts: Query(tuple(ts)))


@settings(max_examples=300, deadline=None)
@given(queries)
def test_generated_asts_round_trip(q: Query) -> None:
    """parse(to_string(q)) == q for every AST the parser could produce."""
    assert parse(to_string(q)) == q


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_random_text_raises_only_invalid_query(text: str) -> None:
    """Any string either parses (and then round-trips) or raises InvalidQuery."""
    try:
        q = parse(text)
    except InvalidQuery as err:
        assert err.position is not None and 0 <= err.position <= len(text)
        assert f"position {err.position}" in err.message
        return
    assert parse(to_string(q)) == q


_PIECES = [
    "action:", "actor:", "seq:", "created:", "ip:", "severity:", "target:", "is:", "-",
    '"', "\\", ",", "..", ".", ">", ">=", "<", ":", " ", "*", "ticket.*", "10", "-7d",
    "2026-11-01", "10.0.0.0/8", "::1", "high", "security", "foo", "OR", "ticket:1", "a b",
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=12).map("".join))
def test_near_miss_queries_raise_only_invalid_query(text: str) -> None:
    """Strings built from query syntax either round-trip or raise InvalidQuery."""
    try:
        q = parse(text)
    except InvalidQuery as err:
        assert err.position is not None and 0 <= err.position <= len(text)
        assert f"position {err.position}" in err.message
        return
    assert parse(to_string(q)) == q


# --- the helpers queries rely on: stored IP form and the searchable words ----------


def test_ip_to_bytes_maps_ipv4_into_ipv6() -> None:
    """IPv4 is stored as ::ffff:a.b.c.d and IPv6 as itself, both 16 bytes."""
    assert ip_to_bytes("203.0.113.9") == bytes(10) + b"\xff\xff" + bytes([203, 0, 113, 9])
    assert ip_to_bytes("::ffff:203.0.113.9") == ip_to_bytes("203.0.113.9")
    assert ip_to_bytes("2001:db8::1") == bytes.fromhex("20010db8000000000000000000000001")
    assert ip_to_bytes("fe80::1%eth0") == ip_to_bytes("fe80::1")


@pytest.mark.parametrize("bad", ["", "1.2.3", "010.0.0.1", "10.0.0.1/8", "::g", " 1.2.3.4", 42])
def test_ip_to_bytes_refuses_non_addresses(bad: object) -> None:
    """Anything but one address is InvalidInput naming the ip field."""
    with pytest.raises(InvalidInput) as info:
        ip_to_bytes(bad)  # type: ignore[arg-type]
    assert info.value.field == "ip"


def test_bytes_to_ip_shows_mapped_addresses_as_ipv4() -> None:
    """The stored form prints back as the address people know."""
    assert bytes_to_ip(ip_to_bytes("198.51.100.23")) == "198.51.100.23"
    assert bytes_to_ip(ip_to_bytes("2001:DB8:0::1")) == "2001:db8::1"
    with pytest.raises(InvalidInput):
        bytes_to_ip(b"\x01\x02\x03\x04")


def test_cidr_bounds_are_inclusive_and_mapped() -> None:
    """A network's bounds are its first and last address in stored form."""
    assert cidr_bounds("10.1.2.3/8") == (ip_to_bytes("10.0.0.0"), ip_to_bytes("10.255.255.255"))
    assert cidr_bounds("2001:db8::/32") == (
        ip_to_bytes("2001:db8::"),
        ip_to_bytes("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
    )
    assert cidr_bounds("192.0.2.7") == (ip_to_bytes("192.0.2.7"), ip_to_bytes("192.0.2.7"))
    with pytest.raises(InvalidInput):
        cidr_bounds("10.0.0.0/33")


@settings(max_examples=200, deadline=None)
@given(st.ip_addresses(), st.integers(0, 128))
def test_an_address_lies_within_the_bounds_of_its_networks(address: object, prefix: int) -> None:
    """Byte-wise BETWEEN on the stored form is exactly CIDR membership."""
    a = ipaddress.ip_address(address)  # type: ignore[arg-type]
    prefix = min(prefix, a.max_prefixlen)
    network = ipaddress.ip_network(f"{a}/{prefix}", strict=False)
    low, high = cidr_bounds(str(network))
    assert low <= ip_to_bytes(str(a)) <= high
    outside = int(network.broadcast_address) + 1
    if outside <= (2**32 - 1 if a.version == 4 else 2**128 - 1):
        assert ip_to_bytes(str(ipaddress.ip_address(outside))) > high


def test_search_words_fold_case_accents_and_punctuation() -> None:
    """Words are lower-case, unaccented runs of letters and digits."""
    words = search_words("Jürgen MÜLLER ticket.field_changed ann@acme.test 10.0.0.5")
    assert " ".join(words) == "jurgen muller ticket field changed ann acme test 10 0 0 5"


def test_search_text_holds_values_not_keys() -> None:
    """The document has every searchable value, flattened, and none of the keys."""
    text = search_text(
        action="ticket.field_changed",
        target_type="ticket",
        target_id="10482",
        actor_type="agent",
        outcome="success",
        context={"ip": "203.0.113.9", "request_id": None},
        changes=[("status", "open", "pending"), ("urgent", False, True)],
        metadata={"via": "web", "tags": ["VIP", {"tier": 2}]},
    )
    assert text == (
        "ticket field changed ticket 10482 agent success 203 0 113 9"
        " status open pending urgent false true web vip 2"
    )
    for key in ("ip", "request", "via", "tier", "none"):
        assert key not in text.split()


def test_search_text_is_bounded() -> None:
    """A huge payload is cut at a word boundary instead of breaking the index."""
    text = search_text(
        action="api.request",
        target_type=None,
        target_id=None,
        actor_type=None,
        outcome="success",
        context={},
        changes=[],
        metadata={"body": "word " * 20_000},
    )
    assert len(text) <= MAX_SEARCH_TEXT and text.endswith("word")
