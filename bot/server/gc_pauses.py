"""Garbage collection without full-heap pauses while spectators pile up.

CPython's collector walks every tracked object of the oldest generation once that generation has grown
by a quarter. A spectator's connection is about 200 tracked objects (uvicorn's protocol, the ASGI
stack's coroutines, its tasks and queues), so 10,000 spectators are 2 million objects, and each
full collection while they join stopped the process for 0.3 to 1.1 s here (eight of them, 4.8 s in
all, while 10,000 joined): every push of those moments waited, and so did every connection to accept.

Here, once a second, what was made since the last second is collected (cheap: it is all that is not
frozen) and the survivors are frozen (`gc.freeze`): they are never walked again. Live connections
are most of them. What dies later inside a cycle (about 100 objects of each closed connection) is
reclaimed by a full collection (`gc.unfreeze` then `gc.collect`), done only when it pays, and at most
once in ten seconds:

- when the spectators gone since the last full collection reach a quarter of those connected (their
  cycles are then a fair share of the frozen heap; short HTTP connections are not counted: a proxy that
  opens one per request would call for a full pause every few hundred requests),
- when the objects frozen since then (counted as they are frozen, so an upper bound: some have since
  been freed by their reference counts) reach three times those the last one kept, or
- every ten minutes, so that what nobody counted (an HTTP connection's cycles, a file or a socket held
  by one) is never kept for long.

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
GONE_SHARE = 0.25  # spectators gone, as a share of those connected, that call for a full collection
MIN_GONE = 256  # below this many gone, their garbage is too small to be worth a full pause
GROWTH_FACTOR = 4  # frozen objects, as a multiple of those kept by the last full collection, that call for one
MIN_FULL_SECONDS = 10.0  # between two full collections, at least
MAX_FULL_SECONDS = 600.0  # between two full collections, at most


@dataclass
class CollectorStats:
    """What /metrics says of the collector (tms_gc_*)."""

    full_collections: int = 0
    last_full_seconds: float = 0.0
    frozen: int = 0  # kept by the last full collection, plus what each tick froze since (an upper bound)


class YoungOnlyCollector:
    """Collects what is new once a tick and freezes the rest; `gone()` says how many spectators have left
    so far, `connected()` how many are connected now (both from the hub)."""

    def __init__(self, gone: Callable[[], int], connected: Callable[[], int]) -> None:
        self._gone, self._connected = gone, connected
        self.stats = CollectorStats()
        self._gone_at_full = gone()
        self._frozen_at_full = 0
        self._full_at = time.monotonic()

    def start(self) -> None:
        """From the start-up heap on, which is frozen with the rest; the process's collector from now on."""
        global running
        running = self
        self.full()

    def tick(self) -> None:
        since = time.monotonic() - self._full_at
        gone = self._gone() - self._gone_at_full
        grown = self.stats.frozen >= GROWTH_FACTOR * max(self._frozen_at_full, 1)
        due = grown or gone >= max(MIN_GONE, GONE_SHARE * self._connected())
        if since >= MAX_FULL_SECONDS or (due and since >= MIN_FULL_SECONDS):
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
        self._gone_at_full = self._gone()
        self._full_at = time.monotonic()
        logger.debug(
            "full garbage collection: %d objects kept, %.3f s", self.stats.frozen, self.stats.last_full_seconds
        )

    async def run(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self.tick()
            except Exception:  # a bug here must not leave the heap frozen for good without a word
                logger.exception("garbage collection tick failed")

    def stop(self) -> None:
        """The heap back to the collector (frozen cycles are collected at exit), and no longer the process's."""
        global running
        gc.unfreeze()
        if running is self:
            running = None
