"""Reads that answer one use case each (history pages, exports, series, a spectator's snapshot, summaries):
built from the store's query functions, run on the store's reader threads by bot/server/services.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, func, select, text

from bot.frames import iso, json_number
from bot.store.decisions import read_decisions
from bot.store.downsample import min_max
from bot.store.errors import SessionNotFoundError
from bot.store.joined_frames import frame_runs
from bot.store.reads import (
    ACTIVE_STATUSES,
    MessageFilter,
    get_session,
    latest_data,
    read_frames,
    read_graphs,
    read_series,
    read_steps,
    session_dict,
    session_metrics,
)
from bot.store.rollups import Summary, bucket_extremes, series_ends, summarize_rollups
from bot.store.summary import read_summary
from bot.store.tables import sessions


@dataclass(frozen=True, slots=True)
class SessionState:
    """What a spectator needs at connect: the session, its epoch and last seq, latest metrics, graphs."""

    session: dict[str, Any]
    latest_metrics: Any
    latest_decision: Any
    graphs: list[Any]


def read_history(
    conn: Connection, session_id: str, where: MessageFilter, limit: int
) -> tuple[dict[str, Any], list[tuple[int, str, str]]]:
    row = get_session(conn, session_id)
    if row is None:
        raise SessionNotFoundError(session_id)
    return session_dict(row), read_frames(conn, row.pk, session_id, where, limit)


def read_history_page(
    conn: Connection, session_id: str, where: MessageFilter, limit: int, put: Callable[[Any], None]
) -> tuple[int, int]:
    """Puts the session, then the page's frames as comma-separated pieces (see frame_runs), each as it is
    read, all in one read; returns (how many frames, the last one's seq or 0)."""
    row = get_session(conn, session_id)
    if row is None:
        raise SessionNotFoundError(session_id)
    put(session_dict(row))
    count, last = 0, 0
    for n, top, piece in frame_runs(conn, row.pk, session_id, where, limit):
        put(piece)
        count, last = count + n, top
    return count, last


def read_export_page(
    conn: Connection, session_id: str, where: MessageFilter, limit: int
) -> tuple[dict[str, Any], list[str], list[tuple[int, str, str]]]:
    row = get_session(conn, session_id)
    if row is None:
        raise SessionNotFoundError(session_id)
    return session_dict(row), session_metrics(conn, row.pk), read_frames(conn, row.pk, session_id, where, limit)


def read_session_decisions(conn: Connection, session_id: str, buckets: int, least: int) -> dict[str, Any]:
    row = get_session(conn, session_id)
    if row is None:
        raise SessionNotFoundError(session_id)
    return {"session_id": session_id, "last_seq": row.last_seq, **read_decisions(conn, row.pk, buckets, least)}


def read_session_summary(conn: Connection, session_id: str) -> dict[str, Any]:
    row = get_session(conn, session_id)
    if row is None:
        raise SessionNotFoundError(session_id)
    return {"session_id": session_id, "last_seq": row.last_seq, "metrics": read_summary(conn, row.pk)}


# A snapshot's graphs carry at most this many points over all their series (about 1.2 MB): with the bounds on
# graphs per session and series per graph, a join costs a bounded read and a bounded frame.
SNAPSHOT_GRAPH_POINTS_TOTAL = 20_000


def read_state(conn: Connection, session_id: str, graph_points: int | None) -> SessionState:
    row = get_session(conn, session_id)
    if row is None:
        raise SessionNotFoundError(session_id)
    latest = orjson.loads(row.latest_metrics) if row.latest_metrics else None
    decision = latest_data(conn, row.pk, "bot_decision")
    latest_decision = orjson.loads(decision) if decision else None
    total = None if graph_points is None else SNAPSHOT_GRAPH_POINTS_TOTAL
    return SessionState(session_dict(row), latest, latest_decision, read_graphs(conn, row.pk, graph_points, total))


def read_session_series(
    conn: Connection, session_id: str, metrics: list[str], where: MessageFilter, points: int
) -> dict[str, Any]:
    row = get_session(conn, session_id)
    if row is None:
        raise SessionNotFoundError(session_id)
    series: dict[str, tuple[list[Any], int, int]] = {}
    if where == MessageFilter():
        # A whole series: from its rollups when long; when short, its points are read from its first block
        # on; a metric with no blocks has no points, and costs no read (the page asks for every built-in).
        first_block_seq = None
        summaries = summarize_rollups(conn, row.pk, metrics)
        long = {m: s for m, s in summaries.items() if s.first is not None and _long(s.total, s.blocks, points)}
        ends = series_ends(conn, row.pk, {m: (s.first, s.last) for m, s in long.items()})  # type: ignore[misc]
        for metric in metrics:
            summary = summaries.get(metric)
            if metric in long:
                series[metric] = _from_rollups(conn, row.pk, metric, long[metric], points, ends[metric])
            elif summary is None:
                series[metric] = ([], 0, 0)
            else:
                first_block_seq = summary.start if first_block_seq is None else min(first_block_seq, summary.start)
        if first_block_seq is not None:
            where = MessageFilter(after_seq=max(0, first_block_seq - 1))
    rest = [metric for metric in metrics if metric not in series]
    for metric, (rows, nan_count) in read_series(conn, row.pk, rest, where).items() if rest else ():
        series[metric] = (min_max(rows, points), len(rows), nan_count)
    steps = read_steps(conn, row.pk, [point[0] for kept, _, _ in series.values() for point in kept])
    return {
        "session_id": session_id,
        "created_at": iso(row.created_at),  # relative time's origin: the page draws this before its join
        "epoch": row.epoch,
        "last_seq": row.last_seq,
        "available": session_metrics(conn, row.pk),
        "series": {metric: _columns(*series[metric], steps) for metric in dict.fromkeys(metrics)},
    }


def _columns(kept: list[Any], total: int, nan_count: int, steps: dict[int, int]) -> dict[str, Any]:
    return {
        "total": total,
        "nan_count": nan_count,
        "seq": [r[0] for r in kept],
        "episode": [r[1] for r in kept],
        "step": [steps.get(r[0]) for r in kept],  # the engine's own step, where it sent one
        "timestamp": [r[2] for r in kept],
        "value": [json_number(r[3]) for r in kept],
    }


def _buckets(points: int) -> int:
    """A chart of `points` points keeps the first, the last and each bucket's minimum and maximum: none below 4."""
    return (points - 2) // 2


def _long(total: int, blocks: int, points: int) -> bool:
    """Whether a whole series of `total` points is read from its per-block rollups: when there are enough
    blocks to keep a chart's detail (a block for every two points or fewer); else it is short enough to
    read whole (at most about 32,000 points)."""
    return total > points and 2 * blocks >= _buckets(points)


def _from_rollups(
    conn: Connection,
    session_pk: int,
    metric: str,
    summary: Summary,
    points: int,
    ends: tuple[tuple[Any, ...] | None, tuple[Any, ...] | None],
) -> tuple[list[Any], int, int]:
    """(points, how many non-NaN points there are, how many NaN) of a whole series, from its rollups."""
    buckets = _buckets(points)
    extremes = bucket_extremes(conn, session_pk, metric, summary, buckets) if buckets else []
    chosen = {p[0]: p for p in [ends[0], *extremes, ends[1]] if p}
    return [chosen[seq] for seq in sorted(chosen)], summary.total, summary.nan_count


def read_last_seqs(conn: Connection, session_ids: list[str]) -> dict[str, tuple[int, str]]:
    """(last seq, epoch) of each session that exists: the epoch says which incarnation the seq belongs to."""
    rows = conn.execute(
        select(sessions.c.session_id, sessions.c.last_seq, sessions.c.epoch).where(
            sessions.c.session_id.in_(session_ids)
        )
    )
    return {session_id: (int(last_seq), epoch) for session_id, last_seq, epoch in rows}


def ping(conn: Connection) -> None:
    """The database answers (/health)."""
    conn.execute(text("SELECT 1"))


def session_counts(conn: Connection) -> tuple[int, int]:
    """(every session, the active ones), for /status and /metrics."""
    total = conn.execute(select(func.count()).select_from(sessions)).scalar_one()
    active = conn.execute(
        select(func.count()).select_from(sessions).where(sessions.c.status.in_(ACTIVE_STATUSES))
    ).scalar_one()
    return int(total), int(active)
