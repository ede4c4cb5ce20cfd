"""The demo's clock: simulated time that the simulator moves forward.

`kimonaudit.open(..., clock=SimClock(...))` makes the log read its
`recorded_at` from here, so months of history can be written in seconds
through the ordinary append path.
"""

from __future__ import annotations

from datetime import datetime

from kimonaudit.core.timefmt import from_us, to_us


class SimClock:
    """A callable returning aware UTC datetimes; `set_us` moves it."""

    def __init__(self, start: datetime) -> None:
        self.now_us = to_us(start)

    def __call__(self) -> datetime:
        return from_us(self.now_us)

    def set_us(self, us: int) -> None:
        self.now_us = us
