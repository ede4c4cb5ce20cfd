"""When things happen: a weekly rhythm of working hours, quiet nights and
weekends, day-to-day noise and slow growth, turned into an exact number of
events per hour.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

from kimonaudit.core.timefmt import from_us

US_PER_HOUR = 3_600_000_000
US_PER_DAY = 24 * US_PER_HOUR

# Weekday activity by local hour: a morning ramp, a lunch dip, a tail into
# the evening, almost nothing at night.
WEEKDAY = (
    0.02,
    0.015,
    0.015,
    0.015,
    0.02,
    0.04,
    0.10,
    0.30,
    0.80,
    1.00,
    1.00,
    0.95,
    0.70,
    0.90,
    1.00,
    0.95,
    0.85,
    0.55,
    0.28,
    0.15,
    0.11,
    0.08,
    0.05,
    0.03,
)
# Weekends and public holidays: a skeleton crew in the daytime.
WEEKEND = (
    0.015,
    0.01,
    0.01,
    0.01,
    0.01,
    0.015,
    0.02,
    0.04,
    0.07,
    0.09,
    0.10,
    0.10,
    0.09,
    0.09,
    0.09,
    0.08,
    0.07,
    0.06,
    0.05,
    0.04,
    0.03,
    0.03,
    0.02,
    0.02,
)
HOLIDAYS = {(1, 1), (12, 24), (12, 25), (12, 26), (12, 31)}  # (month, day)
WORKING_THRESHOLD = 0.5  # hours at least this busy count as working hours


@dataclass(frozen=True)
class Hour:
    start_us: int
    count: int  # events that start in this hour
    working: bool


def local_hour(us: int, offset_hours: int) -> tuple[int, int]:
    """(weekday 0=Monday, hour) in a fixed-offset local time."""
    local = us // US_PER_HOUR + offset_hours
    days, hour = divmod(local, 24)
    return (days + 3) % 7, hour  # 1970-01-01 was a Thursday


def _is_holiday(us: int, offset_hours: int) -> bool:
    d = from_us(us + offset_hours * US_PER_HOUR)
    return (d.month, d.day) in HOLIDAYS


def hours(
    rnd: random.Random, n: int, start_us: int, end_us: int, offset_hours: int
) -> Iterator[Hour]:
    """The hours from `start_us` to `end_us` with how many of `n` events
    each starts; the counts add up to exactly `n`.

    Weights get per-day and per-hour noise and a gentle upward trend (the
    helpdesk grows); counts are the weights rounded systematically, so the
    total is exact without sampling millions of random numbers.
    """
    first = start_us - start_us % US_PER_HOUR
    starts = list(range(first, end_us, US_PER_HOUR))
    span = max(1, len(starts) - 1)
    weights: list[float] = []
    working: list[bool] = []
    day_factor = 1.0
    holiday = False
    for i, h in enumerate(starts):
        weekday, hour = local_hour(h, offset_hours)
        if i == 0 or hour == 0:
            day_factor = rnd.lognormvariate(0, 0.18)
            holiday = _is_holiday(h, offset_hours)
        table = WEEKEND if weekday >= 5 or holiday else WEEKDAY
        w = table[hour]
        working.append(w >= WORKING_THRESHOLD)
        trend = 0.8 + 0.4 * i / span
        weights.append(w * day_factor * trend * rnd.lognormvariate(0, 0.25))
    # Partial first and last hours get their share only.
    weights[0] *= (first + US_PER_HOUR - start_us) / US_PER_HOUR
    weights[-1] *= min(1.0, (end_us - starts[-1]) / US_PER_HOUR)
    total = sum(weights) or 1.0
    acc = 0.0
    done = 0
    last = len(starts) - 1
    for i, (h, w, work) in enumerate(zip(starts, weights, working, strict=True)):
        acc += w
        upto = n if i == last else min(n, round(n * acc / total))
        yield Hour(h, upto - done, work)
        done = upto
