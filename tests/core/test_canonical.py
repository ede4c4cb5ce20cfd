"""RFC 8785 canonical JSON: golden bytes, the fast path's equivalence, errors.

Facts cited from RFC 8785: the example of section 3.2.2, the key-sorting
example of section 3.2.3 and number serialisations from Appendix B.
"""

from __future__ import annotations

import datetime
import decimal
import enum
import math
import struct
from collections import OrderedDict
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from kimonaudit.core.canonical import MAX_SAFE_INTEGER, canonical_json, canonical_text
from kimonaudit.errors import CanonicalError, InvalidInput

# --- golden bytes, written by hand from the RFC's rules ---------------------------

GOLDEN: list[tuple[object, bytes]] = [
    (None, b"null"),
    (True, b"true"),
    (False, b"false"),
    (0, b"0"),
    (-17, b"-17"),
    ("", b'""'),
    ({}, b"{}"),
    ([], b"[]"),
    ((), b"[]"),
    ({"a": {}, "b": [], "c": ""}, b'{"a":{},"b":[],"c":""}'),
    ({"b": 1, "a": "x"}, b'{"a":"x","b":1}'),
    ([3, "two", None, True], b'[3,"two",null,true]'),
    (
        {"z": [1, {"y": None, "x": True}], "a": {"c": "d", "B": False}},
        b'{"a":{"B":false,"c":"d"},"z":[1,{"x":true,"y":null}]}',
    ),
    # Non-ASCII text is written as UTF-8, never as \u escapes.
    ("é", b'"\xc3\xa9"'),
    ("€", b'"\xe2\x82\xac"'),
    ("\U0001f600", b'"\xf0\x9f\x98\x80"'),
    ({"naïve": "café"}, b'{"na\xc3\xafve":"caf\xc3\xa9"}'),
    # Short escapes for these five controls, \u00xx (lowercase) for the rest.
    ("\b\f\n\r\t", b'"\\b\\f\\n\\r\\t"'),
    ("\x00\x01\x0b\x1f", b'"\\u0000\\u0001\\u000b\\u001f"'),
    ('quote " backslash \\', b'"quote \\" backslash \\\\"'),
    # Left alone: solidus, DEL, C1 controls, line/paragraph separators.
    ("/", b'"/"'),
    ("\x7f", b'"\x7f"'),
    ("\x80", b'"\xc2\x80"'),
    ("\u2028\u2029", b'"\xe2\x80\xa8\xe2\x80\xa9"'),
    # Numbers: ECMAScript Number.prototype.toString.
    (1.0, b"1"),
    (-0.0, b"0"),
    (0.5, b"0.5"),
    (-1.5, b"-1.5"),
    (1e21, b"1e+21"),
    (1e20, b"100000000000000000000"),
    (5e-7, b"5e-7"),
    (0.000001, b"0.000001"),
    (1.5e-7, b"1.5e-7"),
    (123.456, b"123.456"),
    (1e16, b"10000000000000000"),
    (2.5e25, b"2.5e+25"),
    (MAX_SAFE_INTEGER, b"9007199254740991"),
    (-MAX_SAFE_INTEGER, b"-9007199254740991"),
    ({"n": [1, 1.0, 1.25]}, b'{"n":[1,1,1.25]}'),
]


@pytest.mark.parametrize(("value", "expected"), GOLDEN, ids=[repr(v)[:40] for v, _ in GOLDEN])
def test_golden_bytes(value: object, expected: bytes) -> None:
    """Each value encodes to the bytes RFC 8785's rules give, on both paths."""
    assert canonical_json(value) == expected
    assert canonical_text(value).encode("utf-8") == expected


def test_rfc8785_section_3_2_2_example() -> None:
    """The worked example of RFC 8785 section 3.2.2 gives the RFC's output."""
    value = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    assert canonical_json(value) == (
        b'{"literals":[null,true,false],'
        b'"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        b'"string":"\xe2\x82\xac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )


def test_rfc8785_section_3_2_3_key_order() -> None:
    """Keys sort by UTF-16 code units: U+1F600 (D83D DE00) before U+FB33."""
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    assert canonical_json(value) == (
        b'{"\\r":"Carriage Return","1":"One","\xc2\x80":"Control",'
        b'"\xc3\xb6":"Latin Small Letter O With Diaeresis","\xe2\x82\xac":"Euro Sign",'
        b'"\xf0\x9f\x98\x80":"Emoji: Grinning Face",'
        b'"\xef\xac\xb3":"Hebrew Letter Dalet With Dagesh"}'
    )


def test_utf16_order_applies_to_nested_objects() -> None:
    """A nested object with astral and U+E000.. keys is sorted by UTF-16 too."""
    value = {"outer": [{"\uffff": 1, "\U00010000": 2}]}
    assert canonical_json(value) == b'{"outer":[{"\xf0\x90\x80\x80":2,"\xef\xbf\xbf":1}]}'


# RFC 8785 Appendix B: IEEE 754 bit patterns and their serialisations.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B)
def test_rfc8785_appendix_b_numbers(bits: str, expected: str) -> None:
    """Each Appendix B double serialises exactly as the RFC lists."""
    (number,) = struct.unpack(">d", bytes.fromhex(bits))
    assert canonical_json(number) == expected.encode("ascii")


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_rfc8785_appendix_b_non_numbers_rejected(bits: str) -> None:
    """NaN and the infinities of Appendix B are errors, as the RFC requires."""
    (number,) = struct.unpack(">d", bytes.fromhex(bits))
    with pytest.raises(CanonicalError, match="not a JSON number"):
        canonical_json(number)


def test_every_bmp_character_is_escaped_as_rfc8785_says() -> None:
    """For every BMP scalar value, the output matches RFC 8785's escaping rules."""
    short = {"\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    short |= {'"': '\\"', "\\": "\\\\"}
    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue
        char = chr(code)
        if char in short:
            body = short[char]
        elif code < 0x20:
            body = f"\\u{code:04x}"
        else:
            body = char
        assert canonical_json(char) == f'"{body}"'.encode(), hex(code)


def test_all_characters_at_once_match_rfc8785_package() -> None:
    """One string holding every scalar value below U+20000 encodes as rfc8785 does."""
    text = "".join(chr(c) for c in range(0x20000) if not 0xD800 <= c <= 0xDFFF)
    assert canonical_json(text) == rfc8785.dumps(text)
    assert canonical_json({text: text}) == rfc8785.dumps({text: text})


# --- differential and path-equivalence properties ---------------------------------

SAFE_INTS = st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
# Characters around the places where code point and UTF-16 order part ways.
TRICKY_KEYS = st.text(
    alphabet=st.sampled_from(["a", "Z", "é", "\u20ac", "\ue000", "\uffff", "\U00010000", "😀"]),
    max_size=3,
)
SCALARS = st.none() | st.booleans() | SAFE_INTS | FLOATS | st.text()
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text() | TRICKY_KEYS, children, max_size=6)
    ),
    max_leaves=25,
)
PLAIN_VALUES = st.recursive(
    st.none() | st.booleans() | SAFE_INTS | st.text(),
    lambda children: (
        st.lists(children, max_size=5)
        | st.tuples(children, children)
        | st.dictionaries(st.text() | TRICKY_KEYS, children, max_size=6)
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(JSON_VALUES)
def test_matches_rfc8785_package(value: Any) -> None:
    """Any JSON value (floats, safe ints, non-BMP text) encodes as rfc8785 does."""
    assert canonical_json(value) == rfc8785.dumps(value)


@settings(max_examples=200, deadline=None)
@given(FLOATS)
def test_floats_match_rfc8785_package_and_round_trip(number: float) -> None:
    """A float's text equals rfc8785's and parses back to the same double."""
    encoded = canonical_json(number)
    assert encoded == rfc8785.dumps(number)
    assert float(encoded) == number or (number == 0 and float(encoded) == 0)


@settings(max_examples=300, deadline=None)
@given(PLAIN_VALUES)
def test_fast_path_equals_exact_path(value: Any) -> None:
    """Where the C encoder is used, its bytes equal the hand-written encoder's."""
    assert canonical_json(value) == canonical_text(value).encode("utf-8")


def test_astral_and_private_use_keys_need_the_exact_order() -> None:
    """Keys that Python's sort orders wrongly still come out in UTF-16 order."""
    value = {"\ue000": 1, "\U00010000": 2}
    assert sorted(value) == ["\ue000", "\U00010000"]  # code point order
    assert canonical_json(value) == b'{"\xf0\x90\x80\x80":2,"\xee\x80\x80":1}'


# --- accepted subclasses ---------------------------------------------------------


class Colour(enum.StrEnum):
    RED = "red"


class Mixed(str, enum.Enum):  # noqa: UP042 - its __str__ gives "Mixed.BLUE": the case under test
    BLUE = "blue"


class Level(enum.IntEnum):
    HIGH = 3


def test_str_and_int_subclasses_encode_as_their_values() -> None:
    """Enum members mixed with str or int encode as the plain value, not the name."""
    assert canonical_json({"c": Colour.RED, "m": Mixed.BLUE, "l": Level.HIGH}) == (
        b'{"c":"red","l":3,"m":"blue"}'
    )
    assert canonical_json({Mixed.BLUE: 1}) == b'{"blue":1}'


def test_dict_subclass_is_sorted_like_a_dict() -> None:
    """An OrderedDict is an object: its insertion order does not leak out."""
    assert canonical_json(OrderedDict([("b", 1), ("a", 2)])) == b'{"a":2,"b":1}'


def test_canonical_text_is_the_decoded_bytes() -> None:
    """canonical_text returns the same document as str."""
    value = {"é": [1.5, "\U0001f600"]}
    assert canonical_text(value) == canonical_json(value).decode("utf-8")


# --- errors ----------------------------------------------------------------------

cycle: list[object] = []
cycle.append(cycle)

ERRORS: list[tuple[object, str]] = [
    ({1: "a"}, r"object keys must be strings; found int key 1 at \$"),
    ({"a": {None: 1}}, r"found NoneType key None at \$\.a"),
    ({("t",): 1}, r"found tuple key"),
    ({"a": 1, 2: 3}, r"found int key 2"),
    ("\ud800", r"string at \$ contains a lone surrogate U\+D800"),
    ({"k": ["ok", "x\udfff"]}, r"string at \$\.k\[1\] contains a lone surrogate U\+DFFF"),
    ({"a\udc00": 1}, r"object key at \$ contains a lone surrogate U\+DC00"),
    ("\ud83d\ude00", r"lone surrogate U\+D83D"),  # a pair as two code points is not text
    (math.nan, r"NaN at \$ is not a JSON number"),
    ({"x": [math.inf]}, r"Infinity at \$\.x\[0\] is not a JSON number"),
    (-math.inf, r"-Infinity at \$ is not a JSON number"),
    (MAX_SAFE_INTEGER + 1, r"integer 9007199254740992 at \$ is outside the I-JSON safe range"),
    ({"n": -(2**53)}, r"integer -9007199254740992 at \$\.n is outside the I-JSON safe range"),
    ({"n": 10**30}, r"safe range"),
    ({"d": decimal.Decimal("1.5")}, r"unsupported type Decimal at \$\.d"),
    ({"s": {1, 2}}, r"unsupported type set"),
    (b"bytes", r"unsupported type bytes at \$"),
    ({"when": datetime.date(2026, 1, 1)}, r"unsupported type date at \$\.when"),
    ({"weird key": object()}, r'unsupported type object at \$\["weird key"\]'),
    (cycle, r"reference cycle at \$\[0\]"),
]


@pytest.mark.parametrize(("value", "message"), ERRORS, ids=[m[:30] for _, m in ERRORS])
def test_unencodable_values_raise_canonical_error(value: object, message: str) -> None:
    """Each unencodable value raises CanonicalError naming the problem and its place."""
    with pytest.raises(CanonicalError, match=message):
        canonical_json(value)
    with pytest.raises(CanonicalError, match=message):
        canonical_text(value)


def test_canonical_error_is_invalid_input() -> None:
    """CanonicalError sits under InvalidInput, so adapters report it as bad input."""
    with pytest.raises(InvalidInput):
        canonical_json({1: 1})


def test_safe_range_message_says_why() -> None:
    """The integer error names the I-JSON range so a caller knows the limit."""
    with pytest.raises(CanonicalError) as caught:
        canonical_json(2**60)
    assert "±(2**53 - 1)" in str(caught.value)
    assert "string" in str(caught.value)


def test_very_deep_nesting_is_an_error_not_a_crash() -> None:
    """Nesting beyond the recursion limit raises CanonicalError."""
    value: object = "leaf"
    for _ in range(100_000):
        value = [value]
    with pytest.raises(CanonicalError, match="nested too deeply"):
        canonical_json(value)
