"""Filter chips: one-click query terms above the event stream.

A preset chip toggles its term in the query (adds it, or removes it when
present); each term of the current query is also shown as a chip that
removes it. Terms are compared in canonical form (kimonaudit.core.query),
so `is:Security` and `is:security` are the same chip.
"""

from __future__ import annotations

from dataclasses import dataclass

from kimonaudit.core.catalogue import LOG_ACCESS_ACTIONS
from kimonaudit.core.query import Query, parse, to_string
from kimonaudit.errors import InvalidQuery

SECURITY_TERM = "is:security"
PRESETS: tuple[tuple[str, str], ...] = (
    ("Security only", SECURITY_TERM),
    ("Failures", "is:failure"),
    ("Severity high+", "severity:>=high"),
    ("Role changes", "action:role.*"),
    ("Permission & SSO", "action:permission.*,sso.*"),
    ("Sign-ins", "action:auth.login.*"),
    ("Ticket views", "action:ticket.viewed"),
    ("Last 24 hours", "created:>-24h"),
    ("Last 7 days", "created:>-7d"),
)


@dataclass(frozen=True)
class Chip:
    label: str
    active: bool
    query: str  # the query after clicking


def _terms(q: str) -> list[str] | None:
    try:
        parsed = parse(q)
    except InvalidQuery:
        return None
    return [to_string(Query((t,))) for t in parsed.terms]


def _canonical(term: str) -> str:
    return to_string(parse(term))


def toggled(q: str, term: str) -> str:
    """`q` with `term` removed if present, appended if not."""
    terms = _terms(q)
    if terms is None:
        return f"{q.strip()} {term}".strip()
    c = _canonical(term)
    if c in terms:
        return " ".join(t for t in terms if t != c)
    return " ".join([*terms, c])


def presets(q: str) -> list[Chip]:
    terms = _terms(q) or []
    return [Chip(label, _canonical(term) in terms, toggled(q, term)) for label, term in PRESETS]


def current(q: str) -> list[Chip]:
    """The current query's terms, each with the query without it."""
    terms = _terms(q) or []
    return [
        Chip(t, True, " ".join(u for j, u in enumerate(terms) if j != i))
        for i, t in enumerate(terms)
    ]


def security_only(q: str) -> bool:
    return _canonical(SECURITY_TERM) in (_terms(q) or [])


# Reading the log (catalogue.LOG_ACCESS_ACTIONS) is hidden from the stream
# unless the "Include log access" toggle is on or the query names audit_log:
# otherwise a viewer's own page views would fill the first screen.
HIDE_LOG_ACCESS = "-action:" + ",".join(sorted(LOG_ACCESS_ACTIONS))


def names_log_access(q: str) -> bool:
    """Whether the query asks about the log's own use (then it is shown)."""
    return "audit_log" in q.lower()


def stream_query(q: str, include_access: bool) -> str:
    """The query the stream runs: `q`, hiding log access unless included."""
    if include_access or names_log_access(q):
        return q
    return f"{q} {HIDE_LOG_ACCESS}".strip()
