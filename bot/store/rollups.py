"""Per-block minimum and maximum of every series, kept by the ingest transaction.

A block holds the points of one metric whose seq falls in [block * ROLLUP_BLOCK, (block + 1) * ROLLUP_BLOCK).
Downsampling a long series then reads one row per block instead of every point, and gives the same
answer as the raw path would with block-aligned buckets: each bucket's true minimum and maximum.
"""

from __future__ import annotations

import functools
from collections import namedtuple
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select, tuple_

from bot.store.bulk import upsert_rows
from bot.store.reads import fetch_tuples
from bot.store.tables import ROLLUP_BLOCK, series_rollups

Point = tuple[int, int | None, float, float]  # seq, episode, ts, value
SIDES = ("min", "max", "first", "last")
COLUMNS = ("count", "nan_count", *(f"{side}_{name}" for side in SIDES for name in ("seq", "episode", "ts", "value")))
assert tuple(series_rollups.c.keys()) == ("session_pk", "metric", "block", "block_size", *COLUMNS)  # rows' order


@functools.cache
def _on_conflict() -> str:
    """The ON CONFLICT clause (SQLite and PostgreSQL alike) that merges a block's extremes into its row.

    Commits reach a block in seq order, so the stored first point stays and the incoming last point wins.
    """
    t = "series_rollups"
    sets = [f"count = {t}.count + excluded.count", f"nan_count = {t}.nan_count + excluded.nan_count"]
    better = {
        "min": f"{t}.min_value IS NULL OR excluded.min_value < {t}.min_value",
        "max": f"{t}.max_value IS NULL OR excluded.max_value > {t}.max_value",
        "first": f"{t}.first_seq IS NULL",
        "last": "excluded.last_seq IS NOT NULL",
    }
    sets += [
        f"{side}_{name} = CASE WHEN {better[side]} THEN excluded.{side}_{name} ELSE {t}.{side}_{name} END"
        for side in SIDES
        for name in ("seq", "episode", "ts", "value")
    ]
    return f"ON CONFLICT (session_pk, metric, block) DO UPDATE SET {', '.join(sets)}"


def update_rollups(
    conn: Connection,
    session_pk: int,
    first_seq: int,
    episodes: Sequence[int | None],
    timestamps: Sequence[float],
    columns: dict[str, list[float | None]],
) -> None:
    """Fold a batch's metric columns (item i has seq first_seq + i) into their blocks: one row per metric and
    block, each a key of its own, in the table's column order."""
    rows = []
    start, n = 0, len(episodes)
    while start < n:
        end = min(n, start + ROLLUP_BLOCK - (first_seq + start) % ROLLUP_BLOCK)
        block = (first_seq + start) // ROLLUP_BLOCK
        for metric, values in columns.items():
            picked = _extremes_of(values, start, end)
            if picked is not None:
                count, nan_count, indexes = picked
                point = [
                    (first_seq + i, episodes[i], timestamps[i], values[i]) if i is not None else (None,) * 4
                    for i in indexes
                ]
                rows.append((session_pk, metric, block, ROLLUP_BLOCK, count, nan_count, *(v for p in point for v in p)))
        start = end
    upsert_rows(conn, series_rollups, rows, _on_conflict())


def _extremes_of(values: list[float | None], start: int, end: int) -> tuple[int, int, list[int | None]] | None:
    """(count, NaN count, [min, max, first, last] indexes) of values[start:end], None where a side has no
    point. Ties go to the earliest point. The common case, a full column without NaN, stays in C."""
    segment = values[start:end]
    try:
        whole = sum(segment)  # type: ignore[arg-type]
    except TypeError:  # some items lack the metric
        whole = None
    if whole is not None and whole == whole:  # no None and no NaN
        low, high = min(segment), max(segment)  # type: ignore[type-var]
        indexes = [start + segment.index(low), start + segment.index(high), start, end - 1]
        return len(segment), 0, indexes  # type: ignore[return-value]
    present = [i for i in range(start, end) if values[i] is not None]
    if not present:
        return None
    real = [i for i in present if values[i] == values[i]]
    if not real:
        return len(present), len(present), [None] * 4
    low_i = min(real, key=values.__getitem__)  # type: ignore[arg-type]
    high_i = max(real, key=values.__getitem__)  # type: ignore[arg-type]
    return len(present), len(present) - len(real), [low_i, high_i, real[0], real[-1]]


# A rollup row as a plain named tuple: a long series' chart reads thousands, and SQLAlchemy's Row objects made
# their attribute reads most of the time of its downsampling. Only the columns downsampling reads: a series'
# two ends are in other columns of two of its blocks (series_ends), and all 22 columns of every block took
# twice as long to read.
EXTREMES = tuple(f"{side}_{name}" for side in ("min", "max") for name in ("seq", "episode", "ts", "value"))
BLOCK_COLUMNS = ("metric", "block", "block_size", "count", "nan_count", *EXTREMES)
Block = namedtuple("Block", BLOCK_COLUMNS)  # type: ignore[misc]
ENDS = tuple(f"{side}_{name}" for side in ("first", "last") for name in ("seq", "episode", "ts", "value"))


def read_rollups(conn: Connection, session_pk: int, metrics: Sequence[str]) -> dict[str, list[Any]]:
    """Each metric's blocks in order, in one query for all of them (the page asks for ten metrics at once,
    most of them absent, and each query cost more to build than to run)."""
    query = (
        select(*(series_rollups.c[name] for name in BLOCK_COLUMNS))
        .where(series_rollups.c.session_pk == session_pk, series_rollups.c.metric.in_(list(metrics)))
        .order_by(series_rollups.c.metric, series_rollups.c.block)
    )
    blocks: dict[str, list[Any]] = {metric: [] for metric in metrics}
    for row in fetch_tuples(conn, query):
        blocks[row[0]].append(Block(*row))
    return blocks


def series_ends(
    conn: Connection, session_pk: int, blocks: dict[str, list[Any]]
) -> dict[str, tuple[Point | None, Point | None]]:
    """The first and the last non-NaN point of each series, from its first and last blocks that have one
    (read by key, in one query)."""
    edges = {}
    for metric, metric_blocks in blocks.items():
        valued = (block.block for block in metric_blocks if block.min_value is not None)
        first = next(valued, None)
        if first is not None:
            last = next(b.block for b in reversed(metric_blocks) if b.min_value is not None)
            edges[metric] = (first, last)
    rows: dict[tuple[str, int], Any] = {}
    if edges:
        keys = sorted({(metric, block) for metric, pair in edges.items() for block in pair})
        query = select(
            series_rollups.c.metric, series_rollups.c.block, *(series_rollups.c[name] for name in ENDS)
        ).where(
            series_rollups.c.session_pk == session_pk, tuple_(series_rollups.c.metric, series_rollups.c.block).in_(keys)
        )
        rows = {(row[0], row[1]): row[2:] for row in fetch_tuples(conn, query)}
    ends: dict[str, tuple[Point | None, Point | None]] = {metric: (None, None) for metric in blocks}
    for metric, (first, last) in edges.items():
        head, tail = rows.get((metric, first)), rows.get((metric, last))  # gone if the session was reset since
        ends[metric] = (tuple(head[:4]) if head else None, tuple(tail[4:]) if tail else None)
    return ends


def downsample_blocks(blocks: Sequence[Any], buckets: int) -> list[Point]:
    """Group consecutive blocks into `buckets` groups of about equal point count; each gives its min and max."""
    total = sum(block.count - block.nan_count for block in blocks)
    per_bucket = total / max(1, buckets)
    kept: list[Point] = []
    group: list[Any] = []
    filled, closed = 0, 0
    for block in blocks:
        group.append(block)
        filled += block.count - block.nan_count
        if filled >= per_bucket * (closed + 1):
            kept.extend(_extremes(group))
            group, closed = [], closed + 1
    if group:
        kept.extend(_extremes(group))
    return kept


def _extremes(group: Sequence[Any]) -> list[Point]:
    with_values = [block for block in group if block.min_value is not None]
    if not with_values:
        return []
    low = min(with_values, key=lambda b: (b.min_value, b.min_seq))
    high = max(with_values, key=lambda b: (b.max_value, -b.max_seq))
    points = {
        low.min_seq: (low.min_seq, low.min_episode, low.min_ts, low.min_value),
        high.max_seq: (high.max_seq, high.max_episode, high.max_ts, high.max_value),
    }
    return [points[seq] for seq in sorted(points)]
