"""Queries as the access log (`audit_log.searched`, `.viewed`, `.exported`)
records them: with every actor id replaced by the actor's keyed hash.

A query such as ``actor:agent_42 action:ticket.viewed`` names a person. Kept
as typed, it would outlive that person's erasure: the free-text search
``agent_42`` would still find the id inside earlier queries. Recorded as
``actor_hash:<64 hex> action:ticket.viewed`` it says only what the log
itself says (entries carry the same hash), and once the person is erased
nobody can tell whose hash it was.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from kimonaudit.core.query import Filter, Query, parse, to_string
from kimonaudit.errors import InvalidInput

HASH_KEY = "actor_hash"
# Recorded for an actor id the directory does not hold (never seen, or erased).
UNKNOWN_ACTOR = "unknown"
# For text that does not parse: any actor:<value> (quoted or bare) is dropped.
_ACTOR_TERM = re.compile(r'(?i)(-?)actor:("(?:[^"\\]|\\.)*"|\S+)')


def pseudonymise(query: str, hash_of: Callable[[str], str]) -> str:
    """`query` with each `actor:` value replaced by ``hash_of(value)``
    under the key ``actor_hash``; every other term unchanged."""
    if "actor" not in query.lower():
        return query
    try:
        parsed = parse(query)
    except InvalidInput:
        return _ACTOR_TERM.sub(lambda m: f"{m.group(1)}{HASH_KEY}:[removed]", query)
    terms = []
    for term in parsed.terms:
        if isinstance(term, Filter) and term.key == "actor":
            hashed = tuple(hash_of(str(v)) for v in term.values)
            term = Filter(HASH_KEY, term.op, hashed, term.negated)
        terms.append(term)
    return to_string(Query(tuple(terms)))
