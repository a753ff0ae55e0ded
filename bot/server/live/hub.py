"""Per-instance fan-out: broker → sessions → spectators, in seq order, never waiting for a spectator.

Each frame arrives from the broker once per instance, already encoded, and the same string object is
offered to every spectator's bounded queue (encode once). There's no backpressure toward ingest: a
slow spectator loses its oldest frames and is told so (see spectator.py).

Incarnations: a session id that is deleted and created again is another incarnation (epoch). Delivery
state belongs to one: the `session_deleted` frame (or a spectator of a newer incarnation joining) retires
the old state, whose spectators are closed with 4410 whenever they go, and the new incarnation starts
fresh, so its seq 1, 2, 3 are never taken for duplicates of the old one's.

Order: the hub remembers the last seq it delivered per session. A frame that arrives ahead of a gap
waits `gap_wait` seconds for the missing ones and then the gap is read from the store; a frame at or
below the delivered seq is a duplicate and dropped. A periodic look at each watched session's last
seq in the store catches frames the broker lost at the tail (crash between commit and publish), and its
epoch an incarnation deleted while the broker lost its `session_deleted` frame: a repair reads only the
incarnation its spectators watch.

Subscribing: the first spectator of a session subscribes to its channel and reads the session's last seq,
from which the hub delivers. A subscribe the broker refuses (Redis away) is logged and tried again by the
watchdog; meanwhile the session's spectators get its new frames from the store by the same periodic look,
never what was stored before they joined.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Self

from bot.frames import control_frame
from bot.server.broker import Broker, BrokerUnavailableError, channel_for, parse_channel
from bot.server.live.closes import CLOSE_GOING_AWAY, CLOSE_SESSION_DELETED, CLOSE_TOO_MANY, CLOSE_TRY_AGAIN_LATER
from bot.server.live.direct import WireFrames
from bot.server.live.spectator import CONTROL, Spectator
from bot.server.supervisor import Supervisor
from bot.server.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

# (session id, epoch, after seq, limit) -> that incarnation's stored frames, or None once it is gone
ReadAfter = Callable[[str, str, int, int], Awaitable[list[tuple[int, str, str]] | None]]
# session ids -> (last seq, epoch) of each that exists
LastSeqs = Callable[[list[str]], Awaitable[dict[str, tuple[int, str]]]]

REPAIR_PAGE = 1000
ANNOUNCE_LIMIT = 100  # spectators of one session up to which each join and leave is announced


class HubFullError(Exception):
    """A spectator the hub will not take: `code` is the close code, `error` the error message's code."""

    def __init__(self, code: int, reason: str, error: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.error = error


@dataclass
class _Watched:
    incarnation: tuple[str, str]  # (created_at, epoch) of the session these spectators watch
    spectators: dict[str, Spectator] = field(default_factory=dict)
    delivered: int = -1  # -1 until the first read of the store's last seq
    pending: dict[int, tuple[str, str]] = field(default_factory=dict)
    repair: asyncio.Task[None] | None = None
    start: asyncio.Task[None] | None = None  # the first spectator's subscribe and read of the last seq
    subscribed: bool = False  # False while the broker refuses the subscribe: the watchdog tries again
    recount: bool = False  # the count changed while too many watch for one message per join and leave


class Hub:
    def __init__(
        self,
        broker: Broker,
        *,
        read_after: ReadAfter,
        last_seqs: LastSeqs,
        max_per_session: int,
        max_total: int,
        slow_timeout: float,
        gap_wait: float = 0.05,
        pending_limit: int = 10000,
        repair_interval: float = 1.0,
        announce_limit: int = ANNOUNCE_LIMIT,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._broker = broker
        self._read_after = read_after
        self._last_seqs = last_seqs
        self._sessions: dict[str, _Watched] = {}
        self.max_per_session = max_per_session
        self.max_total = max_total
        self.slow_timeout = slow_timeout
        self.gap_wait = gap_wait
        self.pending_limit = pending_limit
        self.repair_interval = repair_interval
        self.announce_limit = announce_limit
        self.total = 0
        self.left = 0  # spectators that have gone, ever (bot/server/gc_pauses.py reclaims their objects)
        self.dropped_by_gone = 0  # frames dropped for spectators that have left
        self._watching: dict[str, _Watched] = {}  # spectator id -> its incarnation's state, retired or not
        self._gone = asyncio.Event()  # set whenever a spectator leaves (shutdown waits on it)
        self._tasks: list[asyncio.Task[None]] = []
        self.supervisor = supervisor or Supervisor()
        self._resubscribe: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._tasks = [
            self.supervisor.spawn("hub.consume", self._consume),
            self.supervisor.spawn("hub.watchdog", self._watchdog),
        ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close_all()
        for watched in self._sessions.values():
            for task in (watched.repair, watched.start):
                if task is not None:
                    task.cancel()
        await self.supervisor.stop(self._tasks)
        await cancel_and_wait([self._resubscribe])

    def close_all(self) -> None:
        """Ask every spectator to go with 1001 (server shutting down); one that cannot be told in time is
        cut off (its connection aborted) by its own timer."""
        for spectator in self._everyone():
            spectator.request_close(CLOSE_GOING_AWAY, "server shutting down")

    async def shutdown(self, grace: float) -> None:
        """Close every spectator with 1001 and wait until they are gone, for at most `grace` seconds; then
        cut off the ones left (peers that stopped reading), so that shutdown never waits on a client."""
        self.close_all()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                while self._watching:
                    self._gone.clear()
                    await self._gone.wait()
        for spectator in self._everyone():
            if spectator.cut_off is not None:
                spectator.cut_off()

    def _everyone(self) -> list[Spectator]:
        """Every registered spectator, of current and retired incarnations."""
        return [watched.spectators[spectator_id] for spectator_id, watched in self._watching.items()]

    # -- spectators ---------------------------------------------------------------------------------

    def count(self, session_id: str) -> int:
        watched = self._sessions.get(session_id)
        return len(watched.spectators) if watched else 0

    def counts(self) -> dict[str, int]:
        return {session_id: len(w.spectators) for session_id, w in self._sessions.items()}

    def frames_dropped(self) -> int:
        """Frames dropped for slow spectators since start: those gone, and those still here."""
        here = sum(s.queue.total_dropped for w in self._sessions.values() for s in w.spectators.values())
        return self.dropped_by_gone + here

    def deepest_queue(self) -> int:
        """The most frames any spectator has waiting: memory stays within max_backlog * BURST_FACTOR."""
        return max((len(s.queue.items) for w in self._sessions.values() for s in w.spectators.values()), default=0)

    def room_limit(self, max_spectators: int | None) -> int | None:
        """A room's max_spectators as add() enforces it: no more than max_per_session (a room stored before that
        setting was lowered keeps its number in the store). None: the session is no room."""
        return None if max_spectators is None else min(max_spectators, self.max_per_session)

    def add(self, spectator: Spectator, limit: int | None = None) -> None:
        """Register a spectator, or raise HubFullError when a connection limit is reached.

        `limit` is the session's own (a room's max_spectators); the server-wide per-session limit applies too.
        """
        if self.total >= self.max_total:
            raise HubFullError(
                CLOSE_TRY_AGAIN_LATER,
                f"server full: {self.max_total} spectators at most; try again later",
                "server_full",
            )
        session_id = spectator.session_id
        watched = self._sessions.get(session_id)
        if watched is not None and watched.incarnation != spectator.incarnation:
            if spectator.incarnation < watched.incarnation:
                reason = "the session was deleted and created again while connecting; connect again"
                raise HubFullError(CLOSE_SESSION_DELETED, reason, "session_deleted")
            self._retire(session_id, watched)  # its `session_deleted` frame was lost (a broker restart)
            watched = None
        allowed = min(self.max_per_session, limit) if limit else self.max_per_session
        if watched is not None and len(watched.spectators) >= allowed:
            raise HubFullError(
                CLOSE_TOO_MANY, f"session full: {allowed} spectators at most for {session_id!r}", "session_full"
            )
        if watched is None:
            watched = self._sessions[session_id] = _Watched(spectator.incarnation)
        watched.spectators[spectator.id] = spectator
        self._watching[spectator.id] = watched
        self.total += 1
        self._announce(spectator, "joined")

    async def watch(self, spectator: Spectator) -> None:
        """Make sure this instance receives the session's frames; the first spectator pays for it, the ones
        joining meanwhile wait for the same start. Raises what reading the last seq raised (the store is away);
        the next spectator then tries again."""
        watched = self._watching[spectator.id]
        if watched.delivered >= 0:
            return
        if watched.start is None or watched.start.done():
            watched.start = asyncio.create_task(self._start(spectator.session_id, watched), name="tms-hub-start")
        await asyncio.shield(watched.start)  # a spectator that leaves does not cancel the others' start

    async def _start(self, session_id: str, watched: _Watched) -> None:
        await self._subscribe(session_id, watched)
        # Read after subscribing: anything committed later reaches us through the broker or a repair. Never
        # guessed: delivering from 0 would send every spectator the whole session again, 1,000 frames a turn.
        last_seq = self._last_seq_of(session_id, watched, await self._last_seqs([session_id]))
        if last_seq is None:
            return
        watched.delivered = last_seq
        self._drain_pending(session_id, watched)
        self._settle(watched)

    async def _subscribe(self, session_id: str, watched: _Watched, retry: bool = False) -> None:
        """Subscribe to the incarnation's channel. A refusal is logged (a retry's only once it works), not
        raised: the spectators are served from the store meanwhile, and the watchdog tries again."""
        channel = channel_for(session_id, watched.incarnation[1])
        try:
            await self._broker.subscribe(channel)
        except BrokerUnavailableError as exc:
            if not retry:
                logger.warning(
                    "hub: %s; spectators of session %r get its frames from the store until subscribing again works",
                    exc,
                    session_id,
                    extra={"session_id": session_id},
                )
            watched.subscribed = False
            return
        if retry:
            logger.info("hub: subscribed to session %r again", session_id, extra={"session_id": session_id})
        watched.subscribed = True
        if self._sessions.get(session_id) is not watched:
            with contextlib.suppress(BrokerUnavailableError):  # everyone left meanwhile, or it was retired
                await self._broker.unsubscribe(channel)

    async def remove(self, spectator: Spectator) -> None:
        watched = self._watching.pop(spectator.id, None)
        if watched is None or watched.spectators.pop(spectator.id, None) is None:
            return
        self.total -= 1
        self.left += 1
        self.dropped_by_gone += spectator.queue.total_dropped
        self._gone.set()
        session_id = spectator.session_id
        current = self._sessions.get(session_id) is watched
        if watched.spectators:
            if current:
                self._announce(spectator, "left")
            return
        if current:
            del self._sessions[session_id]
            for task in (watched.repair, watched.start):
                if task is not None:
                    task.cancel()
        channel = channel_for(session_id, watched.incarnation[1])  # a retired incarnation's too: its own
        try:
            await self._broker.unsubscribe(channel)
            if self._rejoined(session_id, watched) is not None:  # someone joined it while we unsubscribed
                await self._broker.subscribe(channel)
        except BrokerUnavailableError as exc:
            # Nothing to tell the spectator that left; one still watching is repaired from the store, and its
            # subscription is made again by the watchdog.
            logger.warning("hub: %s (spectator %s of session %r left)", exc, spectator.id, session_id)
            if (rejoined := self._rejoined(session_id, watched)) is not None:
                rejoined.subscribed = False

    def _rejoined(self, session_id: str, left: _Watched) -> _Watched | None:
        """The state of spectators that joined the incarnation `left` was the state of, after it was dropped."""
        watched = self._sessions.get(session_id)
        return watched if watched is not None and watched.incarnation == left.incarnation else None

    def _retire(self, session_id: str, watched: _Watched) -> None:
        """The incarnation is gone: its spectators are closed, and its state no longer takes frames."""
        del self._sessions[session_id]
        if watched.repair is not None:
            watched.repair.cancel()
        for spectator in watched.spectators.values():
            spectator.request_close(CLOSE_SESSION_DELETED, "session deleted")

    def _last_seq_of(self, session_id: str, watched: _Watched, last: dict[str, tuple[int, str]]) -> int | None:
        """The store's last seq of this state's incarnation, from `last` (session id -> (last seq, epoch)).
        None when that incarnation is gone: the session was deleted (and maybe created again) while its
        `session_deleted` frame was lost (the broker away), and the state is retired then."""
        found = last.get(session_id)
        if found is not None and found[1] == watched.incarnation[1]:
            return found[0]
        self._incarnation_gone(session_id, watched)
        return None

    def _incarnation_gone(self, session_id: str, watched: _Watched) -> None:
        """The incarnation is gone from the store: its spectators are closed with 4410, never fed another's
        seqs as if they followed their own."""
        if self._sessions.get(session_id) is watched:
            self._retire(session_id, watched)

    def _settle(self, watched: _Watched) -> None:
        """After a burst of offers: bound every queue, evict spectators that stayed behind too long."""
        now = asyncio.get_running_loop().time()
        wire = WireFrames()  # the burst's frames, framed once for all of them
        for spectator in watched.spectators.values():
            spectator.settle(now, self.slow_timeout, wire)

    def _settle_behind(self, watched: _Watched) -> None:
        """The watchdog's pass: only a spectator with frames still queued can be behind. Settling every
        one of 10,000 idle spectators held the event loop for 6-12 ms, once a second."""
        behind = [spectator for spectator in watched.spectators.values() if spectator.queue.items]
        now = asyncio.get_running_loop().time()
        wire = WireFrames()
        for spectator in behind:
            spectator.settle(now, self.slow_timeout, wire)

    def _announce(self, spectator: Spectator, event: str) -> None:
        """Tell the others someone joined or left. Past `announce_limit` spectators, a join would cost a
        message to each of them (half a million for a thousand joining), so the count is sent once per
        `repair_interval` instead, as event `count` (see _recount)."""
        count = self.count(spectator.session_id)
        watched = self._sessions[spectator.session_id]
        if count > self.announce_limit:
            watched.recount = True
            return
        data = {
            "event": event,
            "spectator_id": spectator.id,
            "user_name": spectator.user_name,
            "spectator_count": count,
        }
        frame = control_frame("connection_status", spectator.session_id, data)
        for other in watched.spectators.values():
            if other is not spectator:
                other.offer(CONTROL, "connection_status", frame)
        self._settle(watched)

    def _recount(self) -> None:
        for session_id, watched in self._sessions.items():
            if watched.recount:
                watched.recount = False
                data = {"event": "count", "spectator_count": len(watched.spectators)}
                frame = control_frame("connection_status", session_id, data)
                for spectator in watched.spectators.values():
                    spectator.offer(CONTROL, "connection_status", frame)
                self._settle(watched)

    # -- frames -------------------------------------------------------------------------------------

    async def _consume(self) -> None:
        async for channel, frames in self._broker.events():
            try:
                session_id, epoch = parse_channel(channel)
                watched = self._sessions.get(session_id)
                if watched is None or watched.incarnation[1] != epoch:
                    continue  # another incarnation's (a retired one's, unsubscribing): never this one's seqs
                for seq, message_type, frame in frames:
                    self._dispatch(session_id, watched, seq, message_type, frame)
                if self._sessions.get(session_id) is watched:
                    self._settle(watched)
            except Exception:
                logger.exception("hub: skipped a frame on %s", channel)

    def _dispatch(self, session_id: str, watched: _Watched, seq: int, message_type: str, frame: str) -> None:
        if self._sessions.get(session_id) is not watched:
            return  # retired by an earlier frame of the same message
        if seq == CONTROL:
            self._control(session_id, watched, message_type, frame)
        elif watched.delivered < 0 or seq > watched.delivered + 1:
            if len(watched.pending) < self.pending_limit:
                watched.pending[seq] = (message_type, frame)
            # else: dropped here, read back from the store by the repair
            if watched.delivered >= 0:
                self._schedule_repair(session_id, watched, self.gap_wait)
        elif seq == watched.delivered + 1:
            self._deliver(watched, seq, message_type, frame)
            if watched.pending:
                self._drain_pending(session_id, watched)

    def _control(self, session_id: str, watched: _Watched, message_type: str, frame: str) -> None:
        if message_type == "session_deleted":
            self._retire(session_id, watched)
            return
        for spectator in watched.spectators.values():
            spectator.offer(CONTROL, message_type, frame)

    def _deliver(self, watched: _Watched, seq: int, message_type: str, frame: str) -> None:
        watched.delivered = seq
        for spectator in watched.spectators.values():
            spectator.offer(seq, message_type, frame)

    def _drain_pending(self, session_id: str, watched: _Watched) -> None:
        for seq in [s for s in watched.pending if s <= watched.delivered]:
            del watched.pending[seq]
        while (item := watched.pending.pop(watched.delivered + 1, None)) is not None:
            self._deliver(watched, watched.delivered + 1, *item)
        if watched.pending:
            self._schedule_repair(session_id, watched, self.gap_wait)

    def _schedule_repair(self, session_id: str, watched: _Watched, delay: float) -> None:
        if watched.repair is None or watched.repair.done():
            watched.repair = asyncio.create_task(self._repair(session_id, watched, delay))

    async def _repair(self, session_id: str, watched: _Watched, delay: float) -> None:
        """Read what the broker did not bring (yet) from the store, the same path as `since=` replay."""
        if delay:
            await asyncio.sleep(delay)
        try:
            while self._sessions.get(session_id) is watched:
                self._drain_pending(session_id, watched)
                rows = await self._read_after(session_id, watched.incarnation[1], watched.delivered, REPAIR_PAGE)
                if rows is None:
                    self._incarnation_gone(session_id, watched)
                    return
                for seq, message_type, frame in rows:
                    if seq == watched.delivered + 1:
                        self._deliver(watched, seq, message_type, frame)
                for seq in [s for s in watched.pending if s <= watched.delivered]:
                    del watched.pending[seq]
                self._settle(watched)
                if len(rows) < REPAIR_PAGE and not watched.pending:
                    return
                if not rows:
                    await asyncio.sleep(self.gap_wait or 0.01)
        except Exception:
            logger.exception("hub: repair of session %r failed; the watchdog will try again", session_id)

    async def _subscribe_again(self) -> None:
        for session_id, watched in list(self._sessions.items()):
            if not watched.subscribed and watched.delivered >= 0 and self._sessions.get(session_id) is watched:
                await self._subscribe(session_id, watched, retry=True)

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(self.repair_interval)
            self._recount()
            for current in list(self._sessions.values()):
                self._settle_behind(current)  # one that stays behind is closed even when no new data comes
            refused = any(not w.subscribed and w.delivered >= 0 for w in self._sessions.values())
            if refused and (self._resubscribe is None or self._resubscribe.done()):
                # A task of its own: while the broker is away each try takes its timeout, and the repairs below
                # are then the spectators' only feed.
                self._resubscribe = asyncio.create_task(self._subscribe_again(), name="tms-hub-resubscribe")
            ready = {sid: w for sid, w in self._sessions.items() if w.delivered >= 0}
            if not ready:
                continue
            try:
                last = await self._last_seqs(list(ready))
            except Exception:
                logger.exception("hub: reading last seqs failed")
                continue
            for session_id, watched in ready.items():
                if self._sessions.get(session_id) is not watched:
                    continue  # retired, or left, while the store was read
                last_seq = self._last_seq_of(session_id, watched, last)
                if last_seq is not None and last_seq > watched.delivered:
                    self._schedule_repair(session_id, watched, 0)
