"""Ingest bodies become Batches: validated and encoded, in a worker process when there is a core to spare.

Validation and encoding are most of ingest's CPU (pydantic: about 5 µs a point) and they hold the GIL
that the writer thread, the event loop and the spectators need too. A worker process does them on
another core, and what comes back (strings and numbers) unpickles in a fraction of that time. Small
bodies stay in the server process: the round trip to a worker would cost more than they do.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Self

from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from bot.schemas import BotDecisionData, PerformanceGraphData, TrainingMetricsDict
from bot.server.api.bodies import ItemAdapters, parse_items
from bot.store.batch import Batch, prepare

logger = logging.getLogger(__name__)

ADAPTERS: dict[str, ItemAdapters[Any]] = {
    "training_metrics": ItemAdapters.of(TrainingMetricsDict),  # half the cost of the model
    "bot_decision": ItemAdapters.of(BotDecisionData),
    "graph_update": ItemAdapters.of(PerformanceGraphData),
}
# Bodies up to this size are read on the event loop; larger ones on a worker (process or thread).
INLINE_BYTES = 32_768


def read_batch(message_type: str, raw: bytes, max_items: int) -> Batch:
    """Raises RequestValidationError, naming each bad field; nothing is stored then."""
    return prepare(message_type, parse_items(raw, ADAPTERS[message_type], max_items))


def _read_in_worker(message_type: str, raw: bytes, max_items: int) -> Batch | list[Any]:
    """In the worker process: the batch, or the validation errors as plain data (they pickle; the exception may not)."""
    try:
        return read_batch(message_type, raw, max_items)
    except RequestValidationError as exc:
        return list(exc.errors())


def _exit_with(parent: int) -> None:
    """Runs in each worker: exit once the server is gone, even if it was killed (kill -9 leaves no one to
    close the pool, and an orphan worker would wait on its queue forever)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="tms-parent-watch", daemon=True).start()


def _ready() -> None:
    """Sent to each new worker so that its imports happen at start-up, not on the first request."""


def default_processes() -> int:
    """One worker when the machine has a second core; none on one core, where it would only compete."""
    return 1 if (os.cpu_count() or 1) > 1 else 0


class BatchReader:
    """Reads ingest bodies of at most `max_items`; `processes` 0 keeps every body in the server process."""

    def __init__(self, processes: int, max_items: int) -> None:
        self.processes = processes
        self.max_items = max_items
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start the workers now (spawned, not forked: the server has threads), so no request waits for them."""
        if self.processes and self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(
                self.processes, mp_context=context, initializer=_exit_with, initargs=(os.getpid(),)
            )
            for _ in range(self.processes):
                self._pool.submit(_ready)  # spawns a worker, which imports this module (and pydantic)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.close)

    async def read(self, message_type: str, raw: bytes) -> Batch:
        max_items = self.max_items
        if len(raw) <= INLINE_BYTES:
            return read_batch(message_type, raw, max_items)
        if not self.processes:
            return await run_in_threadpool(read_batch, message_type, raw, max_items)
        self.start()
        assert self._pool is not None
        try:
            result = await asyncio.wrap_future(self._pool.submit(_read_in_worker, message_type, raw, max_items))
        except BrokenProcessPool:
            # A worker died (killed, out of memory): this body is read here, the next one by new workers.
            logger.warning("an ingest worker process died; starting new ones")
            self._pool.shutdown(wait=False)
            self._pool = None
            return await run_in_threadpool(read_batch, message_type, raw, max_items)
        if isinstance(result, list):
            raise RequestValidationError(result)
        return result
