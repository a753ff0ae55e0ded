"""Use cases: the only place that writes. Imports no FastAPI, so the API and tests share it."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from bot.schemas import SessionCreate, SessionUpdate
from bot.server.broker import Broker, channel_for
from bot.server.live.publisher import Publisher
from bot.server.live.recent_reads import RecentReads
from bot.server.relay import Relay
from bot.server.stats import Stats
from bot.store import SessionNotFoundError, Store
from bot.store.batch import Batch
from bot.store.bounds import SessionBounds
from bot.store.queries import (
    SessionState,
    read_export_page,
    read_history,
    read_history_page,
    read_last_seqs,
    read_session_decisions,
    read_session_series,
    read_session_summary,
    read_state,
)
from bot.store.reads import (
    MessageFilter,
    get_session,
    get_session_by_room_or_id,
    list_sessions,
    protected_rooms,
    session_dict,
)
from bot.store.rooms import check_password, hash_password, new_password
from bot.store.writes import (
    CreateSession,
    DeleteEndedSessions,
    DeleteSession,
    Heartbeat,
    Ingest,
    IngestResult,
    MarkStale,
    Published,
    UpdateSession,
)

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class HistoryPage:
    """A history page on its way: its session, its frames' pieces (`relay.items()`) as they are read, and
    `done`, which gives (how many frames, the last one's seq) once they all are."""

    session: dict[str, Any]
    relay: Relay[bytes]
    done: asyncio.Future[tuple[int, int]]

    def close(self) -> None:
        """Whatever is left unread stays unread: the read stops at its next chunk."""
        self.relay.close()
        self.done.add_done_callback(lambda done: done.cancelled() or done.exception())  # seen, not logged


class TrainingService:
    def __init__(self, store: Store, broker: Broker, publisher: Publisher, bounds: SessionBounds | None = None) -> None:
        self.store = store
        self.bounds = bounds or SessionBounds()
        self.broker = broker
        self.publisher = publisher
        self.stats = Stats()
        self.recent = RecentReads()  # the run panel's reads, shared by every page of a session for 2 s
        store.on_commit = self._publish

    def _publish(self, published: list[Published]) -> None:
        # Called by the group commit after the commit, before the requests are answered; hands the frames
        # to the publisher and returns at once: one broker message per job, its frames in seq order.
        self.publisher.submit([(channel_for(item.session_id, item.epoch), item.frames) for item in published])
        for item in published:  # what readers share of the session is out of date (RecentReads)
            self.recent.forget(item.session_id)

    def broker_problem(self) -> str | None:
        """Why live frames may not be going through the broker (spectators then get them from the store)."""
        return self.publisher.problem or self.broker.problem()

    # -- sessions -----------------------------------------------------------------------------------

    async def create_session(self, spec: SessionCreate) -> dict[str, Any]:
        session_id = spec.training_id or f"session-{secrets.token_hex(6)}"
        password = hashed = None
        if spec.room is not None and (spec.room.password_protected or spec.room.password is not None):
            password = spec.room.password or new_password()
            hashed = await asyncio.to_thread(hash_password, password)
        result: dict[str, Any] = await self.store.write(CreateSession(session_id, spec, hashed))
        if password is not None:
            result["room_password"] = password  # shown once, at creation; only its hash is kept
        return result

    async def find_spectated(self, key: str) -> dict[str, Any]:
        """The session a spectator asked for: by room code, or else by session id (a room's code wins: no
        session can take a room's spectators by naming itself after its code)."""
        row = await self.store.read(get_session_by_room_or_id, key)
        if row is None:
            raise SessionNotFoundError(key)
        return {**session_dict(row), "room_password_hash": row.room_password_hash}

    async def room_password_hash(self, session_id: str) -> str | None:
        """The room password hash of a session (None: not a protected room); 404 for no such session."""
        row = await self.store.read(get_session, session_id)
        if row is None:
            raise SessionNotFoundError(session_id)
        stored: str | None = row.room_password_hash
        return stored

    async def check_room_password(self, password: str, stored_hash: str) -> bool:
        return await asyncio.to_thread(check_password, password, stored_hash)

    async def get_session(self, session_id: str) -> dict[str, Any]:
        row = await self.store.read(get_session, session_id)
        if row is None:
            raise SessionNotFoundError(session_id)
        return session_dict(row)

    async def list_sessions(
        self,
        statuses: Sequence[str] | None,
        limit: int,
        offset: int,
        session_id: str | None = None,
        tags: Sequence[str] = (),
    ) -> tuple[list[Any], int]:
        """`session_id`: that one session only (a credential limited to it sees no other); `tags`: the sessions
        with all of them."""
        rows, total, main = await self.store.read(list_sessions, statuses, limit, offset, session_id, tags)
        return [{**session_dict(row), "main_metric": main.get(row.pk)} for row in rows], total

    async def protected_rooms(self, session_ids: Sequence[str]) -> set[str]:
        """Which of these sessions are password-protected rooms."""
        if not session_ids:
            return set()
        found: set[str] = await self.store.read(protected_rooms, session_ids)
        return found

    async def update_session(self, session_id: str, update: SessionUpdate) -> dict[str, Any]:
        result: dict[str, Any] = await self.store.write(UpdateSession(session_id, update))
        return result

    async def delete_session(self, session_id: str) -> None:
        await self.store.write(DeleteSession(session_id))

    async def heartbeat(self, session_id: str) -> None:
        await self.store.write(Heartbeat(session_id))

    async def mark_stale(self, silent_for: float) -> int:
        marked: int = await self.store.write(MarkStale(time.time() - silent_for, silent_for))
        return marked

    async def delete_ended_before(self, cutoff: float) -> int:
        deleted: int = await self.store.write(DeleteEndedSessions(cutoff))
        return deleted

    # -- data ---------------------------------------------------------------------------------------

    async def ingest(
        self, session_id: str, batch: Batch, idempotency_key: str | None, body_hash: str = ""
    ) -> IngestResult:
        """Store a batch; with a key, a retry of the same body is applied once, another body is refused."""
        result: IngestResult = await self.store.write(
            Ingest(session_id, batch, idempotency_key, body_hash, self.bounds)
        )
        if not result.duplicate:
            self.stats.messages_in += result.count
        return result

    async def history(
        self, session_id: str, where: MessageFilter, limit: int
    ) -> tuple[dict[str, Any], list[tuple[int, str, str]]]:
        """A page of stored frames, on the store's bounded pool of big reads."""
        return await self.store.read_heavy(read_history, session_id, where, limit)

    async def history_page(self, session_id: str, where: MessageFilter, limit: int) -> HistoryPage:
        """The session at once, then the page's frames as comma-separated pieces as the database joins them
        (bot/store/joined_frames.py), on a thread of the pool of big reads, all in one read."""
        relay: Relay[Any] = Relay()
        done = asyncio.ensure_future(self.store.read_heavy(read_history_page, session_id, where, limit, relay.put))
        relay.end_with(done)
        page = HistoryPage({}, relay, done)
        try:
            session = await relay.next()
            if session is None:
                await done  # raises why: no such session, or the read failed
                raise RuntimeError("a history read ended without its session")
        except BaseException:
            page.close()
            raise
        page.session = session
        return page

    async def export_page(
        self, session_id: str, where: MessageFilter, limit: int
    ) -> tuple[dict[str, Any], list[str], list[tuple[int, str, str]]]:
        """(session, its metric names, a page of stored frames): what an export streams, a page at a time."""
        return await self.store.read_heavy(read_export_page, session_id, where, limit)

    async def decisions(self, session_id: str, buckets: int, least: int = 1) -> dict[str, Any]:
        """The chosen actions and mean confidence over time, in at most `buckets` of at least `least` decisions
        (bot/store/decisions.py); shared by every reader of the session for 2 s, or until its next commit."""
        read = partial(self.store.read_heavy, read_session_decisions, session_id, buckets, least)
        key = ("decisions", session_id, buckets, least)
        return await self.recent.get(key, read, session_id)  # type: ignore[no-any-return]

    async def summary(self, session_id: str) -> dict[str, Any]:
        """Per metric: count, last, min, max and the mean of the newest 100 points (bot/store/summary.py);
        shared by every reader of the session for 2 s, or until its next commit."""
        read = partial(self.store.read_heavy, read_session_summary, session_id)
        return await self.recent.get(("summary", session_id), read, session_id)  # type: ignore[no-any-return]

    async def state(self, session_id: str, graph_points: int | None = None) -> SessionState:
        """The session as a spectator first sees it; graphs with at most `graph_points` per series."""
        return await self.store.read(read_state, session_id, graph_points)

    async def series(self, session_id: str, metrics: list[str], where: MessageFilter, points: int) -> dict[str, Any]:
        """Per-metric history for charts, downsampled (min/max per bucket) on the pool of big reads."""
        return await self.store.read_heavy(read_session_series, session_id, metrics, where, points)

    async def read_after(
        self, session_id: str, after_seq: int, limit: int, types: list[str] | None = None
    ) -> list[tuple[int, str, str]]:
        """Stored frames after `after_seq` (of `types`, or all): the hub's gap repair and a spectator's replay,
        not queued behind big reads (a reconnect storm is thousands of these at once)."""
        where = MessageFilter(after_seq=after_seq, types=types)
        _, frames = await self.store.read(read_history, session_id, where, limit)
        return frames

    async def read_incarnation_after(
        self, session_id: str, epoch: str, after_seq: int, limit: int
    ) -> list[tuple[int, str, str]] | None:
        """The hub's gap repair: stored frames of the incarnation `epoch` after `after_seq`, read with the
        session's row in one read. None once that incarnation is gone (deleted, maybe created again): its seqs
        say nothing about another incarnation's, whose frames must never follow its own."""
        try:
            session, frames = await self.store.read(read_history, session_id, MessageFilter(after_seq=after_seq), limit)
        except SessionNotFoundError:
            return None
        return frames if session["epoch"] == epoch else None

    async def last_seqs(self, session_ids: list[str]) -> dict[str, tuple[int, str]]:
        """(last seq, epoch) of each watched session that still exists."""
        return await self.store.read(read_last_seqs, session_ids)


__all__ = ["SessionState", "Stats", "TrainingService"]
