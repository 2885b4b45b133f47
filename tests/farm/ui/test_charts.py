"""Usage charts drawn on the server: bar heights follow the numbers, and the legend stays readable."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from farm.ui.charts import OTHER, PALETTE, stacked, top_series

DAYS = [date(2026, 12, 1) + timedelta(days=i) for i in range(3)]


def test_stacked_bars_scale_to_the_busiest_day() -> None:
    chart = stacked("tokens", "tokens", DAYS, {"a": [10, 0, 30], "b": [10, 5, 0]})
    assert chart.max_total == 30 and not chart.empty
    tallest = max(b.y + b.height for b in chart.bars) - min(b.y for b in chart.bars)
    plot = chart.height - 20 - 8
    assert tallest == pytest.approx(plot)
    day0 = [b for b in chart.bars if b.title.startswith("2026-12-01")]
    assert [b.height for b in day0] == pytest.approx([plot / 3, plot / 3])  # 10 + 10 of 30, stacked
    assert day0[1].y + day0[1].height == pytest.approx(day0[0].y)  # b sits on a
    assert not any(b.title.startswith("2026-12-02 a") for b in chart.bars)  # zero draws nothing
    assert chart.legend == [("a", PALETTE[0]), ("b", PALETTE[1])]


def test_many_series_keep_the_largest_and_sum_the_rest() -> None:
    series = {f"p{i}": [float(i), 0.0, 0.0] for i in range(12)}
    kept = top_series(series)
    assert len(kept) == len(PALETTE)
    assert kept[OTHER][0] == sum(range(12 - len(PALETTE) + 1))
    assert sum(v[0] for v in kept.values()) == sum(range(12))


def test_nothing_to_draw() -> None:
    chart = stacked("images", "images", DAYS, {})
    assert chart.empty and chart.bars == []
