"""Garbage collection without full-heap pauses while spectators pile up.

CPython's collector walks every tracked object of the oldest generation once that generation has grown
by a quarter. A spectator's connection is about 200 tracked objects (uvicorn's protocol, the ASGI
stack's coroutines, its tasks and queues), so 10,000 spectators are 2 million objects, and each
full collection while they join stopped the process for 0.3 to 1.1 s here (eight of them, 4.8 s in
all, while 10,000 joined): every push of those moments waited, and so did every connection to accept.

Here, once a second, what was made since the last second is collected (cheap: it is all that is not
frozen) and the survivors are frozen (`gc.freeze`): they are never walked again. Live connections
are most of them. What dies later inside a cycle (about 100 objects of each closed connection) is
reclaimed by a full collection (`gc.unfreeze` then `gc.collect`), done only when it pays:

- when the connections closed since the last full collection reach a quarter of those open (their
  cycles are then a fair share of the frozen heap), or
- when the frozen objects have grown fourfold since the last full collection, whatever the cause, so
  that garbage nobody counted stays bounded.

Growth by new connections alone costs one full pause per fourfold growth (CPython's rule: one per quarter).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

running: YoungOnlyCollector | None = None  # the process's collector, once started (gc itself is process-wide)

TICK_SECONDS = 1.0
CLOSED_SHARE = 0.25  # closed connections, as a share of the open ones, that call for a full collection
MIN_CLOSED = 256  # below this many closed, their garbage is too small to be worth a full pause
GROWTH_FACTOR = 4  # frozen objects, as a multiple of those kept by the last full collection, that call for one


@dataclass
class CollectorStats:
    """What /metrics says of the collector (tms_gc_*): a frozen heap that only grows is garbage kept."""

    full_collections: int = 0
    last_full_seconds: float = 0.0
    frozen: int = 0  # objects frozen, counted at the last full collection plus what each tick froze since


class YoungOnlyCollector:
    """Collects what is new once a tick and freezes the rest; `closed()` says how many connections have
    closed so far, `open()` how many are open now (both from the server)."""

    def __init__(self, closed: Callable[[], int], open_now: Callable[[], int]) -> None:
        self._closed, self._open = closed, open_now
        self.stats = CollectorStats()
        self._closed_at_full = closed()
        self._frozen_at_full = 0

    def start(self) -> None:
        """From the start-up heap on, which is frozen with the rest; the process's collector from now on."""
        global running
        running = self
        self.full()

    def tick(self) -> None:
        closed = self._closed() - self._closed_at_full
        grown = self.stats.frozen >= GROWTH_FACTOR * max(self._frozen_at_full, 1)
        if grown or closed >= max(MIN_CLOSED, CLOSED_SHARE * self._open()):
            self.full()
            return
        gc.collect()  # walks only what is not frozen: what the last tick made
        young = len(gc.get_objects(2))  # the survivors, all moved to the oldest generation by the collection
        gc.freeze()
        self.stats.frozen += young

    def full(self) -> None:
        started = time.perf_counter()
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.stats.last_full_seconds = time.perf_counter() - started
        self.stats.full_collections += 1
        self.stats.frozen = self._frozen_at_full = gc.get_freeze_count()
        self._closed_at_full = self._closed()
        logger.debug(
            "full garbage collection: %d objects kept, %.3f s", self.stats.frozen, self.stats.last_full_seconds
        )

    async def run(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            self.tick()
