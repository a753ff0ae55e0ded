"""Downsampling a series for charts: deterministic min/max per bucket, first and last points always kept.

The same data always gives the same points (no sampling, no randomness), and a spike survives
because every bucket keeps its minimum and its maximum. At most `points` points are returned.
"""

from __future__ import annotations

from collections.abc import Sequence

Row = tuple[int, int | None, float, float]  # seq, episode, ts, value


def min_max(rows: Sequence[Row], points: int) -> list[Row]:
    """Rows in seq order with finite-or-infinite values (no NaN); returns at most `points` of them."""
    if len(rows) <= points:
        return list(rows)
    buckets = (points - 2) // 2  # none below 4 points: room for the first and the last only
    inner = len(rows) - 2
    values = [row[3] for row in rows]
    kept = [0]
    for bucket in range(buckets):
        start = 1 + bucket * inner // buckets
        end = 1 + (bucket + 1) * inner // buckets
        if start >= end:
            continue
        window = values[start:end]
        low = start + window.index(min(window))
        high = start + window.index(max(window))
        kept.extend(sorted({low, high}))
    kept.append(len(rows) - 1)
    return [rows[i] for i in kept]
