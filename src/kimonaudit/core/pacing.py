"""When the search indexer writes a tenant's next batch (issue 7).

A batch has a fixed cost (its transaction, the pages of every index it
touches, on SQLite a full-text segment) beside its cost per entry. An
indexer that writes whatever has arrived since its last look, every 10 ms,
spends that fixed cost on a few hundred entries under a steady load:
measured on SQLite, about 40 us of CPU per entry in batches of 1,000
against 21 us in batches of 10,000 (docs/scaling.md). So the indexer lets
entries gather: a tenant's batch is due once `min_batch` entries wait, or
once the oldest of them may have waited `max_delay` seconds, whichever
comes first. The delay bounds what it adds to the index lag; searches never
miss the waiting entries (they match the un-indexed tail in the ledger).

`hurry` makes every tenant due until the indexer has caught up: a caller
waiting for the index (a test, `reindex`) should not wait for a batch to
fill.

Pure bookkeeping on times the caller passes in; no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

MIN_BATCH = 10_000
MAX_DELAY = 0.2  # seconds


class Pacer:
    def __init__(self, min_batch: int | None = None, max_delay: float | None = None) -> None:
        # The module's values as they are now, not when this was defined:
        # a parent hands its own to the child indexer (and tests change them).
        min_batch = MIN_BATCH if min_batch is None else min_batch
        max_delay = MAX_DELAY if max_delay is None else max_delay
        if min_batch < 1 or max_delay < 0:
            raise ValueError("min_batch must be >= 1 and max_delay >= 0")
        self.min_batch = min_batch
        self.max_delay = max_delay
        # Per tenant behind: a time at or before which every entry still
        # waiting was committed (when it was first seen behind, or when the
        # look that a finished batch read was taken).
        self._since: dict[Hashable, float] = {}
        self._hurry = False

    @property
    def settings(self) -> tuple[int, float]:
        return self.min_batch, self.max_delay

    def hurry(self) -> None:
        self._hurry = True

    def look(self, behind: Iterable[Hashable], now: float) -> None:
        """Start of a look at the ledger taken at `now`: `behind` are the
        tenants with entries to index. A tenant no longer behind is
        forgotten; one newly behind starts waiting now."""
        behind = set(behind)
        for tenant in [t for t in self._since if t not in behind]:
            del self._since[tenant]
        for tenant in behind:
            self._since.setdefault(tenant, now)
        if not behind:
            self._hurry = False

    def due(self, tenant: Hashable, waiting: int, now: float) -> bool:
        """Whether to index `tenant`, with `waiting` entries behind, now."""
        if waiting <= 0:
            return False
        if self._hurry or waiting >= self.min_batch:
            return True
        return now - self._since.get(tenant, now) >= self.max_delay

    def indexed(self, tenant: Hashable, caught_up: bool, looked_at: float) -> None:
        """A batch of `tenant` committed. `caught_up`: it reached the ledger
        size of the look taken at `looked_at`, so whatever waits now was
        committed after that look. Otherwise older entries still wait and
        the tenant keeps its time."""
        if caught_up:
            self._since[tenant] = looked_at

    def wait_hint(self, now: float, idle: float) -> float:
        """Seconds until a waiting tenant falls due by time (at most `idle`)."""
        if not self._since:
            return idle
        soonest = min(self._since.values()) + self.max_delay
        return max(0.0, min(idle, soonest - now))
