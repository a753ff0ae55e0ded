"""The answer's deadline of bot/server/edge/http_guard.py, with a fake write buffer: a stall is no shrinking
between two looks, whatever the answer's size or how long it has taken."""

from __future__ import annotations

import asyncio

from bot.server.edge.http_guard import SendDeadline
from tests.conftest import TIMEOUT

SECONDS = 0.01


class Buffer:
    """A write buffer that shrinks by 1,000 bytes at each of its first `shrinking` looks, then holds still."""

    def __init__(self, size: int, shrinking: int) -> None:
        self.size = size
        self.shrinking = shrinking
        self.looks = 0

    def __call__(self) -> int:
        self.looks += 1
        if 1 < self.looks <= self.shrinking + 1:  # the first call is the snapshot taken when writing pauses
            self.size -= 1000
        return self.size


async def test_a_buffer_that_keeps_shrinking_is_never_a_stall_and_one_that_stops_is() -> None:
    """Progress at every look re-arms the deadline; the first look without progress calls on_stall, once."""
    stalled = asyncio.Event()
    buffer = Buffer(1_000_000, shrinking=5)
    deadline = SendDeadline(asyncio.get_running_loop(), SECONDS, buffer, stalled.set)
    deadline.paused()
    async with asyncio.timeout(TIMEOUT):
        await stalled.wait()
    assert buffer.looks == 1 + 5 + 1  # the snapshot, five looks with progress, the one without
    await asyncio.sleep(SECONDS * 5)
    assert buffer.looks == 7  # nothing is armed after a stall


async def test_resumed_disarms_and_a_second_pause_starts_afresh() -> None:
    """Writing that resumes (the buffer fell below its low-water mark) ends the wait: no stall is called."""
    calls: list[str] = []
    buffer = Buffer(100_000, shrinking=0)
    deadline = SendDeadline(asyncio.get_running_loop(), SECONDS, buffer, lambda: calls.append("stall"))
    deadline.paused()
    deadline.paused()  # a second pause while armed keeps the first snapshot
    deadline.resumed()
    await asyncio.sleep(SECONDS * 5)
    assert calls == [] and buffer.looks == 1
    stalled = asyncio.Event()
    deadline = SendDeadline(asyncio.get_running_loop(), SECONDS, buffer, stalled.set)
    deadline.paused()
    async with asyncio.timeout(TIMEOUT):
        await stalled.wait()
