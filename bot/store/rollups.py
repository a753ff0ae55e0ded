"""Per-block minimum and maximum of every series, kept by the ingest transaction.

A block holds the points of one metric whose seq falls in [block * ROLLUP_BLOCK, (block + 1) * ROLLUP_BLOCK).
Downsampling a long series then reads one row per block instead of every point, and gives the same
answer as the raw path would with block-aligned buckets: each bucket's true minimum and maximum.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, Connection, case, func, literal_column, select, tuple_
from sqlalchemy.dialects.postgresql import distinct_on

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


class Summary(NamedTuple):
    """What a whole-series read needs to know of a metric's blocks, from one aggregate row per metric."""

    blocks: int
    total: int  # points with a value (NaN apart)
    nan_count: int
    start: int  # the seq its first block starts at
    first: int | None  # its first and last blocks that hold a value (None: NaN only)
    last: int | None


ENDS = tuple(f"{side}_{name}" for side in ("first", "last") for name in ("seq", "episode", "ts", "value"))


def summarize_rollups(conn: Connection, session_pk: int, metrics: Sequence[str]) -> dict[str, Summary]:
    """Each metric's Summary, in one query for all of them (the page asks for ten metrics at once, most of
    them absent); a metric with no block has none."""
    t = series_rollups.c
    valued = case((t.min_value.is_not(None), t.block))
    query = (
        select(
            t.metric,
            func.count(),
            func.sum(t.count - t.nan_count),
            func.sum(t.nan_count),
            func.min(t.block * t.block_size),
            func.min(valued),
            func.max(valued),
        )
        .where(t.session_pk == session_pk, t.metric.in_(list(metrics)))
        .group_by(t.metric)
    )
    summaries = {}
    for metric, blocks, total, nan_count, start, first, last in fetch_tuples(conn, query):
        first, last = (None, None) if first is None else (int(first), int(last))
        summaries[metric] = Summary(int(blocks), int(total), int(nan_count), int(start), first, last)
    return summaries


def series_ends(
    conn: Connection, session_pk: int, edges: dict[str, tuple[int, int]]
) -> dict[str, tuple[Point | None, Point | None]]:
    """The first and the last non-NaN point of each series, from the first and last blocks that have one
    (`edges`, read by key, in one query)."""
    rows: dict[tuple[str, int], Any] = {}
    if edges:
        keys = sorted({(metric, block) for metric, pair in edges.items() for block in pair})
        query = select(
            series_rollups.c.metric, series_rollups.c.block, *(series_rollups.c[name] for name in ENDS)
        ).where(
            series_rollups.c.session_pk == session_pk, tuple_(series_rollups.c.metric, series_rollups.c.block).in_(keys)
        )
        rows = {(row[0], row[1]): row[2:] for row in fetch_tuples(conn, query)}
    ends: dict[str, tuple[Point | None, Point | None]] = {}
    for metric, (first, last) in edges.items():
        head, tail = rows.get((metric, first)), rows.get((metric, last))  # gone if the session was reset since
        ends[metric] = (tuple(head[:4]) if head else None, tuple(tail[4:]) if tail else None)
    return ends


def bucket_extremes(conn: Connection, session_pk: int, metric: str, summary: Summary, buckets: int) -> list[Point]:
    """The lowest and the highest point of each of at most `buckets` runs of consecutive blocks (by block
    number, from the first block with a value to the last), ties to the earliest point.

    The database groups the blocks and picks each run's extremes, so a million-point series sends a thousand
    rows to Python, not eight thousand: turning rows into Python objects was most of its read.
    """
    first, last = summary.first, summary.last
    assert first is not None and last is not None  # a long series has values
    width = -(-(last - first + 1) // max(1, buckets))
    t = series_rollups.c
    # Integers of our own, inlined: PostgreSQL's DISTINCT ON must match its ORDER BY, which bound
    # parameters (each a parameter of its own) would not.
    run = (t.block - literal_column(str(int(first)), BigInteger)) // literal_column(str(int(width)), BigInteger)
    where = (t.session_pk == session_pk, t.metric == metric, t.block.between(first, last), t.min_value.is_not(None))
    points: list[Point] = []
    for side, order in (("min", t.min_value), ("max", t.max_value.desc())):
        columns = [t[f"{side}_{name}"] for name in ("seq", "episode", "ts", "value")]
        if conn.dialect.name == "sqlite":
            # SQLite's bare columns: with one min() or max(), they come from the row that holds it.
            pick = func.min(t.min_value) if side == "min" else func.max(t.max_value)
            query = select(pick, *columns).where(*where).group_by(run)
            points.extend(tuple(row[1:]) for row in fetch_tuples(conn, query))
        else:
            query = select(*columns).where(*where).ext(distinct_on(run)).order_by(run, order, columns[0])
            points.extend(tuple(row) for row in fetch_tuples(conn, query))
    return points
