"""The search projection of an entry: what the indexer derives from a ledger
row so search can find it without scanning the ledger.

Two things per entry, both pure functions of the stored row (header columns
plus payload), so the projection can be rebuilt from the ledger at any time
and checked against it (`verify --index`):

- postings: (field, value) terms for the filters that select few entries
  (an action, an actor, a target, a failure, a security event, an IP).
  Filters on common, low-cardinality values (category, actor type, a
  success outcome) are answered by walking the ledger newest first, which
  finds common matches fastest, so they get no posting;
- the free-text document (kimonaudit.core.searchtext).

A row whose payload was redacted keeps its header terms and loses its text.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, TypeVar

import msgspec

from kimonaudit.core.records import EntryRow
from kimonaudit.core.searchtext import search_text

_decode_json = msgspec.json.decode

# Field numbers stored in the terms dictionary. Never renumber: they are on disk.
F_ACTION = 1
F_ACTOR = 2
F_TARGET_ID = 3
F_FAILURE = 4  # value: the outcome, for outcomes other than success
F_SECURITY = 5  # value: "1"
F_SEVERITY = 6  # value: the severity number, for low and above
F_IP = 7  # value: the 16-byte address as 32 lowercase hex digits
F_TARGET_TYPE = 8

FIELD_NAMES: Mapping[int, str] = {
    F_ACTION: "action",
    F_ACTOR: "actor",
    F_TARGET_ID: "target_id",
    F_FAILURE: "outcome",
    F_SECURITY: "security",
    F_SEVERITY: "severity",
    F_IP: "ip",
    F_TARGET_TYPE: "target_type",
}

Term = tuple[int, str]


class ProjectionRow(NamedTuple):
    """The columns of a ledger row the projection is made of: what an
    indexer reads (fewer columns than an EntryRow, and no tenant id)."""

    seq: int
    recorded_at: int
    action: str
    actor_hash: str | None
    actor_type: str | None
    target_type: str | None
    target_id: str | None
    outcome: str
    security: bool | int  # SQLite stores 0/1
    severity: int
    ip: bytes | None
    payload: bytes | None


#: ProjectionRow's columns, as named in both stores' ledgers.
PROJECTION_COLUMNS = ProjectionRow._fields

Indexable = EntryRow | ProjectionRow
P = TypeVar("P")


def entry_terms(row: Indexable) -> list[Term]:
    """The posting terms of one entry, in a fixed order."""
    terms: list[Term] = [(F_ACTION, row.action)]
    if row.actor_hash is not None:
        terms.append((F_ACTOR, row.actor_hash))
    if row.target_id is not None:
        terms.append((F_TARGET_ID, row.target_id))
    if row.target_type is not None:
        terms.append((F_TARGET_TYPE, row.target_type))
    if row.outcome != "success":
        terms.append((F_FAILURE, row.outcome))
    if row.security:
        terms.append((F_SECURITY, "1"))
    if row.severity > 0:
        terms.append((F_SEVERITY, str(row.severity)))
    if row.ip is not None:
        terms.append((F_IP, row.ip.hex()))
    return terms


def postings_by_term(
    rows: Iterable[Indexable], posting: Callable[[Indexable], P]
) -> dict[Term, list[P]]:
    """Each term of `rows` with the postings (`posting(row)`) of the rows
    holding it, in the rows' order: seq order in, sorted runs out, so an
    indexer sorts terms only, never postings."""
    groups: dict[Term, list[P]] = {}
    for row in rows:
        p = posting(row)
        for term in entry_terms(row):
            run = groups.get(term)
            if run is None:
                groups[term] = [p]
            else:
                run.append(p)
    return groups


#: `project` in C (the optional extension); tests switch it off to compare.
NATIVE_PROJECT = True
_project_in_c: Callable[..., tuple[dict[Term, list[Any]], list[str]] | None] | None
try:
    from kimonaudit._native import project as _project_in_c
except ImportError:
    _project_in_c = None


def _text_of_tuple(row: tuple[Any, ...]) -> str:
    return entry_text(ProjectionRow._make(row))


def project(rows: list[tuple[Any, ...]]) -> tuple[dict[Term, list[Any]], list[str]]:
    """The postings and documents of an indexer batch: rows in
    ProjectionRow's column order, whose first column is what the postings
    hold (a seq, or the SQLite store's rid). The same as
    ``postings_by_term(rows, row[0])`` and each row's `entry_text`, in one
    call into the extension when it is there."""
    if _project_in_c is not None and NATIVE_PROJECT:
        done = _project_in_c(rows, _decode_json, _text_of_tuple)
        if done is not None:
            return done
    made = [row if type(row) is ProjectionRow else ProjectionRow._make(row) for row in rows]
    return postings_by_term(made, lambda row: row[0]), [entry_text(row) for row in made]


def payload_dict(payload: bytes | None) -> dict[str, Any] | None:
    """The stored payload decoded, or None once redacted."""
    if payload is None:
        return None
    try:
        value = _decode_json(payload)  # a few times faster than json.loads
    except msgspec.DecodeError:
        value = json.loads(payload)  # not JSON (a tampered row): json's error, as always
    return value if isinstance(value, dict) else None


def entry_text(row: Indexable) -> str:
    """The free-text document of one entry, as the search index holds it."""
    payload = payload_dict(row.payload)
    if payload is None:
        context: Mapping[str, object] = {}
        metadata: Mapping[str, object] = {}
        changes: list[tuple[str, object, object]] = []
    else:
        context = payload.get("context") or {}
        metadata = payload.get("metadata") or {}
        changes = [
            (str(c.get("field")), c.get("from"), c.get("to"))
            for c in payload.get("changes") or ()
            if type(c) is dict or isinstance(c, Mapping)  # dict first: the ABC check is slow
        ]
    return search_text(
        action=row.action,
        target_type=row.target_type,
        target_id=row.target_id,
        actor_type=row.actor_type,
        outcome=row.outcome,
        context=context,
        changes=changes,
        metadata=metadata,
    )


Phrase = tuple[tuple[str, ...], bool]  # (words, negated), as querysql.text_phrases gives them


def _phrase_in(words: list[str], phrase: tuple[str, ...]) -> bool:
    n, first = len(phrase), phrase[0]
    return any(w == first and tuple(words[i : i + n]) == phrase for i, w in enumerate(words))


def text_matches(texts: tuple[Phrase, ...], row: EntryRow) -> bool:
    """Whether `row`'s document satisfies the free-text phrases, as the
    full-text indexes would (FTS5 phrases, PostgreSQL's phraseto_tsquery):
    how search matches entries the indexer has not reached yet."""
    if not texts:
        return True
    words = entry_text(row).split()
    return all(_phrase_in(words, phrase) != negated for phrase, negated in texts)
