"""A few joins' steps per event-loop turn, so a reconnect storm's joins cannot hold up the live stream.

A storm's joins wait together on the reads they share (shared_reads.py): when a read is done, every one of
its hundreds of waiters would go on in the same loop turn, and a live push arriving then waited for all of
them (0.5 s for 2,000 joins). Through the turnstile they go on a few per turn, in the order they came, and
the live push is served between them. When only a few join at once, nobody waits.
"""

from __future__ import annotations

import asyncio
from collections import deque

PER_TURN = 4


class Turnstile:
    """`await through()`: at once if fewer than `per_turn` went through in this loop turn, else in a later one."""

    def __init__(self, per_turn: int = PER_TURN) -> None:
        self.per_turn = per_turn
        self._passed = 0
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._turn_ends: asyncio.Handle | None = None

    async def through(self) -> None:
        if self._turn_ends is None:  # the first this turn
            self._passed = 0
            self._turn_ends = asyncio.get_running_loop().call_soon(self._next_turn)
        if self._passed < self.per_turn and not self._waiting:
            self._passed += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        await waiter

    def _next_turn(self) -> None:
        self._passed = 0
        while self._waiting and self._passed < self.per_turn:
            waiter = self._waiting.popleft()
            if not waiter.done():  # one that left meanwhile (cancelled) takes no place
                waiter.set_result(None)
                self._passed += 1
        self._turn_ends = asyncio.get_running_loop().call_soon(self._next_turn) if self._waiting else None
