"""Reads that many spectators of one session need at once, done once for all who asked meanwhile.

A reconnect storm (an instance died; its spectators come back here with `since`) is thousands of joins
to the same few sessions, each needing the session, a snapshot and a replay: as separate reads they
queue on the database threads for tens of seconds. Here a read of a key is in flight at most once;
whoever asks while it runs waits for the next one, which starts when it ends and serves all of them.
Joining only a read that starts after one asked keeps the join's promise: its snapshot and replay are
read after it registered with the hub, so they meet the live stream with no gap.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bot.server.live.direct import wire_frame
from bot.server.live.turnstile import Turnstile
from bot.server.services import SessionState, TrainingService

K = TypeVar("K", bound=Hashable)
A = TypeVar("A")
T = TypeVar("T")

Frames = list[tuple[int, str, str]]


class ReplayPage:
    """One replay read, shared by every spectator of the storm that asked for it: each takes the frames after
    its own `since`, and their WebSocket bytes are framed once for all of them (the tail of one buffer)."""

    __slots__ = ("frames", "_seqs", "_wire", "_offsets")

    def __init__(self, frames: Frames) -> None:
        self.frames = frames
        self._seqs = [seq for seq, _type, _frame in frames]
        self._wire: bytes | None = None
        self._offsets: list[int] = []

    def after(self, seq: int) -> Frames:
        return self.frames[bisect.bisect_right(self._seqs, seq) :]

    def wire_after(self, seq: int) -> memoryview:
        """The framed bytes of `after(seq)`, as one buffer."""
        if self._wire is None:
            wires = [wire_frame(frame) for _seq, _type, frame in self.frames]
            self._offsets = [0, *itertools.accumulate(map(len, wires))]
            self._wire = b"".join(wires)
        return memoryview(self._wire)[self._offsets[bisect.bisect_right(self._seqs, seq)] :]


@dataclass
class _Batch(Generic[A]):
    args: list[A] = field(default_factory=list)
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class SharedRead(Generic[K, A, T]):
    """`read(key, arg)`: one `fetch(key, [arg, ...])` for everyone who asked for `key` while the previous
    fetch of it was in flight (or for this caller alone when none was)."""

    def __init__(self, fetch: Callable[[K, list[A]], Awaitable[T]]) -> None:
        self._fetch = fetch
        self._waiting: dict[K, _Batch[A]] = {}
        self._running: set[K] = set()
        self.fetches = 0

    async def read(self, key: K, arg: A) -> T:
        batch = self._waiting.get(key)
        if batch is None:
            batch = self._waiting[key] = _Batch()
            if key not in self._running:
                self._start(key)
        batch.args.append(arg)
        result: T = await asyncio.shield(batch.future)  # a caller that goes away cancels nobody's read
        return result

    def _start(self, key: K) -> None:
        batch = self._waiting.pop(key)
        self._running.add(key)
        self.fetches += 1
        asyncio.create_task(self._run(key, batch))

    async def _run(self, key: K, batch: _Batch[A]) -> None:
        try:
            batch.future.set_result(await self._fetch(key, batch.args))
        except Exception as exc:
            batch.future.set_exception(exc)
            batch.future.exception()  # retrieved here: every caller may have gone away meanwhile
        finally:
            self._running.discard(key)
            if key in self._waiting:
                self._start(key)


class JoinReads:
    """The three reads of a spectator's join, shared: the session, its snapshot, and replay pages."""

    def __init__(self, service: TrainingService, snapshot_graph_points: int, replay_page: int) -> None:
        self.page = replay_page

        async def find(key: str, _: list[None]) -> dict[str, Any]:
            return await service.find_spectated(key)

        async def state(session_id: str, _: list[None]) -> SessionState:
            return await service.state(session_id, snapshot_graph_points)

        async def replay(key: tuple[str, tuple[str, ...]], afters: list[int]) -> ReplayPage:
            session_id, types = key
            return ReplayPage(await service.read_after(session_id, min(afters), replay_page, list(types)))

        self._find = SharedRead(find)
        self._state = SharedRead(state)
        self._replay = SharedRead(replay)
        self.turnstile = Turnstile()  # a shared read's waiters go on a few per loop turn (turnstile.py)

    async def find_spectated(self, key: str) -> dict[str, Any]:
        found = await self._find.read(key, None)
        await self.turnstile.through()
        return found

    async def state(self, session_id: str) -> SessionState:
        state = await self._state.read(session_id, None)
        await self.turnstile.through()
        return state

    async def replay_page(self, session_id: str, types: list[str], after: int) -> tuple[ReplayPage, bool]:
        """A page read from `after` or before it (its `after(after)` are this caller's), and whether there may
        be more after it."""
        page = await self._replay.read((session_id, tuple(types)), after)
        await self.turnstile.through()
        return page, len(page.frames) == self.page
