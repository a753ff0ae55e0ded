"""Per-block minimum and maximum of every series, kept by the ingest transaction.

A block holds the points of one metric whose seq falls in [block * ROLLUP_BLOCK, (block + 1) * ROLLUP_BLOCK).
Downsampling a long series then reads one row per block instead of every point, and gives the same
answer as the raw path would with block-aligned buckets: each bucket's true minimum and maximum.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, select

from bot.store.tables import ROLLUP_BLOCK, series_rollups

Point = tuple[int, int | None, float, float]  # seq, episode, ts, value
Extremes = dict[str, Any]


def _merge(state: Extremes, seq: int, episode: int | None, ts: float, value: float | None) -> None:
    state["count"] += 1
    if value is None:
        state["nan_count"] += 1
        return
    if state["min_value"] is None or value < state["min_value"]:
        state.update(min_seq=seq, min_episode=episode, min_ts=ts, min_value=value)
    if state["max_value"] is None or value > state["max_value"]:
        state.update(max_seq=seq, max_episode=episode, max_ts=ts, max_value=value)


COLUMNS = (
    "count",
    "nan_count",
    "min_seq",
    "min_episode",
    "min_ts",
    "min_value",
    "max_seq",
    "max_episode",
    "max_ts",
    "max_value",
)


def _upsert_sql(marker: str) -> str:
    """One INSERT ... ON CONFLICT DO UPDATE (SQLite and PostgreSQL alike) that merges a block's extremes."""
    t = "series_rollups"
    sets = [f"count = {t}.count + excluded.count", f"nan_count = {t}.nan_count + excluded.nan_count"]
    for side, op in (("min", "<"), ("max", ">")):
        better = f"{t}.{side}_value IS NULL OR excluded.{side}_value {op} {t}.{side}_value"
        sets += [
            f"{side}_{field} = CASE WHEN {better} THEN excluded.{side}_{field} ELSE {t}.{side}_{field} END"
            for field in ("seq", "episode", "ts", "value")
        ]
    columns = ("session_pk", "metric", "block", *COLUMNS)
    return (
        f"INSERT INTO {t} ({', '.join(columns)}) VALUES ({', '.join([marker] * len(columns))}) "
        f"ON CONFLICT (session_pk, metric, block) DO UPDATE SET {', '.join(sets)}"
    )


def update_rollups(conn: Connection, session_pk: int, rows: Iterable[tuple[Any, ...]]) -> None:
    """Fold series rows (session_pk, metric, seq, episode, ts, value) into their blocks, in one statement."""
    touched: dict[tuple[str, int], Extremes] = {}
    for _, metric, seq, episode, ts, value in rows:
        key = (metric, seq // ROLLUP_BLOCK)
        state = touched.get(key)
        if state is None:
            state = touched[key] = {"count": 0, "nan_count": 0, "min_value": None, "max_value": None}
        _merge(state, seq, episode, ts, value)
    marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    conn.exec_driver_sql(
        _upsert_sql(marker),
        [
            (session_pk, metric, block, *(state.get(name) for name in COLUMNS))
            for (metric, block), state in touched.items()
        ],
    )


def read_rollups(conn: Connection, session_pk: int, metric: str) -> list[Any]:
    return list(
        conn.execute(
            select(series_rollups)
            .where(series_rollups.c.session_pk == session_pk, series_rollups.c.metric == metric)
            .order_by(series_rollups.c.block)
        )
    )


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
