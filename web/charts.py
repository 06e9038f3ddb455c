"""Charts as plain numbers for a server-rendered SVG (templates/chart.html draws them): no chart
library, no script. Pure functions: counts in, rectangles and labels out."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

WIDTH, HEIGHT = 640, 200
LEFT, BOTTOM, TOP = 32, 24, 8
SERIES = ("granted", "refused", "pending")  # stacked bottom to top; CSS classes of the bars


@dataclass
class DayCounts:
    day: date
    granted: int = 0
    refused: int = 0
    pending: int = 0

    @property
    def total(self) -> int:
        return self.granted + self.refused + self.pending


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: str
    title: str


@dataclass
class Chart:
    width: int = WIDTH
    height: int = HEIGHT
    bars: list[Bar] = field(default_factory=list)
    labels: list[tuple[float, str]] = field(default_factory=list)  # (x, text) under the bars
    ticks: list[tuple[float, int]] = field(default_factory=list)  # (y, value) on the left axis
    baseline: float = HEIGHT - BOTTOM
    left: float = LEFT
    total: int = 0


def bar_chart(days: list[DayCounts]) -> Chart:
    """A stacked bar per day; the height scale fits the busiest day."""
    chart = Chart()
    if not days:
        return chart
    top = max(max(d.total for d in days), 1)
    plot_h = HEIGHT - BOTTOM - TOP
    slot = (WIDTH - LEFT) / len(days)
    for i, d in enumerate(days):
        x = LEFT + i * slot + slot * 0.15
        y = HEIGHT - BOTTOM
        for series in SERIES:
            n = getattr(d, series)
            if n:
                h = plot_h * n / top
                y -= h
                chart.bars.append(Bar(round(x, 1), round(y, 1), round(slot * 0.7, 1), round(h, 1), series,
                                      f"{d.day.isoformat()}: {n} {series}"))
        if i % max(1, len(days) // 7) == 0 or i == len(days) - 1:
            chart.labels.append((round(x + slot * 0.35, 1), d.day.strftime("%m-%d")))
    for value in sorted({0, top // 2, top}):
        chart.ticks.append((round(HEIGHT - BOTTOM - plot_h * value / top, 1), value))
    chart.total = sum(d.total for d in days)
    return chart


__all__ = ["SERIES", "Bar", "Chart", "DayCounts", "bar_chart"]
