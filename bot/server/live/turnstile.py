"""A few joins' steps per event-loop turn, so that a reconnect storm's joins cannot hold up the live stream.

A storm's joins wait together on the reads they share (shared_reads.py): when a read is done, every one of
its hundreds of waiters would go on in the same loop turn, and a live push arriving then waited for all of
them. Through the turnstile they go on a few per turn, in the order they came (bot/server/pacing.py).
"""

from __future__ import annotations

import asyncio

from bot.server.pacing import PER_TURN, PerTurn


class Turnstile:
    """`await through()`: at once if fewer than `per_turn` went through in this loop turn, else in a later one."""

    def __init__(self, per_turn: int = PER_TURN) -> None:
        self._pacing = PerTurn(per_turn)

    async def through(self) -> None:
        waiter: asyncio.Future[None] | None = None

        def go() -> bool:  # in a later turn, when the waiter is made
            if waiter is None or waiter.done():  # it left meanwhile (cancelled): no place taken
                return False
            waiter.set_result(None)
            return True

        if not self._pacing.now_or_later(go):
            waiter = asyncio.get_running_loop().create_future()
            await waiter
