"""The events-per-day chart: bar geometry for a server-rendered SVG.

Only numbers and dates come out of here; the template draws them. Each bar
links to the same query narrowed to its day, so the chart is navigable
without JavaScript.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

WIDTH = 1000
HEIGHT = 150
LEFT = 48  # room for the count labels
RIGHT = 24  # room for half of the last date label
BOTTOM = 22  # room for the date labels
TOP = 10


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: date
    count: int


@dataclass(frozen=True)
class Tick:
    x: float
    y: float
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    total: int
    baseline: float
    left: int
    right: int

    @property
    def empty(self) -> bool:
        return self.total == 0


def _nice_max(n: int) -> int:
    """The smallest of 1, 2, 5 x 10^k at or above n (at least 1)."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= n:
                return m * step
        step *= 10


def build(counts: list[tuple[date, int]]) -> Chart:
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM
    baseline = float(TOP + plot_h)
    top = _nice_max(max((c for _, c in counts), default=0))
    slot = plot_w / max(1, len(counts))
    gap = min(2.0, slot * 0.2)
    bars = []
    for i, (day, c) in enumerate(counts):
        h = plot_h * c / top
        # A day with a few events among thousands still shows a sliver.
        if c > 0:
            h = max(h, 1.5)
        bars.append(
            Bar(
                round(LEFT + i * slot + gap / 2, 2),
                round(baseline - h, 2),
                round(slot - gap, 2),
                round(h, 2),
                day,
                c,
            )
        )
    every = max(1, len(counts) // 6)
    x_ticks = tuple(
        Tick(round(LEFT + (i + 0.5) * slot, 2), HEIGHT - 6, day.strftime("%b %d"))
        for i, (day, _) in enumerate(counts)
        if (len(counts) - 1 - i) % every == 0
    )
    fractions = (0.0, 0.5, 1.0) if top >= 2 else (0.0, 1.0)
    y_ticks = tuple(
        Tick(LEFT - 6, round(baseline - plot_h * f, 2), f"{int(top * f):,}") for f in fractions
    )
    return Chart(
        WIDTH,
        HEIGHT,
        tuple(bars),
        x_ticks,
        y_ticks,
        sum(c for _, c in counts),
        baseline,
        LEFT,
        RIGHT,
    )
