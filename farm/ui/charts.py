"""Server-drawn charts: stacked bars per day as plain geometry a template turns into inline SVG.

No JavaScript library and nothing for the CSP to allow: the browser gets
rectangles. Each chart also carries its numbers, shown as a table beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

PALETTE = ("#1f5f99", "#b5561c", "#2e7d32", "#7b3fa0", "#8a6d00", "#0e7c86", "#a02c4b", "#4e5b6e")
OTHER = "other"


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass
class Chart:
    title: str
    unit: str
    width: int
    height: int
    days: list[date]
    series: dict[str, list[float]]
    bars: list[Bar] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)
    max_total: float = 0.0
    ticks: list[tuple[float, str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.max_total == 0


def top_series(series: dict[str, list[float]], keep: int = len(PALETTE) - 1) -> dict[str, list[float]]:
    """The ``keep`` largest series by total; the rest summed as 'other', so colours stay distinguishable."""
    ranked = sorted(series, key=lambda k: -sum(series[k]))
    kept = {k: series[k] for k in ranked[:keep]}
    rest = ranked[keep:]
    if rest:
        kept[OTHER] = [sum(series[k][i] for k in rest) for i in range(len(next(iter(series.values()))))]
    return kept


def stacked(title: str, unit: str, days: list[date], series: dict[str, list[float]], width: int = 640, height: int = 220) -> Chart:
    series = top_series(series) if series else {}
    chart = Chart(title, unit, width, height, days, series)
    totals = [sum(values[i] for values in series.values()) for i in range(len(days))]
    chart.max_total = max(totals, default=0.0)
    if not days:
        return chart
    left, bottom, top = 48, 20, 8
    plot_h = height - bottom - top
    slot = (width - left) / len(days)
    scale = plot_h / chart.max_total if chart.max_total else 0.0
    chart.legend = [(label, PALETTE[i % len(PALETTE)]) for i, label in enumerate(series)]
    for d_i, day in enumerate(days):
        y = float(top + plot_h)
        for (label, color), values in zip(chart.legend, series.values()):
            h = values[d_i] * scale
            if h <= 0:
                continue
            y -= h
            chart.bars.append(Bar(left + d_i * slot + slot * 0.15, y, slot * 0.7, h, color, f"{day.isoformat()} {label}: {_fmt(values[d_i])} {unit}"))
    chart.ticks = [(top + plot_h - f * plot_h, _fmt(chart.max_total * f)) for f in (0.0, 0.5, 1.0)]
    return chart


def _fmt(value: float) -> str:
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:g}" if value == int(value) else f"{value:.1f}"
