"""The newest matches of a search driver of several terms (`is:failure`, an
IP range, an action glob), found from each term's newest postings: both
stores' first try for such a page, before walking the ledger or sorting
every candidate.

Exact because every posting newer than the cutoff (the newest point at
which a term's list was cut short) is among those read: a term cut at its
k-th posting holds no unread one above it. So once the candidates above
the cutoff give `limit` matches, no older entry can be among the newest
`limit`; if no list was cut, they are all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

R = TypeVar("R")

#: Per term at least MERGE_MIN postings, and MERGE_SHARE times the page
#: size over the terms; at most MERGE_TERMS terms (the stores' defaults).
MERGE_TERMS = 400
MERGE_MIN = 16
MERGE_SHARE = 4


def newest_matches(
    ids: Sequence[int],
    lo: int,
    limit: int,
    read_newest: Callable[[list[int], int], Iterable[tuple[int, int]]],
    lookup: Callable[[list[int]], list[R]],
    min_per_term: int = MERGE_MIN,
    share: int = MERGE_SHARE,
) -> list[R] | None:
    """The newest `limit` matches at or above seq (or rid) `lo`, or None
    when the terms' newest postings cannot decide (the caller walks or
    sorts instead). `read_newest(ids, k)` gives (term, seq) for each term's
    newest k postings in range; `lookup(seqs)` the matching rows of those
    seqs, newest first."""
    terms = list(dict.fromkeys(ids))
    k = max(min_per_term, -(-share * limit // len(terms)))
    for _ in range(2):
        newest: dict[int, list[int]] = {t: [] for t in terms}
        for term, seq in read_newest(terms, k):
            newest[term].append(seq)
        cut = max((min(s) for s in newest.values() if len(s) == k), default=lo - 1)
        found = sorted({s for seqs in newest.values() for s in seqs if s > cut}, reverse=True)
        rows: list[R] = []
        # In steps of `limit`, newest first: a page needs only the ledger
        # rows of its own matches, and those of a few rejected ones.
        for i in range(0, len(found), limit):
            rows += lookup(found[i : i + limit])
            if len(rows) >= limit:
                return rows[:limit]
        if cut < lo:
            return rows  # nothing was cut: these are all the matches
        k *= 8
    return None
