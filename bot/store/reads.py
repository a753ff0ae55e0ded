"""Read queries. Each takes a Connection and runs on a reader thread, never on the event loop."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, Row, Select, String, cast, func, literal, or_, select

from bot.frames import envelope_parts, iso
from bot.schemas import SERIES_FIELDS
from bot.store.tables import NOT_METRICS, graph_points, graphs, messages, series_rollups, sessions

ACTIVE_STATUSES = ("created", "running", "paused", "stale")


def session_dict(row: Row[Any]) -> dict[str, Any]:
    return {
        "session_id": row.session_id,
        "name": row.name,
        "algorithm": row.algorithm,
        "model_generation": row.model_generation,
        "total_episodes": row.total_episodes,
        "status": row.status,
        "metadata": orjson.loads(row.metadata),
        "tags": orjson.loads(row.tags),
        "epoch": row.epoch,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "ended_at": iso(row.ended_at) if row.ended_at is not None else None,
        # to its end, or to its latest news while it runs
        "duration_seconds": round((row.ended_at if row.ended_at is not None else row.updated_at) - row.created_at, 3),
        "last_seq": row.last_seq,
        "message_count": row.message_count,
        "current_episode": row.current_episode,
        "room_code": row.room_code,
        "max_spectators": row.max_spectators,
        "password_protected": row.room_password_hash is not None,
    }


def get_session(conn: Connection, session_id: str) -> Row[Any] | None:
    return conn.execute(select(sessions).where(sessions.c.session_id == session_id)).first()


def get_session_by_room_or_id(conn: Connection, key: str) -> Row[Any] | None:
    """The session whose room code is `key`, else the one whose id is `key` (a room's code wins): in one read,
    as every spectator's join asks it."""
    code = key.upper()
    rows = conn.execute(select(sessions).where(or_(sessions.c.room_code == code, sessions.c.session_id == key))).all()
    return next((row for row in rows if row.room_code == code), rows[0] if rows else None)


def list_sessions(
    conn: Connection,
    statuses: Sequence[str] | None,
    limit: int,
    offset: int,
    session_id: str | None = None,
    tags: Sequence[str] = (),
) -> tuple[list[Row[Any]], int, dict[int, dict[str, Any]]]:
    """Newest first; `statuses` None means all; `session_id`, when given, keeps that session only (what a
    credential limited to it may see); `tags`: the sessions with every one of them. With the total, and the
    main metric of each (main_metrics)."""
    query = select(sessions)
    count = select(func.count()).select_from(sessions)
    for tag in tags:  # a tag has no quote: its quoted text is found in the stored JSON list only as that tag
        has_tag = sessions.c.tags.contains(orjson.dumps(tag).decode(), autoescape=True)
        query, count = query.where(has_tag), count.where(has_tag)
    if statuses is not None:
        query = query.where(sessions.c.status.in_(statuses))
        count = count.where(sessions.c.status.in_(statuses))
    if session_id is not None:
        query = query.where(sessions.c.session_id == session_id)
        count = count.where(sessions.c.session_id == session_id)
    rows = list(
        conn.execute(query.order_by(sessions.c.created_at.desc(), sessions.c.pk.desc()).limit(limit).offset(offset))
    )
    return rows, int(conn.execute(count).scalar_one()), main_metrics(conn, rows)


MAIN_METRIC = "current_reward"  # the list's column, as W&B's runs table shows a run's headline metric


def main_metrics(conn: Connection, rows: Sequence[Row[Any]]) -> dict[int, dict[str, Any]]:
    """Each session's main metric, by pk: its name, its last value and its best (the highest), from the
    sessions' latest metrics and the rollups (one query for all of them)."""
    best: dict[int, float] = {}
    pks = [row.pk for row in rows]
    for start in range(0, len(pks), 500):
        query = (
            select(series_rollups.c.session_pk, func.max(series_rollups.c.max_value))
            .where(series_rollups.c.session_pk.in_(pks[start : start + 500]), series_rollups.c.metric == MAIN_METRIC)
            .group_by(series_rollups.c.session_pk)
        )
        best.update({pk: value for pk, value in conn.execute(query) if value is not None})
    found = {}
    for row in rows:
        last = orjson.loads(row.latest_metrics).get(MAIN_METRIC) if row.latest_metrics else None
        if last is not None or row.pk in best:
            found[row.pk] = {"name": MAIN_METRIC, "last": last, "best": best.get(row.pk)}
    return found


def protected_rooms(conn: Connection, session_ids: Sequence[str]) -> set[str]:
    """Which of these sessions are password-protected rooms (read in chunks: a bound variable per id)."""
    found: set[str] = set()
    ids = list(session_ids)
    for start in range(0, len(ids), 500):
        query = select(sessions.c.session_id).where(
            sessions.c.session_id.in_(ids[start : start + 500]), sessions.c.room_password_hash.is_not(None)
        )
        found.update(conn.execute(query).scalars())
    return found


@dataclass(frozen=True, slots=True)
class MessageFilter:
    after_seq: int = 0
    types: Sequence[str] | None = None
    start_episode: int | None = None
    end_episode: int | None = None
    since: float | None = None
    until: float | None = None


def read_frames(
    conn: Connection, session_pk: int, session_id: str, where: MessageFilter, limit: int
) -> list[tuple[int, str, str]]:
    """(seq, type, frame) in seq order, after `where.after_seq`: the one read behind replay and exports
    (a history page is joined by the database: joined_frames.py)."""
    return fetch_tuples(conn, frames_query(session_pk, session_id, where, limit, conn.dialect.name))


def frames_query(session_pk: int, session_id: str, where: MessageFilter, limit: int, dialect: str) -> Select[Any]:
    query = select(messages.c.seq, messages.c.type, frame_text(session_id, dialect).label("frame")).where(
        messages.c.session_pk == session_pk, messages.c.seq > where.after_seq
    )
    if where.types is not None:
        query = query.where(messages.c.type.in_(where.types))
        if "training_metrics" not in where.types:
            query = query.where(NOT_METRICS)  # lets the partial type index find them (see store/planner.py)
    return _in_range(query, where).order_by(messages.c.seq).limit(limit)


def frame_text(session_id: str, dialect: str) -> ColumnElement[str]:
    """A stored message as the frame spectators got, byte for byte (the format of frames.data_frames),
    assembled by the database: a page of 100,000 costs no Python per row. SQLite writes it in one printf()
    (each `||` copies the growing string again: a fifth slower there); on PostgreSQL `||` is the fastest."""
    (h0, h1), (t0, t1) = envelope_parts(orjson.dumps(session_id).decode())
    if dialect == "sqlite":
        template = "%s".join(part.replace("%", "%%") for part in (h0, h1, t0, t1, "")) + "}"
        values = (messages.c.type, messages.c.seq, messages.c.received, messages.c.data)
        return func.printf(literal(template), *values, type_=String)
    return (
        literal(h0)
        + messages.c.type
        + literal(h1)
        + cast(messages.c.seq, String)
        + literal(t0)
        + messages.c.received
        + literal(t1)
        + messages.c.data
        + literal("}")
    )


def _in_range(query: Select[Any], where: MessageFilter) -> Select[Any]:
    """The episode and time filters."""
    if where.start_episode is not None:
        query = query.where(messages.c.episode >= where.start_episode)
    if where.end_episode is not None:
        query = query.where(messages.c.episode <= where.end_episode)
    if where.since is not None:
        query = query.where(messages.c.ts >= where.since)
    if where.until is not None:
        query = query.where(messages.c.ts <= where.until)
    return query


def fetch_tuples(conn: Connection, query: Select[*tuple[Any, ...]]) -> list[Any]:
    """Rows as plain tuples from the driver's own cursor: SQLAlchemy's Row objects cost more than the
    read itself on the big reads (a 100,000-message page, a million-point series)."""
    compiled = query.compile(conn, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    if conn.dialect.paramstyle == "qmark":
        params = tuple(params[name] for name in compiled.positiontup or ())  # type: ignore[assignment]
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(str(compiled), params)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def latest_data(conn: Connection, session_pk: int, message_type: str) -> str | None:
    """The `data` of the newest message of one type other than training_metrics, or None: its seq from the
    partial type index (a covering lookup), then the row by primary key."""
    seq = conn.execute(
        select(func.max(messages.c.seq)).where(
            messages.c.session_pk == session_pk, messages.c.type == message_type, NOT_METRICS
        )
    ).scalar()
    if seq is None:
        return None
    return conn.execute(
        select(messages.c.data).where(messages.c.session_pk == session_pk, messages.c.seq == seq)
    ).scalar()


def read_graphs(
    conn: Connection, session_pk: int, newest: int | None = None, total: int | None = None
) -> list[orjson.Fragment]:
    """Each graph as it stands (the newest max_points per series, or fewer: `newest`, and `total` points at
    most over all the series, shared evenly), as JSON built here on the reader thread: a graph of a hundred
    thousand points is never parsed or serialised on the loop."""
    rows = conn.execute(
        select(graphs.c.graph_id, graphs.c.meta).where(graphs.c.session_pk == session_pk).order_by(graphs.c.graph_id)
    ).all()
    metas = [(graph_id, orjson.loads(meta_text)) for graph_id, meta_text in rows]
    if total is not None:
        share = max(1, total // max(1, sum(len(meta["metrics"]) for _, meta in metas)))
        newest = share if newest is None else min(newest, share)
    p = graph_points.c
    built = []
    for graph_id, meta in metas:
        data_points = {}
        keep = meta["max_points"] if newest is None else min(newest, meta["max_points"])
        for metric in meta["metrics"]:
            series = select(p.point).where(p.session_pk == session_pk, p.graph_id == graph_id, p.metric == metric)
            texts = [text for (text,) in fetch_tuples(conn, series.order_by(p.id.desc()).limit(keep))]
            if texts:
                data_points[metric] = orjson.Fragment("[" + ",".join(reversed(texts)) + "]")
        graph = {
            "graph_id": graph_id,
            "title": meta["title"],
            "y_label": meta["y_label"],
            "metrics": meta["metrics"],
            "data_points": data_points,
            "max_points": meta["max_points"],
        }
        built.append(orjson.Fragment(orjson.dumps(graph)))
    return built


SeriesPoints = tuple[list[tuple[int, int | None, float, float]], int]


def read_series(
    conn: Connection, session_pk: int, metrics: Sequence[str], where: MessageFilter
) -> dict[str, SeriesPoints]:
    """For each metric: every non-NaN point (seq, episode, ts, value) in the range, in seq order, and how
    many NaN points it holds. The points are read from the stored data in one pass for all the metrics."""
    query = select(messages.c.seq, messages.c.episode, messages.c.ts, messages.c.data).where(
        messages.c.session_pk == session_pk, messages.c.type == "training_metrics", messages.c.seq > where.after_seq
    )
    rows = fetch_tuples(conn, _in_range(query, where).order_by(messages.c.seq))
    wanted = [(metric, metric in SERIES_FIELDS) for metric in dict.fromkeys(metrics)]
    found: dict[str, SeriesPoints] = {metric: ([], 0) for metric, _ in wanted}
    nan_counts = dict.fromkeys(found, 0)
    for seq, episode, ts, text in rows:
        data = orjson.loads(text)
        custom = data.get("custom") or {}
        for metric, builtin in wanted:
            value = data.get(metric) if builtin else custom.get(metric)
            if value is None:
                continue
            value = float(value)  # "NaN", "Infinity" and "-Infinity" travel as strings
            if value != value:
                nan_counts[metric] += 1
            else:
                found[metric][0].append((seq, episode, ts, value))
    return {metric: (points, nan_counts[metric]) for metric, (points, _) in found.items()}


STEP_LOOKUP_CHUNK = 5_000  # seqs per query: well under SQLite's and PostgreSQL's limits on parameters


def read_steps(conn: Connection, session_pk: int, seqs: Sequence[int]) -> dict[int, int]:
    """The engine's own `step` of these messages, by seq, where they carry one: a series is stored and
    rolled up by seq, and a chart is read as a few thousand points, so their steps are looked up by key."""
    wanted = sorted(set(seqs))
    steps: dict[int, int] = {}
    for start in range(0, len(wanted), STEP_LOOKUP_CHUNK):
        chunk = wanted[start : start + STEP_LOOKUP_CHUNK]
        query = select(messages.c.seq, messages.c.data).where(
            messages.c.session_pk == session_pk,
            messages.c.seq.in_(chunk),
            messages.c.data.like('%"step"%'),  # most runs send none: their rows stay in the database
        )
        for seq, text in fetch_tuples(conn, query):
            if (step := orjson.loads(text).get("step")) is not None:
                steps[seq] = step
    return steps


def session_metrics(conn: Connection, session_pk: int) -> list[str]:
    """The names of every metric this session has logged (each has rollups)."""
    rows = conn.execute(select(series_rollups.c.metric).where(series_rollups.c.session_pk == session_pk).distinct())
    return sorted(metric for (metric,) in rows)
