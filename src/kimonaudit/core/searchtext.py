"""The free-text document of an entry, and the word splitting both sides share.

The stores index ``search_text`` with different engines (SQLite FTS5's
unicode61 tokenizer, PostgreSQL's ``simple`` text-search configuration), and
the two split and fold words differently (``ticket.viewed``, ``ann@acme.test``,
``Müller``). So the words are made here, once, for the document and for the
query alike: case-folded, accents removed, split on anything that is not a
letter or a digit. Both engines then see plain words and agree on what
matches.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence

# Runs of letters and digits: \w without the underscore, as unicode61 does.
_WORD = re.compile(r"[^\W_]+")

# Longest document kept. PostgreSQL refuses a tsvector over 1 MB (the append
# would fail) and stops counting word positions at 16,383, so an enormous
# payload is cut rather than allowed to break ingestion.
MAX_SEARCH_TEXT = 32_768


# ASCII text, byte by byte: letters to lower case, digits kept, everything
# else a space.
_ASCII_WORD_BYTES = (
    bytes((c | 0x20 if chr(c).isupper() else c) if chr(c).isalnum() else 0x20 for c in range(128))
    + b" " * 128
)


def search_words(text: str) -> list[str]:
    """The searchable words of `text`: folded case, no accents, no punctuation."""
    if text.isascii():
        # The same words as the expression below, by a byte table (most
        # documents are ASCII and the indexer makes one per entry).
        return text.encode("ascii").translate(_ASCII_WORD_BYTES).decode("ascii").split()
    decomposed = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _WORD.findall(text.casefold())


def _flatten(values: Iterable[object], out: list[str]) -> None:
    # An explicit stack, not recursion: payloads come from outside and may nest deeply.
    stack = list(values)
    stack.reverse()
    while stack:
        value = stack.pop()
        if value is None:
            continue
        if type(value) is int:  # before the isinstance chain: Mapping's check is slow
            out.append(str(value))
        elif isinstance(value, str):
            out.append(value)
        elif isinstance(value, bool):
            out.append("true" if value else "false")
        elif isinstance(value, Mapping):
            stack.extend(reversed(list(value.values())))
        elif isinstance(value, list | tuple):
            stack.extend(reversed(value))
        else:
            out.append(str(value))


def search_text(
    *,
    action: str,
    target_type: str | None,
    target_id: str | None,
    actor_type: str | None,
    outcome: str,
    context: Mapping[str, object],
    changes: Sequence[tuple[str, object, object]],
    metadata: Mapping[str, object],
) -> str:
    """Space-separated words of everything searchable about one entry.

    Values only (the keys of `context` and `metadata` are the same on every
    entry and would match everything); for each change its field name, the
    value before and the value after. The actor's name and email are not
    parameters on purpose: they live in the erasable directory, never in the log.
    """
    parts: list[str] = [action]
    # Most values are plain strings: they skip _flatten's stack (the
    # indexer makes a document per entry, so this loop is hot).
    for value in (target_type, target_id, actor_type, outcome, *context.values()):
        if type(value) is str:
            parts.append(value)
        elif value is not None:
            _flatten((value,), parts)
    for field, before, after in changes:
        _flatten((field, before, after), parts)
    for value in metadata.values():
        if type(value) is str:
            parts.append(value)
        elif value is not None:
            _flatten((value,), parts)
    # One split of the values joined by spaces gives the words of each value
    # in turn (a space separates words; NFKD decomposes character by
    # character and a space blocks the reordering of combining marks), at
    # one regular-expression pass per entry instead of one per value.
    text = " ".join(search_words(" ".join(parts)))
    if len(text) > MAX_SEARCH_TEXT:
        cut = text.rfind(" ", 0, MAX_SEARCH_TEXT + 1)
        text = text[: cut if cut > 0 else MAX_SEARCH_TEXT]
    return text
