"""A few at a time per event-loop turn, so that a burst (a reconnect storm) cannot hold up the live stream.

A turn that runs hundreds of joins' steps, or parses hundreds of new connections' handshakes, makes every
live push arriving meanwhile wait for all of them (0.5-0.9 s for a storm of 2,000). Through PerTurn they
go on a few per turn, in the order they came, with the live stream served between them; when few come at
once, nobody waits. Used by the HTTP protocol's intake (edge/http_guard.py) and the joins' turnstile
(live/turnstile.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable

logger = logging.getLogger(__name__)

PER_TURN = 4


class PerTurn:
    """`now_or_later(go)`: True if the caller may go on now (fewer than `per_turn` went this turn); else
    False, and `go()` is called in a later turn, in order. `go()` returns whether it used its place (one
    that left meanwhile does not)."""

    def __init__(self, per_turn: int = PER_TURN) -> None:
        self.per_turn = per_turn
        self._gone = 0
        self._waiting: deque[Callable[[], bool]] = deque()
        self._turn_ends: asyncio.Handle | None = None

    def now_or_later(self, go: Callable[[], bool]) -> bool:
        if self._turn_ends is None:  # the first this turn
            self._gone = 0
            self._turn_ends = asyncio.get_running_loop().call_soon(self._next_turn)
        if self._gone < self.per_turn and not self._waiting:
            self._gone += 1
            return True
        self._waiting.append(go)
        return False

    def _next_turn(self) -> None:
        self._gone = 0
        try:
            while self._waiting and self._gone < self.per_turn:
                go = self._waiting.popleft()
                try:
                    self._gone += go()
                except Exception:  # a bug there must cost that one only, not every later one
                    logger.exception("a paced step failed")
        finally:
            self._turn_ends = asyncio.get_running_loop().call_soon(self._next_turn) if self._waiting else None
