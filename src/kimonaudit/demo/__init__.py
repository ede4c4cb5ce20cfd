"""`kimonaudit demo`: months of realistic helpdesk history, written through
the public append path with a simulated clock.

    from kimonaudit.demo import SimClock, simulate
    clock = SimClock(datetime.now(UTC))
    with kimonaudit.open(url, clock=clock) as log:
        summary = simulate(log, clock, events=200_000)

Modules: `world` (tenants, people, addresses), `rhythm` (when), `helpdesk`
(a tenant's state and timeline), `work` and `security` (what happens),
`scripts` (episodes the docs rely on), `run` (batching and the clock).
"""

from __future__ import annotations

from datetime import UTC, datetime

from kimonaudit.demo.clock import SimClock
from kimonaudit.demo.run import (
    DEFAULT_EVENTS,
    DEFAULT_MONTHS,
    DEFAULT_SEED,
    MIN_EVENTS,
    DemoSummary,
    DemoTenant,
    Progress,
    simulate,
)

CONSOLE_URL = "http://127.0.0.1:8080/console/"


def run_demo(
    url: str | None = None,
    *,
    key_file: str | None = None,
    name: str | None = None,
    events: int = DEFAULT_EVENTS,
    months: int = DEFAULT_MONTHS,
    seed: int = DEFAULT_SEED,
    force: bool = False,
    progress: Progress | None = None,
) -> DemoSummary:
    """Open the log at `url` with a simulated clock and fill it."""
    import kimonaudit

    clock = SimClock(datetime.now(UTC))
    with kimonaudit.open(url, key_file=key_file, name=name, clock=clock) as log:
        return simulate(
            log, clock, events=events, months=months, seed=seed, force=force, progress=progress
        )


__all__ = [
    "CONSOLE_URL",
    "DEFAULT_EVENTS",
    "DEFAULT_MONTHS",
    "DEFAULT_SEED",
    "MIN_EVENTS",
    "DemoSummary",
    "DemoTenant",
    "SimClock",
    "run_demo",
    "simulate",
]
