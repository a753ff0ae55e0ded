"""A session's summary per metric (count, last, minimum, maximum, mean of the newest points), from the
per-block rollups that ingest keeps: exact, and a bounded read whatever the session's length."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, select

from bot.frames import json_number
from bot.store.reads import MessageFilter, read_series
from bot.store.tables import series_rollups

RECENT = 100  # the "mean of the last 100" a summary gives


def read_summary(conn: Connection, session_pk: int, recent: int = RECENT) -> dict[str, dict[str, Any]]:
    r = series_rollups.c
    totals = conn.execute(
        select(r.metric, func.sum(r.count), func.sum(r.nan_count), func.min(r.min_value), func.max(r.max_value))
        .where(r.session_pk == session_pk)
        .group_by(r.metric)
    ).all()
    summary: dict[str, dict[str, Any]] = {}
    start_seqs = []
    for metric, count, nan_count, lowest, highest in totals:
        blocks = conn.execute(
            select(r.block, r.block_size, r.count.label("points"), r.last_seq, r.last_episode, r.last_value)
            .where(r.session_pk == session_pk, r.metric == metric)
            .order_by(r.block.desc())
            .limit(recent)  # each block holds one point at least: enough to find the newest `recent`
        ).all()
        last = next((b for b in blocks if b.last_seq is not None), None)
        held, start = 0, blocks[-1].block * blocks[-1].block_size if blocks else 0
        for block in blocks:
            held += block.points
            if held >= recent:
                start = block.block * block.block_size
                break
        start_seqs.append(start)
        summary[metric] = {
            "count": int(count or 0),
            "nan_count": int(nan_count or 0),
            "min": json_number(lowest),
            "max": json_number(highest),
            "last": json_number(last.last_value) if last else None,
            "last_seq": last.last_seq if last else None,
            "last_episode": last.last_episode if last else None,
        }
    if summary:
        # One pass over the newest messages for every metric (NaN points are not in a mean).
        newest = read_series(conn, session_pk, list(summary), MessageFilter(after_seq=max(0, min(start_seqs) - 1)))
        for metric, (points, _) in newest.items():
            values = [value for _, _, _, value in points[-recent:]]
            summary[metric]["recent_mean"] = json_number(sum(values) / len(values)) if values else None
            summary[metric]["recent_count"] = len(values)
    return summary
