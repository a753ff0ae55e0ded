"""Downsampling keeps first, last and every bucket's extremes, deterministically."""

from __future__ import annotations

import math

from bot.store.downsample import min_max


def rows(values: list[float]) -> list[tuple[int, int | None, float, float]]:
    return [(i + 1, i, float(i), v) for i, v in enumerate(values)]


def test_short_series_is_returned_whole() -> None:
    data = rows([1.0, 2.0, 3.0])
    assert min_max(data, 10) == data


def test_spikes_first_and_last_survive() -> None:
    """A single spike and a single dip in 100,000 points are both kept, with the first and last points."""
    values = [math.sin(i / 500) for i in range(100_000)]
    values[31_337], values[77_777] = 50.0, -50.0
    kept = min_max(rows(values), 200)
    assert len(kept) <= 200
    kept_values = [r[3] for r in kept]
    assert 50.0 in kept_values and -50.0 in kept_values
    assert kept[0][0] == 1 and kept[-1][0] == 100_000
    assert [r[0] for r in kept] == sorted(r[0] for r in kept)
    assert min_max(rows(values), 200) == kept
