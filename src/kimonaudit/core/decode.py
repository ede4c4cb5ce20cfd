"""Ingest events decoded and validated at C speed with msgspec.

Three entry points, all returning the same `Event` as `validate_event`:

* ``decode_body(raw)``: an HTTP body, one event object or ``{"events": [...]}``;
* ``decode_line(raw)``: one NDJSON line, one event object;
* ``convert_batch(objs)``: Python dicts (the library's ``AuditLog.append``),
  used by ``validate_batch``.

How it stays exact. msgspec checks the shape (keys, types, lengths, counts,
the safe-integer range, nesting depth) against typed structs in C; a little
Python then does what a schema cannot (control characters, IP addresses,
timestamps, severities, the payload's canonical bytes). Whenever either
step would reject the input, or meets anything unusual, the fast path gives
up (`Slow`) and the caller runs the reference validator of `events.py`,
which produces today's exact error message and field path. So an error
costs a second validation, and a valid event is never judged by anything
but rules at least as strict as the reference's; a differential Hypothesis
test against a frozen copy of the reference pins that.

Duplicate keys (``{"action": "a.b", "action": "c.d"}``) are refused, which
JSON parsers otherwise resolve silently (last one wins). Proving their
absence costs almost nothing: every key in the raw text ends with ``":``
(once no whitespace sits before a colon), so ``raw.count(b'":')`` bounds
the number of keys from above; the decoded objects' member count is known
exactly; when the two agree there can be no duplicate. Only when they
differ (a string value that starts with ``:``, unusual spacing, or a real
duplicate) is the text parsed again to look for one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from kimonaudit.core import events as ev
from kimonaudit.core.canonical import canonical_json
from kimonaudit.core.catalogue import CATALOGUE, ActionInfo, classify
from kimonaudit.core.leaf import MAX_PAYLOAD_BYTES
from kimonaudit.core.timefmt import format_ts, parse_ts
from kimonaudit.errors import InvalidEvent, InvalidInput

__all__ = [
    "DuplicateKey",
    "Slow",
    "convert_batch",
    "decode_body",
    "decode_body_fast",
    "decode_line",
    "decode_line_fast",
    "loads_unique",
    "pairs_hook",
    "raise_duplicate",
]


class Slow(Exception):
    """The fast path cannot decide: run the reference validator."""


class DuplicateKey(InvalidEvent):
    """A JSON object holds the same key twice; `key` is the key."""

    key: str = ""


# ---- the typed shape -----------------------------------------------------------

_MAX_INT = ev.MAX_SAFE_INTEGER
_SafeInt = Annotated[int, Meta(ge=-_MAX_INT, le=_MAX_INT)]
_FiniteFloat = Annotated[float, Meta(ge=-1.7976931348623157e308, le=1.7976931348623157e308)]
_Text = Annotated[str, Meta(min_length=1, max_length=ev.MAX_TEXT_LENGTH)]
_OptionalText = Annotated[str, Meta(max_length=ev.MAX_TEXT_LENGTH)]
_Outcome = Literal["success", "failure", "denied", "error", "unknown"]
assert ev.OUTCOMES == ("success", "failure", "denied", "error", "unknown")


#: Containers the fast path follows inside one value. The reference allows
#: MAX_DEPTH (16); deeper values than this are rare and go to it. (msgspec
#: expands the unrolled types below without sharing: 2**depth work, once.)
FAST_DEPTH = 5


def _json_types(floats: bool) -> list[Any]:
    """levels[k]: a JSON value holding at most k levels of containers.

    Unrolling the recursion lets msgspec count them."""
    leaf: Any = (
        None | bool | _SafeInt | _FiniteFloat | str if floats else None | bool | _SafeInt | str
    )
    levels = [leaf]
    for _ in range(FAST_DEPTH):
        inner = levels[-1]
        levels.append(leaf | list[inner] | dict[str, inner])  # type: ignore[valid-type]
    return levels


class _Types:
    """The structs of one tier: without floats (their payload is encoded by
    msgspec directly) or with them (RFC 8785 number formatting needed)."""

    def __init__(self, floats: bool) -> None:
        levels = _json_types(floats)
        # A container value (context, metadata) is at depth 0, its members at
        # depth 1; a change's "from"/"to" value is itself at depth 0. All
        # stay well within the reference's MAX_DEPTH.
        member = levels[FAST_DEPTH - 1]
        value = levels[FAST_DEPTH]
        opt = UNSET
        # gc=False: the decoded structs are not tracked by the cycle
        # collector (they hold fresh containers of plain values and nothing
        # refers back to them, so they cannot be in a cycle). An append of
        # 1,000 events then allocates thousands fewer tracked objects, which
        # makes collections rarer and shorter.
        kw: dict[str, Any] = {"forbid_unknown_fields": True, "gc": False}
        actor = msgspec.defstruct(
            "ActorIn",
            [
                ("id", _Text),
                ("type", str | None | UnsetType, opt),
                ("name", _OptionalText | None | UnsetType, opt),
                ("email", _OptionalText | None | UnsetType, opt),
            ],
            **kw,
        )
        target = msgspec.defstruct("TargetIn", [("type", _Text), ("id", _Text)], **kw)
        change = msgspec.defstruct(
            "ChangeIn",
            [
                ("field", _Text),
                ("before", value | UnsetType, opt),
                ("after", value | UnsetType, opt),
            ],
            rename={"before": "from", "after": "to"},
            **kw,
        )
        obj = dict[str, member]  # type: ignore[valid-type]
        self.event: Any = msgspec.defstruct(
            "EventIn",
            [
                ("action", str),
                ("id", _Text | None | UnsetType, opt),
                ("actor", actor | None | UnsetType, opt),
                ("target", target | None | UnsetType, opt),
                ("context", obj | None | UnsetType, opt),
                (
                    "changes",
                    Annotated[list[change], Meta(max_length=ev.MAX_CHANGES)]  # type: ignore[valid-type]
                    | None
                    | UnsetType,
                    opt,
                ),
                ("outcome", _Outcome | None | UnsetType, opt),
                ("occurred_at", str | None | UnsetType, opt),
                ("metadata", obj | None | UnsetType, opt),
                ("severity", str | None | UnsetType, opt),
            ],
            **kw,
        )
        batch = msgspec.defstruct(
            "BatchIn",
            [("events", Annotated[list[self.event], Meta(min_length=1)])],  # type: ignore[name-defined]
            **kw,
        )
        self.one: Any = msgspec.json.Decoder(self.event)
        self.batch: Any = msgspec.json.Decoder(batch)
        self.objects: Any = list[self.event]  # type: ignore[name-defined]


_PLAIN = _Types(floats=False)
_FLOATS = _Types(floats=True)
_encode = msgspec.json.Encoder(order="sorted").encode
_BATCH_START = re.compile(rb'[ \t\r\n]*\{[ \t\r\n]*"events"')
_ASTRAL_UTF8 = re.compile(rb"[\xf0-\xf4]")
_CUSTOM_ACTIONS: dict[str, ActionInfo] = {}
# What msgspec.convert raises for input the fast path leaves to the reference.
_REFUSED = (msgspec.ValidationError, RecursionError, UnicodeEncodeError)
#: `_finish` of the common event in C (the optional extension's `finish`);
#: tests switch it off to compare. Core stays importable without it.
NATIVE_FINISH = True
_CATALOGUE = dict(CATALOGUE)  # the C code looks actions up in a plain dict
_finish_in_c: Callable[..., list[Any]] | None
try:
    from kimonaudit._native import finish as _finish_in_c
except ImportError:
    _finish_in_c = None


def key_colons_py(raw: bytes) -> tuple[int, bool]:
    """How many times '":' occurs in `raw`, and whether a colon follows
    whitespace anywhere (`_RawText.no_duplicates`); the C extension's
    `key_colons` does it in one pass over the colons."""
    odd = (
        b" :" in raw
        or (b"\n" in raw and b"\n:" in raw)
        or (b"\t" in raw and b"\t:" in raw)
        or (b"\r" in raw and b"\r:" in raw)
    )
    return raw.count(b'":'), odd


_key_colons: Callable[[bytes], tuple[int, bool]]
try:
    from kimonaudit._native import key_colons as _key_colons
except ImportError:
    _key_colons = key_colons_py


# ---- entry points ----------------------------------------------------------------


def decode_body_fast(raw: bytes) -> list[Event]:
    """The events of an HTTP body (one event object or ``{"events": [...]}``).

    Raises DuplicateKey (an InvalidEvent naming the key's path) for a
    repeated key, and Slow for anything else the fast path does not accept:
    the caller then runs its reference parser and validator for the verdict.
    Does not check the batch size against a server's limit."""
    batch = _BATCH_START.match(raw) is not None
    decoded = _decode(raw, batch)
    if decoded is None:
        raise Slow
    items, types_floats = decoded
    check = _RawText(raw)
    if batch and len(items) > ev.MAX_BATCH_EVENTS:
        raise Slow
    out = []
    members = 1 if batch else 0
    general = types_floats or check.astral
    done = None if general else _native_finish(items, from_json=True)
    for i, item in enumerate(items):
        hit = None if done is None else done[i]
        event, n = _finish(item, general, True) if hit is None else hit
        members += n
        out.append(event)
    if batch:
        _unique_ids(out)
    check.no_duplicates(members)
    return out


def decode_line_fast(raw: bytes) -> Event:
    """One event object (an NDJSON line): as `decode_body_fast` for one event."""
    decoded = _decode(raw, False)
    if decoded is None:
        raise Slow
    items, types_floats = decoded
    check = _RawText(raw)
    general = types_floats or check.astral
    hit = None if general else (_native_finish(items, from_json=True) or [None])[0]
    event, members = _finish(items[0], general, True) if hit is None else hit
    check.no_duplicates(members)
    return event


def decode_body(raw: bytes) -> list[Event]:
    """`decode_body_fast`, falling back to ``json.loads`` and the reference
    validator. Malformed JSON raises InvalidInput (field "")."""
    try:
        return decode_body_fast(raw)
    except Slow:
        pass
    data = loads_unique(raw)
    if isinstance(data, dict) and "events" in data:
        for key in sorted(data):
            if key != "events":
                raise InvalidEvent(
                    f'unknown key {key!r}; a batch is {{"events": [...]}}', field=key
                )
        return ev.validate_batch(data["events"])
    return [ev.validate_event(data)]


def decode_line(raw: bytes) -> Event:
    """`decode_line_fast`, falling back to ``json.loads`` and the reference
    validator. Malformed JSON raises InvalidInput (field "")."""
    try:
        return decode_line_fast(raw)
    except Slow:
        pass
    return ev.validate_event(loads_unique(raw))


def convert_batch(objs: list[Any] | tuple[Any, ...]) -> list[Event]:
    """Python event dicts checked by msgspec.convert. An event the fast path
    does not accept goes to the reference `validate_event`, which returns it
    or raises its exact error; Slow for batch-level problems (size, repeated
    ids), which the caller's reference `validate_batch` reports."""
    if len(objs) > ev.MAX_BATCH_EVENTS:
        raise Slow
    # Without floats first: their payloads need no walk for floats.
    floats = False
    try:
        items = msgspec.convert(objs, _PLAIN.objects)
    # UnicodeEncodeError: msgspec naming a value with a lone surrogate in its
    # error message fails itself; the reference validator says what is wrong.
    except _REFUSED:
        floats = True
        try:
            items = msgspec.convert(objs, _FLOATS.objects)
        except _REFUSED:
            items = None  # find the culprit event by event
    out = []
    done = _native_finish(items) if items is not None and not floats else None
    for i, obj in enumerate(objs):
        try:
            if type(obj) is not dict:
                raise Slow
            if done is not None and (finished := done[i]) is not None:
                out.append(finished)
                continue
            item = items[i] if items is not None else _convert_one(obj)
            out.append(_finish(item, floats, False)[0])
        except Slow:
            out.append(ev.validate_event(obj, f"events[{i}]."))
    _unique_ids(out)
    return out


def _native_finish(items: list[Any], from_json: bool = False) -> list[Any] | None:
    """`_finish` of the common events in C, where the optional extension was
    built (None elsewhere): per item its Event (from_json: its (Event,
    members) pair, as `_finish` returns it), or None where `_finish` must
    decide (kimonaudit/_native.c says which)."""
    if _finish_in_c is None or not NATIVE_FINISH:
        return None
    return _finish_in_c(
        items,
        (UNSET, _CATALOGUE, _CUSTOM_ACTIONS, _actors, _targets, ev.RESERVED_IDS, ev._normal_ip,
         _encode, MAX_PAYLOAD_BYTES, Event, ev.Target, ev.Change, _CACHE_LIMIT, ev.Actor,
         ev.DEFAULT_ACTOR_TYPE),
        from_json,
    )  # fmt: skip


def _convert_one(obj: Any) -> Any:
    try:
        return msgspec.convert(obj, _FLOATS.event)
    except _REFUSED:
        raise Slow from None


def loads_unique(raw: bytes) -> Any:
    """``json.loads`` of UTF-8 bytes, refusing duplicate keys (DuplicateKey).

    InvalidInput for bytes that are not UTF-8 JSON; errors name the line,
    column and byte offset."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"not UTF-8 (invalid byte 0x{raw[exc.start]:02X} at byte {exc.start})"
        ) from None
    try:
        data = json.loads(text, object_pairs_hook=pairs_hook)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise InvalidInput("not JSON (nested too deeply)") from None
    except ValueError as exc:  # an integer with too many digits
        raise InvalidInput(f"not JSON ({exc})") from None
    raise_duplicate(data, "")
    return data


# ---- decoding -------------------------------------------------------------------


def _decode(raw: bytes, batch: bool) -> tuple[list[Any], bool] | None:
    """(event structs, floats possible) or None when msgspec refuses."""
    for types in (_PLAIN, _FLOATS):
        try:
            if batch:
                return types.batch.decode(raw).events, types is _FLOATS
            return [types.one.decode(raw)], types is _FLOATS
        except msgspec.ValidationError:
            continue  # a float, maybe: try the tier that allows them
        except (msgspec.DecodeError, RecursionError):
            return None
    return None


class _RawText:
    """What the raw bytes tell cheaply, before any value is looked at.

    Single-byte searches (memchr) come first: the common body has no
    backslash and no tab, newline or carriage return at all."""

    __slots__ = ("astral", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        # Astral characters come as 4-byte UTF-8 or as escaped surrogate pairs.
        escaped = b"\\" in raw and (b"\\ud" in raw or b"\\uD" in raw)
        if raw.isascii():
            self.astral = escaped
        else:
            try:
                raw.decode("utf-8")  # msgspec checked its strings; belt and braces
            except UnicodeDecodeError:
                raise Slow from None
            self.astral = escaped or _ASTRAL_UTF8.search(raw) is not None

    def no_duplicates(self, members: int) -> None:
        """Raise DuplicateKey if the text repeats a key, given the number of
        members the decoded objects hold."""
        raw = self.raw
        quotes, odd = _key_colons(raw)
        if quotes == members and not odd:
            return  # every key ends in '":' and none was lost: no duplicate
        data = json.loads(raw, object_pairs_hook=pairs_hook)
        raise_duplicate(data, "")


class _Pairs(dict[str, Any]):
    """A decoded object that held a key more than once."""

    duplicate: str = ""


def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for json.loads that marks an object holding a
    key twice; `raise_duplicate` then names the first such key."""
    out = dict(pairs)
    if len(out) == len(pairs):
        return out
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            marked = _Pairs(out)
            marked.duplicate = key
            return marked
        seen.add(key)
    return out  # pragma: no cover - unreachable


def raise_duplicate(value: Any, where: str = "") -> None:
    """Raise DuplicateKey naming the path of the first key repeated in
    `value` (parsed with `pairs_hook`)."""
    if isinstance(value, dict):
        if isinstance(value, _Pairs):
            key = value.duplicate
            exc = DuplicateKey(
                f"duplicate key {json.dumps(key, ensure_ascii=False)}: a key may appear only "
                f"once in an object (I-JSON, RFC 7493)",
                field=where + _step(key, where),
            )
            exc.key = key
            raise exc
        for key, item in value.items():
            if isinstance(item, dict | list):
                raise_duplicate(item, where + _step(key, where))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict | list):
                raise_duplicate(item, f"{where}[{i}]")


def _step(key: str, where: str) -> str:
    if ev._PLAIN_KEY.fullmatch(key):
        return f".{key}" if where else key
    return f"[{json.dumps(key)}]"


# ---- finishing one event ------------------------------------------------------------

Event = ev.Event
_new: Callable[[type[Any]], Any] = object.__new__
_set = object.__setattr__
_astuple = msgspec.structs.astuple
_CONTAINERS = (dict, list)
_STR_ONLY = frozenset((str,))
_CACHE_LIMIT = 10_000
# Frozen, validated parts that repeat from event to event, shared.
_actors: dict[tuple[Any, ...], tuple[ev.Actor, int]] = {}
_targets: dict[tuple[str, str], ev.Target] = {}
_days: dict[str, int] = {}


def _finish(item: Any, general: bool, from_json: bool) -> tuple[Event, int]:
    """The Event of a decoded struct and the number of members its JSON
    objects held (for the duplicate-key check). Raises Slow when the
    reference validator must judge.

    `general`: the values may hold floats or characters above U+FFFF, so the
    payload takes the general RFC 8785 encoder. `from_json`: the values come
    from msgspec's JSON decoder, so they are exact built-in types; otherwise
    (msgspec.convert of Python values) `general` says floats were allowed,
    and whatever the C encoder's bytes cannot vouch for is walked."""
    members = 10 - _astuple(item).count(UNSET) if from_json else 0

    action = item.action
    info = CATALOGUE.get(action)
    if info is None or type(action) is not str:
        info = _custom(action)

    event_id = item.id
    if event_id is UNSET:
        event_id = None
    elif event_id is not None:
        if not (type(event_id) is str and event_id.isascii() and event_id.isprintable()):
            _check_text(event_id)
        if "/" in event_id or event_id in ev.RESERVED_IDS:
            raise Slow  # unreachable by GET /v1/events/{id}: check_reachable_id says why

    actor = item.actor
    if actor is UNSET or actor is None:
        actor = None
    else:
        key = _astuple(actor)
        hit = _actors.get(key)
        if hit is None:
            hit = _actor(actor, 4 - key.count(UNSET))
            if len(_actors) >= _CACHE_LIMIT:
                _actors.clear()
            _actors[key] = hit
        actor, n = hit
        members += n

    target = item.target
    if target is UNSET or target is None:
        target = None
    else:
        members += 2
        t_key = (target.type, target.id)
        found = _targets.get(t_key)
        if found is None:
            _check_text(t_key[0])
            _check_text(t_key[1])
            found = _new(ev.Target)
            _set(found, "__dict__", {"type": t_key[0], "id": t_key[1]})
            if len(_targets) >= _CACHE_LIMIT:
                _targets.clear()
            _targets[t_key] = found
        target = found

    context = item.context
    if context is UNSET or context is None:
        context = {}
    elif context:
        ip = context.get("ip")
        if ip is not None:
            if type(ip) is not str:
                raise Slow
            try:
                context["ip"] = ev._normal_ip(ip)
            except ValueError:
                raise Slow from None
        value = context.get("user_agent")
        if value is not None and type(value) is not str:
            raise Slow
        value = context.get("request_id")
        if value is not None and type(value) is not str:
            raise Slow

    changes = item.changes
    nested = False
    change_dicts: list[dict[str, Any]] = []
    if changes is UNSET or changes is None or not changes:
        changes = ()
    else:
        built = []
        for c in changes:
            name = c.field
            if not (type(name) is str and name.isascii() and name.isprintable()):
                _check_text(name)
            before = c.before
            if before is UNSET:
                before = None
                members -= 1
            after = c.after
            if after is UNSET:
                after = None
                members -= 1
            change = _new(ev.Change)
            _set(change, "__dict__", {"field": name, "before": before, "after": after})
            built.append(change)
            change_dicts.append({"field": name, "from": before, "to": after})
            if type(before) in _CONTAINERS or type(after) in _CONTAINERS:
                nested = True
        members += 3 * len(built)
        changes = tuple(built)

    outcome = item.outcome
    if outcome is UNSET or outcome is None:
        outcome = "success"

    occurred = item.occurred_at
    occurred_text = None
    if occurred is UNSET or occurred is None:
        occurred = None
    else:
        occurred, occurred_text = _timestamp(occurred)

    metadata = item.metadata
    if metadata is UNSET or metadata is None:
        metadata = {}

    severity = item.severity
    if severity is UNSET or severity is None:
        severity = info.severity
    else:
        try:
            severity = ev._severity(severity, info, "severity")
        except InvalidEvent:
            raise Slow from None

    payload = {
        "changes": change_dicts,
        "context": context,
        "metadata": metadata,
        "occurred_at": occurred_text,
    }
    if not from_json and general:
        data = _exact_payload(payload, context, metadata, change_dicts, None)
    else:
        try:
            data = canonical_json(payload) if general else _encode(payload)
        except (InvalidInput, UnicodeEncodeError, TypeError):
            # A lone surrogate, or a str subclass (Python callers:
            # msgspec.convert passes them through, the C encoder refuses).
            raise Slow from None
        if not from_json and (
            # msgspec.convert also passes str subclasses through as keys,
            # which the encoder writes as plain strings, so keys are looked
            # at: at the top here; nested ones (a "{" beyond the payload's
            # own three and one per change) and non-ASCII ones by a walk.
            not _STR_ONLY.issuperset(map(type, context))
            or not _STR_ONLY.issuperset(map(type, metadata))
            or not data.isascii()
            or data.count(b"{") != 3 + len(change_dicts)
        ):
            data = _exact_payload(payload, context, metadata, change_dicts, data)
    if len(data) > MAX_PAYLOAD_BYTES:
        raise Slow

    if from_json:
        # Members of the objects inside the payload: exact when no nested
        # object can hide inside (the only "{" are the payload's own).
        if not nested and data.count(b"{") == 3 + len(change_dicts):
            members += len(context) + len(metadata)
        else:
            members += _count_members(context) + _count_members(metadata)
            for c in change_dicts:
                members += _count_members(c["from"]) + _count_members(c["to"])

    event = _new(Event)
    _set(
        event,
        "__dict__",
        {
            "id": event_id,
            "action": action,
            "info": info,
            "severity": severity,
            "actor": actor,
            "target": target,
            "context": ev.read_only(context),
            "changes": changes,
            "outcome": outcome,
            "occurred_at": occurred,
            "metadata": ev.read_only(metadata),
            "_payload": data,
        },
    )
    return event, members


def _exact_payload(
    payload: dict[str, Any],
    context: dict[str, Any],
    metadata: dict[str, Any],
    change_dicts: list[dict[str, Any]],
    plain: bytes | None,
) -> bytes:
    """The payload bytes of a converted (not JSON-decoded) event after a
    walk of every value: Slow if any is not an exact built-in type, the
    general encoder's bytes if floats or non-ASCII keys need it, else
    `plain` (the C encoder's bytes, when already made)."""
    kind = min(_kind(context), _kind(metadata), _kind(change_dicts))
    if kind == _NOT_EXACT:
        raise Slow
    try:
        if kind == _GENERAL:
            return canonical_json(payload)
        return plain if plain is not None else _encode(payload)
    except (InvalidInput, UnicodeEncodeError, TypeError):
        raise Slow from None  # a lone surrogate (Python callers)


def _custom(action: Any) -> ActionInfo:
    info = _CUSTOM_ACTIONS.get(action)
    if info is None or type(action) is not str:
        if type(action) is not str:
            raise Slow
        try:
            info = classify(action)
        except InvalidEvent:
            raise Slow from None
        if len(_CUSTOM_ACTIONS) >= 10_000:
            _CUSTOM_ACTIONS.clear()
        _CUSTOM_ACTIONS[action] = info
    return info


def _check_text(value: Any) -> None:
    """The reference's `_text` rules beyond length, which msgspec checked."""
    if type(value) is not str:
        raise Slow  # a subclass (Python callers): the reference decides
    if value.isascii():
        if value.isprintable():
            return
        raise Slow
    if ev._BAD_CHAR.search(value) is not None:
        raise Slow


def _actor(actor: Any, members: int) -> tuple[ev.Actor, int]:
    actor_id = actor.id
    _check_text(actor_id)
    actor_type = actor.type
    if actor_type is UNSET or actor_type is None:
        actor_type = ev.DEFAULT_ACTOR_TYPE
    elif type(actor_type) is not str or ev._ACTOR_TYPE.fullmatch(actor_type) is None:
        raise Slow
    name = actor.name
    if name is UNSET or name == "":
        name = None
    elif name is not None:
        _check_text(name)
    email = actor.email
    if email is UNSET or email == "":
        email = None
    elif email is not None:
        _check_text(email)
    made = _new(ev.Actor)
    _set(made, "__dict__", {"id": actor_id, "type": actor_type, "name": name, "email": email})
    return made, members


def _timestamp(text: Any) -> tuple[int, str]:
    """(µs, canonical text) of an RFC 3339 timestamp, as parse_ts and
    format_ts give them. The common UTC form ("...THH:MM:SS[.fff]Z") is read
    here, the date part through a cache; parse_ts does everything else."""
    if (
        type(text) is str
        and len(text) >= 20
        and text[-1] == "Z"
        and text[10] == "T"
        and text[13] == ":"
        and text[16] == ":"
        and text.isascii()
    ):
        days = _days.get(text[:10])
        if days is None:
            days = _day_of(text[:10])
        clock = text[11:13] + text[14:16] + text[17:19]
        if clock.isdigit():
            hours, minutes, seconds = int(clock[:2]), int(clock[2:4]), int(clock[4:])
            if hours < 24 and minutes < 60 and seconds < 60:
                us = (days * 86_400 + hours * 3600 + minutes * 60 + seconds) * 1_000_000
                if len(text) == 20:
                    return us, f"{text[:19]}.000000Z"
                fraction = text[20:-1]
                if text[19] == "." and 1 <= len(fraction) <= 9 and fraction.isdigit():
                    frac = int(fraction[:6].ljust(6, "0"))
                    return us + frac, f"{text[:19]}.{frac:06d}Z"
    try:
        us = parse_ts(text)
    except InvalidInput:
        raise Slow from None
    return us, format_ts(us)


def _day_of(day: str) -> int:
    """Days since the epoch of "YYYY-MM-DD", checked by parse_ts; cached."""
    try:
        days = parse_ts(day + "T00:00:00Z") // 86_400_000_000
    except InvalidInput:
        raise Slow from None
    if len(_days) >= _CACHE_LIMIT:
        _days.clear()
    _days[day] = days
    return days


_NOT_EXACT, _GENERAL, _PLAIN_JSON = 0, 1, 2


def _kind(value: Any) -> int:
    """_PLAIN_JSON: exact built-in JSON types, no floats, ASCII keys (the C
    encoder's bytes are RFC 8785); _GENERAL: floats or non-ASCII keys too
    (the general encoder is needed); _NOT_EXACT: a subclass or a non-string
    key somewhere (the reference decides)."""
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return _PLAIN_JSON
    if t is float:
        return _GENERAL
    if t is dict:
        kind = _PLAIN_JSON
        for key, item in value.items():
            if type(key) is not str:
                return _NOT_EXACT
            if not key.isascii():
                kind = _GENERAL
            t = type(item)
            if t is str or t is int or t is bool or item is None:
                continue
            inner = _kind(item)
            if inner < kind:
                if inner == _NOT_EXACT:
                    return inner
                kind = inner
        return kind
    if t is list:
        kind = _PLAIN_JSON
        for item in value:
            t = type(item)
            if t is str or t is int or t is bool or item is None:
                continue
            inner = _kind(item)
            if inner < kind:
                if inner == _NOT_EXACT:
                    return inner
                kind = inner
        return kind
    return _NOT_EXACT


def _count_members(value: Any) -> int:
    if type(value) is dict:
        return len(value) + sum(_count_members(v) for v in value.values())
    if type(value) is list:
        return sum(_count_members(v) for v in value)
    return 0


def _unique_ids(events: list[Event]) -> None:
    ids = [e.id for e in events if e.id is not None]
    if len(set(ids)) != len(ids):
        raise Slow
