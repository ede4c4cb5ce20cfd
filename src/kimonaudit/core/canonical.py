"""RFC 8785 JSON Canonicalization Scheme (JCS): one value, one byte string.

Leaves and payload commitments hash these bytes, so they must be identical
everywhere, forever. Two paths produce them:

* The fast path hands the value to the standard library's C JSON encoder
  (sorted keys, no whitespace, no ASCII escaping). Its output already *is*
  RFC 8785 when the value has no floats, only I-JSON safe integers, no lone
  surrogates, and no object whose keys sort differently by code point (what
  Python compares) than by UTF-16 code unit (what RFC 8785 section 3.2.3
  demands). The last can only happen when keys mix characters above U+FFFF
  with characters in U+E000..U+FFFF. String escaping needs no check: the
  encoder escapes ``"``, ``\\``, ``\\b \\f \\n \\r \\t`` with short escapes and
  other controls as lowercase ``\\u00xx``, and leaves ``/``, DEL, U+2028 and
  everything else literal, exactly as RFC 8785 section 3.2.2.2 asks (the
  tests pin this for every BMP character).
* The exact path, taken otherwise, serialises by hand: numbers per
  ECMAScript ``Number.prototype.toString`` (RFC 8785 section 3.2.2.3) and keys
  in UTF-16 order. It is also the one that names the problem when a value
  cannot be encoded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from kimonaudit.errors import CanonicalError

__all__ = ["MAX_SAFE_INTEGER", "canonical_json", "canonical_text"]

#: Largest integer magnitude I-JSON (RFC 7493 section 2.2) lets through
#: unchanged: beyond it an IEEE 754 double, which is what RFC 8785 numbers
#: are, no longer holds every integer.
MAX_SAFE_INTEGER = 2**53 - 1

_encode_string: Callable[[str], str] = json.encoder.encode_basestring
_SURROGATE = re.compile("[\\ud800-\\udfff]")
_ASTRAL = re.compile("[\\U00010000-\\U0010ffff]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ACCEPTED = "dict, list, tuple, str, int, float, bool and None"


def canonical_json(value: object) -> bytes:
    """Return the RFC 8785 canonical UTF-8 encoding of ``value``.

    Accepts dict (str keys), list, tuple, str, int, float, bool and None,
    nested. Raises CanonicalError naming the problem and where it is (as a
    path such as ``$.changes[0].to``) for non-string keys, lone surrogates,
    NaN or infinities, integers outside the I-JSON safe range
    ±(2**53 - 1), reference cycles and unsupported types.
    """
    try:
        if _is_plain(value):
            text = _fast_text(value)
            if text.isascii():
                return text.encode("ascii")
            # Raises UnicodeEncodeError on a lone surrogate.
            return text.encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        pass  # a lone surrogate, a cycle or deep nesting: the exact path says which
    return canonical_text(value).encode("utf-8")


def canonical_text(value: object) -> str:
    """Return RFC 8785 canonical JSON as text (``canonical_json`` before UTF-8).

    Always takes the exact path: use ``canonical_json`` when bytes will do.
    """
    out: list[str] = []
    try:
        _encode(value, out, None, set())
    except RecursionError:
        raise CanonicalError("value is nested too deeply to encode") from None
    return "".join(out)


# --- fast path ---------------------------------------------------------------


def _is_plain(value: object) -> bool:
    """Whether the C encoder's output for ``value`` is canonical, bar lone
    surrogates (which the UTF-8 encoding step catches).

    True when the value holds only exact str/int/bool/None/dict/list/tuple,
    string keys that sort alike by code point and by UTF-16, and safe ints.
    """
    if type(value) is dict:
        try:
            keys = "".join(value)
        except TypeError:
            return False  # a key that is not a string
        if not keys.isascii() and not _keys_sort_alike(value, keys):
            return False
        for item in value.values():
            t = type(item)
            if t is str:
                continue
            if t is int:
                if -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                    continue
                return False
            if item is None or t is bool:
                continue
            if (t is dict or t is list or t is tuple) and _is_plain(item):
                continue
            return False
        return True
    if type(value) is list or type(value) is tuple:
        for item in value:
            t = type(item)
            if t is str:
                continue
            if t is int:
                if -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                    continue
                return False
            if item is None or t is bool:
                continue
            if (t is dict or t is list or t is tuple) and _is_plain(item):
                continue
            return False
        return True
    if type(value) is int:
        return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
    return type(value) is str or value is None or type(value) is bool


def _keys_sort_alike(mapping: dict[str, object], joined: str) -> bool:
    # Code point and UTF-16 order differ only around characters above U+FFFF.
    if _ASTRAL.search(joined) is None:
        return True
    try:
        return sorted(mapping) == sorted(mapping, key=_utf16_order)
    except UnicodeEncodeError:
        return False  # a lone surrogate: the exact path reports it


def _reject_unsupported(value: object) -> object:
    raise TypeError(f"unsupported type {type(value).__name__}")


def _build_fast_text() -> Callable[[object], str]:
    """The C encoder, built once: ``json.dumps`` would build it per call.

    Falls back to a reusable JSONEncoder (same bytes, a little slower) if the
    C accelerator is missing or does not behave as expected.
    """
    encoder = json.JSONEncoder(
        ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
    )
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is not None:
        try:
            c_encode = make(
                None, _reject_unsupported, _encode_string, None, ":", ",", True, False, False
            )

            def fast(value: object) -> str:
                return "".join(c_encode(value, 0))

            probe = {"b": [1, True, None], "a": {"é": "\n"}, "": ""}
            if fast(probe) == encoder.encode(probe):
                return fast
        except Exception:  # noqa: S110 - any surprise means: use the portable encoder
            pass
    return encoder.encode


_fast_text = _build_fast_text()


# --- exact path --------------------------------------------------------------


# Where a value sits, built as (parent, key or index) pairs and rendered as
# "$.a[2]" only for an error message: formatting it per item would cost more
# than encoding.
_Path = tuple["_Path", str | int] | None


def _encode(value: object, out: list[str], path: _Path, active: set[int]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_string(_checked_text(value, path, "string")))
    elif isinstance(value, int):
        out.append(_format_int(value, path))
    elif isinstance(value, float):
        out.append(_format_float(value, path))
    elif isinstance(value, dict):
        _enter(value, path, active)
        items = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalError(
                    f"object keys must be strings; found {type(key).__name__} key {key!r} "
                    f"at {_render(path)}"
                )
            items.append((_checked_text(key, path, "object key"), item))
        items.sort(key=_utf16_order_of_key)
        out.append("{")
        for n, (key, item) in enumerate(items):
            if n:
                out.append(",")
            out.append(_encode_string(key))
            out.append(":")
            _encode(item, out, (path, key), active)
        out.append("}")
        active.discard(id(value))
    elif isinstance(value, list | tuple):
        _enter(value, path, active)
        out.append("[")
        for n, item in enumerate(value):
            if n:
                out.append(",")
            _encode(item, out, (path, n), active)
        out.append("]")
        active.discard(id(value))
    else:
        raise CanonicalError(
            f"unsupported type {type(value).__name__} at {_render(path)}; "
            f"canonical JSON accepts {_ACCEPTED}"
        )


def _enter(container: object, path: _Path, active: set[int]) -> None:
    marker = id(container)
    if marker in active:
        raise CanonicalError(f"reference cycle at {_render(path)}: a container includes itself")
    active.add(marker)


def _checked_text(text: str, path: _Path, what: str) -> str:
    if not text.isascii():
        match = _SURROGATE.search(text)
        if match is not None:
            raise CanonicalError(
                f"{what} at {_render(path)} contains a lone surrogate "
                f"U+{ord(match.group()):04X} at offset {match.start()}; "
                "it is not Unicode text and has no UTF-8 form"
            )
    # A str subclass may override __str__ (a str-mixin Enum does): take the data.
    return str.__str__(text)


def _utf16_order(key: str) -> bytes:
    # Big-endian UTF-16 bytes compare exactly as the code units do.
    return key.encode("utf-16-be")


def _utf16_order_of_key(pair: tuple[str, object]) -> bytes:
    return pair[0].encode("utf-16-be")


def _render(path: _Path) -> str:
    steps: list[str] = []
    while path is not None:
        path, step = path
        if isinstance(step, int):
            steps.append(f"[{step}]")
        elif _IDENTIFIER.match(step):
            steps.append(f".{step}")
        else:
            steps.append(f"[{json.dumps(step)}]")
    return "$" + "".join(reversed(steps))


def _format_int(value: int, path: _Path) -> str:
    number = int(value)
    if not -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
        raise CanonicalError(
            f"integer {number} at {_render(path)} is outside the I-JSON safe range "
            f"±(2**53 - 1) = ±{MAX_SAFE_INTEGER} (RFC 7493 section 2.2, RFC 8785 "
            "section 3.2.2.3): it cannot be represented exactly; send it as a string"
        )
    return int.__repr__(number)


def _format_float(value: float, path: _Path) -> str:
    """ECMAScript Number.prototype.toString (ECMA-262 Number::toString)."""
    number = float(value)
    if number != number:
        raise CanonicalError(f"NaN at {_render(path)} is not a JSON number")
    if number in (float("inf"), float("-inf")):
        name = "Infinity" if number > 0 else "-Infinity"
        raise CanonicalError(f"{name} at {_render(path)} is not a JSON number")
    if number == 0:
        return "0"  # and -0.0, which ECMAScript also prints as "0"
    if number < 0:
        return "-" + _format_float(-number, path)
    # repr gives the shortest digit string that round-trips, which is the
    # digit string ECMAScript picks; only its layout differs.
    mantissa, _, exponent = repr(number).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    scale = (int(exponent) if exponent else 0) - len(fraction)
    significant = digits.rstrip("0")
    scale += len(digits) - len(significant)
    # value = significant * 10**scale; ECMAScript's k digits and exponent n:
    k = len(significant)
    n = scale + k
    if k <= n <= 21:
        return significant + "0" * (n - k)
    if 0 < n <= 21:
        return f"{significant[:n]}.{significant[n:]}"
    if -6 < n <= 0:
        return "0." + "0" * -n + significant
    e = n - 1
    head = significant if k == 1 else f"{significant[0]}.{significant[1:]}"
    return f"{head}e{'+' if e >= 0 else '-'}{abs(e)}"
