"""Write jobs and the group commit that applies many of them in one transaction.

Each job checks everything that can reject it (unknown session, existing id, repeated idempotency
key) before it writes anything, so a rejected job leaves the shared transaction untouched and the
other jobs of the group still commit. A failed commit fails every job of the group, with no seq hole:
seq is allocated by the same transaction (`UPDATE sessions SET last_seq = last_seq + n RETURNING`).
"""

from __future__ import annotations

import functools
import logging
import secrets
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from bot.frames import FrameRun, control_frame, data_frames, iso
from bot.schemas import ENDED_STATUSES, GraphPoint, PerformanceGraphData, SessionCreate, SessionUpdate
from bot.store.batch import Batch
from bot.store.bounds import SessionBounds
from bot.store.bulk import insert_rows
from bot.store.driver import driver_sql
from bot.store.errors import (
    IdempotencyConflictError,
    JobLimitError,
    SessionExistsError,
    SessionLimitError,
    SessionNotFoundError,
    StoreRejectedError,
    StoreUnavailableError,
)
from bot.store.reads import session_dict
from bot.store.rollups import update_rollups
from bot.store.rooms import new_room_code
from bot.store.tables import graph_points, graphs, idempotency_keys, messages, series_rollups, sessions

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Published:
    """Committed frames of one session to hand to the broker, as (seq, type, frame) in seq order;
    seq 0 marks a control frame (not stored)."""

    session_id: str
    epoch: str  # the session's incarnation: its frames travel on a channel of its own
    frames: Sequence[tuple[int, str, str]]


@dataclass(slots=True)
class Applied:
    result: Any
    published: list[Published] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class IngestResult:
    session_id: str
    first_seq: int
    last_seq: int
    count: int
    duplicate: bool


class Job(ABC):
    @abstractmethod
    def apply(self, conn: Connection, now: float) -> Applied:
        """Check, then write; raise a StoreError only before the first write."""


def commit_group(engine: Engine, jobs: Sequence[Job], now: float, raced: bool = False) -> list[Applied | Exception]:
    """Apply every job in one transaction: the whole group shares one commit (and one fsync).

    A job that the database refuses (a value validation let through) must not fail the others: the
    group is rolled back and committed again without it, and the job is tried alone, so it fails by
    itself. This costs nothing while every job succeeds; a savepoint per job would cost two statements
    on every job of every commit. A failure of the commit itself still fails the whole group.

    A job alone that breaks a unique constraint lost a race with another instance on the same database
    (the same idempotency key, the same session id), which committed after this job's checks: it is tried
    once more, and its checks now see the other's rows (a duplicate, an existing session).
    """
    try:
        return _commit_once(engine, jobs, now)
    except _JobFailedError as failed:
        if len(jobs) == 1:
            if isinstance(failed.__cause__, IntegrityError) and not raced:
                return commit_group(engine, jobs, now, raced=True)
            return [_refusal(failed.__cause__)]
        others = commit_group(engine, [*jobs[: failed.index], *jobs[failed.index + 1 :]], now)
        alone = commit_group(engine, [jobs[failed.index]], now)
        return [*others[: failed.index], *alone, *others[failed.index :]]


class _JobFailedError(Exception):
    def __init__(self, index: int) -> None:
        super().__init__(f"job {index} of the group failed")
        self.index = index


# A job's refusal of its request, from its own checks: an answer for that request, the rest of the group goes on.
REFUSALS = (SessionNotFoundError, SessionExistsError, IdempotencyConflictError, SessionLimitError, JobLimitError)


def _commit_once(engine: Engine, jobs: Sequence[Job], now: float) -> list[Applied | Exception]:
    outcomes: list[Applied | Exception] = []
    with engine.begin() as conn:
        for index, job in enumerate(jobs):
            try:
                outcomes.append(job.apply(conn, now))
            except (
                SessionNotFoundError,
                SessionExistsError,
                IdempotencyConflictError,
                SessionLimitError,
                JobLimitError,
            ) as exc:
                outcomes.append(exc)
            except Exception as exc:
                raise _JobFailedError(index) from exc
    return outcomes


def _refusal(cause: BaseException | None) -> Exception:
    """Why a job failed alone. Only the database's refusal of a value (a DataError, which engine.py makes of
    the driver's too) is the request's fault: 422, never worth retrying. Anything else is ours or passing (a
    bug, a lock, a full disk, a lost connection): retryable, 503, and logged with its traceback."""
    if isinstance(cause, DataError):
        logger.warning("the database refused a value of a write, which was not stored: %r", cause.orig)
        return StoreRejectedError(f"the database refused a value of this request: {cause.orig}")
    logger.error("a write failed alone and was not stored", exc_info=cause)
    original = getattr(cause, "orig", None) or cause
    if isinstance(cause, DBAPIError):
        return StoreUnavailableError(f"commit failed: {original}")
    return StoreUnavailableError(f"a server error stopped the commit ({type(original).__name__}); it is in the log")


@dataclass
class CreateSession(Job):
    session_id: str
    spec: SessionCreate
    room_password_hash: str | None = None  # hashed before the job: scrypt must not stall the writer

    def apply(self, conn: Connection, now: float) -> Applied:
        exists = conn.execute(select(sessions.c.pk).where(sessions.c.session_id == self.session_id)).first()
        if exists is not None:
            raise SessionExistsError(self.session_id)
        # Session ids and room codes share `/ws/{key}`: an id may not be any room's code (or a session with a
        # victim's code for its id would take its spectators), and a new code is no session's id.
        if conn.execute(select(sessions.c.pk).where(sessions.c.room_code == self.session_id.upper())).first():
            raise SessionExistsError(self.session_id, "is a room's code")
        room_values: dict[str, Any] = {}
        if self.spec.room is not None:
            code = new_room_code()
            while conn.execute(
                select(sessions.c.pk).where(
                    (sessions.c.room_code == code) | (func.upper(sessions.c.session_id) == code)
                )
            ).first():
                code = new_room_code()
            room_values = {
                "room_code": code,
                "max_spectators": self.spec.room.max_spectators,
                "room_password_hash": self.room_password_hash,
            }
        row = conn.execute(
            insert(sessions)
            .values(
                session_id=self.session_id,
                epoch=secrets.token_hex(8),
                name=self.spec.name,
                algorithm=self.spec.algorithm,
                model_generation=self.spec.model_generation,
                total_episodes=self.spec.total_episodes,
                status="created",
                metadata=orjson.dumps(self.spec.metadata).decode(),
                tags=orjson.dumps(self.spec.tags).decode(),
                created_at=now,
                updated_at=now,
                last_seq=0,
                message_count=0,
                **room_values,
            )
            .returning(*sessions.c)
        ).one()
        return Applied(session_dict(row))


def _session(conn: Connection, session_id: str) -> Any:
    row = driver_sql(conn, "SELECT pk, status, epoch FROM sessions WHERE session_id = ?", (session_id,)).first()
    if row is None:
        raise SessionNotFoundError(session_id)
    return row


def _change_status(
    conn: Connection,
    session: Any,
    session_id: str,
    status: str | None,
    message: str | None,
    now: float,
    values: dict[str, Any] | None = None,
) -> tuple[Any, list[Published]]:
    """Update the session row; a status change is also a stored `training_status` message with its own seq."""
    values = {"updated_at": now, **(values or {})}
    if status is not None:
        values.update(
            status=status,
            ended_at=now if status in ENDED_STATUSES else None,
            last_seq=sessions.c.last_seq + 1,
            message_count=sessions.c.message_count + 1,
        )
    row = conn.execute(update(sessions).where(sessions.c.pk == session.pk).values(values).returning(*sessions.c)).one()
    if status is None:
        return row, []
    data = orjson.dumps({"status": status, "previous_status": session.status, "message": message}).decode()
    received = iso(now)
    [frame] = data_frames("training_status", session_id, row.last_seq, received, [data])
    conn.execute(
        insert(messages).values(
            session_pk=session.pk, seq=row.last_seq, type="training_status", ts=now, received=received, data=data
        )
    )
    return row, [Published(session_id, row.epoch, [(row.last_seq, "training_status", frame)])]


def _wake_if_stale(conn: Connection, session: Any, session_id: str, now: float) -> list[Published]:
    if session.status != "stale":
        return []
    _, published = _change_status(conn, session, session_id, "running", "the engine is sending again", now)
    return published


@dataclass
class UpdateSession(Job):
    session_id: str
    update: SessionUpdate

    def apply(self, conn: Connection, now: float) -> Applied:
        session = _session(conn, self.session_id)
        values = {
            name: orjson.dumps(value).decode()
            for name, value in (("metadata", self.update.metadata), ("tags", self.update.tags))
            if value is not None
        }
        status = self.update.status.value if self.update.status is not None else None
        row, published = _change_status(conn, session, self.session_id, status, self.update.message, now, values)
        return Applied(session_dict(row), published)


@dataclass
class Heartbeat(Job):
    """The engine is alive: keeps a running session from going stale, and wakes a stale one."""

    session_id: str

    def apply(self, conn: Connection, now: float) -> Applied:
        session = _session(conn, self.session_id)
        published = _wake_if_stale(conn, session, self.session_id, now)
        if not published:
            conn.execute(update(sessions).where(sessions.c.pk == session.pk).values(updated_at=now))
        return Applied(True, published)


@dataclass
class MarkStale(Job):
    """Running sessions whose engine has been silent since `cutoff` become `stale`."""

    cutoff: float
    silent_for: float

    def apply(self, conn: Connection, now: float) -> Applied:
        rows = conn.execute(
            select(sessions.c.pk, sessions.c.status, sessions.c.session_id).where(
                sessions.c.status == "running", sessions.c.updated_at < self.cutoff
            )
        ).all()
        published: list[Published] = []
        message = f"no data or heartbeat from the engine for {self.silent_for:g} s"
        for row in rows:
            published += _change_status(conn, row, row.session_id, "stale", message, now)[1]
        return Applied(len(rows), published)


def delete_session_rows(conn: Connection, pk: int) -> None:
    for table in (messages, series_rollups, graphs, graph_points, idempotency_keys):
        conn.execute(delete(table).where(table.c.session_pk == pk))
    conn.execute(delete(sessions).where(sessions.c.pk == pk))


def deleted_frame(session_id: str, epoch: str, reason: str, now: float) -> Published:
    frame = control_frame("session_deleted", session_id, {"reason": reason}, now)
    return Published(session_id, epoch, [(0, "session_deleted", frame)])


@dataclass
class DeleteSession(Job):
    session_id: str

    def apply(self, conn: Connection, now: float) -> Applied:
        session = _session(conn, self.session_id)
        delete_session_rows(conn, session.pk)
        return Applied(True, [deleted_frame(self.session_id, session.epoch, "session deleted", now)])


@dataclass
class DeleteEndedSessions(Job):
    """Retention: remove sessions that ended before `cutoff`."""

    cutoff: float

    def apply(self, conn: Connection, now: float) -> Applied:
        rows = conn.execute(
            select(sessions.c.pk, sessions.c.session_id, sessions.c.epoch).where(
                sessions.c.ended_at.is_not(None), sessions.c.ended_at < self.cutoff
            )
        ).all()
        for row in rows:
            delete_session_rows(conn, row.pk)
        reason = "session expired (retention)"
        return Applied(len(rows), [deleted_frame(row.session_id, row.epoch, reason, now) for row in rows])


@dataclass
class Ingest(Job):
    """Store a batch of one message type; all-or-nothing, applied once per idempotency key."""

    session_id: str
    batch: Batch
    idempotency_key: str | None = None
    body_hash: str = ""  # of the request body as sent: a retry sends the same bytes
    bounds: SessionBounds | None = None

    def apply(self, conn: Connection, now: float) -> Applied:
        session = _session(conn, self.session_id)
        pk, batch, n = session.pk, self.batch, len(self.batch)
        if self.idempotency_key is not None:
            keys = idempotency_keys.c
            done = conn.execute(
                select(keys.first_seq, keys.last_seq, keys.body_hash).where(
                    keys.session_pk == pk, keys.type == batch.message_type, keys.key == self.idempotency_key
                )
            ).first()
            if done is not None:
                if done.body_hash != self.body_hash:
                    raise IdempotencyConflictError(self.idempotency_key, batch.message_type)
                count = done.last_seq - done.first_seq + 1
                return Applied(IngestResult(self.session_id, done.first_seq, done.last_seq, count, duplicate=True))
        if self.bounds is not None:  # before anything is written: a refusal leaves the shared transaction clean
            if batch.columns:
                self.bounds.check_series(conn, pk, session.epoch, batch.columns)
            if batch.graphs:
                self.bounds.check_graphs(conn, pk, session.epoch, (graph.graph_id for graph in batch.graphs))
        woken = _wake_if_stale(conn, session, self.session_id, now)
        sets = "last_seq = last_seq + ?, message_count = message_count + ?, updated_at = ?"
        params: list[Any] = [n, n, now]
        if batch.message_type == "training_metrics":
            sets += ", latest_metrics = ?"
            params.append(batch.data[-1])
            episodes = [e for e in batch.episodes if e is not None]
            if episodes:
                sets += ", current_episode = ?"
                params.append(episodes[-1])
        last = driver_sql(conn, f"UPDATE sessions SET {sets} WHERE pk = ? RETURNING last_seq", (*params, pk))
        last_seq = int(last.scalar_one())
        first_seq = last_seq - n + 1
        timestamps = batch.timestamps or [now] * n
        kind = batch.message_type
        seqs = range(first_seq, last_seq + 1)
        received = iso(now)
        rows = zip(
            repeat(pk), seqs, repeat(kind), batch.episodes, timestamps, repeat(received), batch.data, strict=False
        )
        insert_rows(conn, messages, list(rows))
        if batch.columns:
            update_rollups(conn, pk, first_seq, batch.episodes, timestamps, batch.columns)
        for graph in batch.graphs:
            _merge_graph(conn, pk, graph, now)
        if self.idempotency_key is not None:
            conn.execute(
                insert(idempotency_keys).values(
                    session_pk=pk,
                    type=kind,
                    key=self.idempotency_key,
                    body_hash=self.body_hash,
                    first_seq=first_seq,
                    last_seq=last_seq,
                )
            )
        frames = FrameRun(kind, self.session_id, first_seq, received, batch.data)
        published = Published(self.session_id, session.epoch, frames)
        return Applied(IngestResult(self.session_id, first_seq, last_seq, n, duplicate=False), [*woken, published])


def _merge_graph(conn: Connection, pk: int, item: PerformanceGraphData, now: float) -> None:
    """Append the update's points and merge its description (labels from the latest update that has them,
    metrics in first-seen order, the latest max_points). Nothing already stored is read or rewritten, so an
    update costs the same for a graph of ten points or of a hundred thousand."""
    where = (graphs.c.session_pk == pk, graphs.c.graph_id == item.graph_id)
    stored = conn.execute(select(graphs.c.meta, graphs.c.untrimmed).where(*where)).first()
    meta = orjson.loads(stored.meta) if stored is not None else {"title": None, "y_label": None, "metrics": []}
    for key in ("title", "y_label"):
        if getattr(item, key) is not None:
            meta[key] = getattr(item, key)
    meta["metrics"] = list(dict.fromkeys([*meta["metrics"], *item.metrics]))
    meta["max_points"] = item.max_points
    to_json = GraphPoint.__pydantic_serializer__.to_json
    rows = [
        (pk, item.graph_id, metric, to_json(point).decode())
        for metric, points in item.data_points.items()
        for point in points[-item.max_points :]
    ]
    if rows:
        driver_sql(conn, _insert_points_sql(), rows)
    untrimmed = (stored.untrimmed if stored is not None else 0) + len(rows)
    if untrimmed > item.max_points:  # amortised: a trim per max_points points appended
        _trim_graph(conn, pk, item.graph_id, meta["metrics"], item.max_points)
        untrimmed = 0
    values = {"meta": orjson.dumps(meta).decode(), "untrimmed": untrimmed, "updated_at": now}
    if stored is None:
        conn.execute(insert(graphs).values(session_pk=pk, graph_id=item.graph_id, **values))
    else:
        conn.execute(update(graphs).where(*where).values(values))


@functools.cache
def _insert_points_sql() -> str:
    return "INSERT INTO graph_points (session_pk, graph_id, metric, point) VALUES (?, ?, ?, ?)"


def _trim_graph(conn: Connection, pk: int, graph_id: str, metrics: list[str], keep: int) -> None:
    """Delete each series' points older than its newest `keep`."""
    p = graph_points.c
    for metric in metrics:
        series = (p.session_pk == pk, p.graph_id == graph_id, p.metric == metric)
        oldest_kept = conn.execute(select(p.id).where(*series).order_by(p.id.desc()).limit(1).offset(keep - 1)).scalar()
        if oldest_kept is not None:
            conn.execute(delete(graph_points).where(*series, p.id < oldest_kept))
