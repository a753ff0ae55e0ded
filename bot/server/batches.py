"""Ingest bodies become Batches: validated and encoded, in a worker process when there is a core to spare.

Workers are processes of their own (`python -m bot.server.ingest_worker`, talking over pipes), never
multiprocessing's spawned children, which would re-import the user's main script.

Validation and encoding are most of ingest's CPU (pydantic: about 5 µs a point) and they hold the GIL
that the writer thread, the event loop and the spectators need too. A worker process does them on
another core, and what comes back (strings and numbers) unpickles in a fraction of that time. Small
bodies stay in the server process: the round trip to a worker would cost more than they do.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import sys
from asyncio.subprocess import PIPE
from typing import Any, Self

from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from bot.schemas import BotDecisionData, PerformanceGraphData, TrainingMetricsDict
from bot.server.api.bodies import ItemAdapters, parse_items
from bot.server.pipes import HEADER, frame
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


def default_processes() -> int:
    """One worker when the machine has a second core; none on one core, where it would only compete."""
    return 1 if (os.cpu_count() or 1) > 1 else 0


class _Worker:
    """One worker process (bot/server/ingest_worker.py) and its pipes; one request at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.in_flight = False  # a request sent whose answer was not read whole: the pipes are out of step

    @classmethod
    async def start(cls) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.server.ingest_worker", stdin=PIPE, stdout=PIPE
        )
        return cls(process)

    async def read(self, message_type: str, raw: bytes, max_items: int) -> Batch:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.in_flight = True
        self.process.stdin.write(frame((message_type, raw, max_items)))
        await self.process.stdin.drain()
        header = await self.process.stdout.readexactly(HEADER.size)
        kind, value = pickle.loads(await self.process.stdout.readexactly(HEADER.unpack(header)[0]))
        self.in_flight = False
        if kind == "invalid":
            raise RequestValidationError(value)
        if kind == "error":
            raise RuntimeError(f"ingest worker: {value}")
        batch: Batch = value
        return batch

    async def stop(self, timeout: float = 5.0) -> None:
        """End of input lets the worker finish and exit; one that does not within `timeout` is killed."""
        if self.process.returncode is None and self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


class BatchReader:
    """Reads ingest bodies of at most `max_items`; `processes` 0 keeps every body in the server process."""

    def __init__(self, processes: int, max_items: int) -> None:
        self.processes = processes
        self.max_items = max_items
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._workers: list[_Worker] = []
        self._replacing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start the workers now, so that no request waits for their imports."""
        while len(self._workers) < self.processes:
            worker = await _Worker.start()
            self._workers.append(worker)
            self._idle.put_nowait(worker)

    async def close(self) -> None:
        for task in self._replacing:
            task.cancel()
        await asyncio.gather(*self._replacing, return_exceptions=True)
        workers, self._workers = self._workers, []
        await asyncio.gather(*(worker.stop() for worker in workers))

    async def _replace(self, worker: _Worker) -> None:
        self._workers.remove(worker)
        await worker.stop(timeout=0)
        new = await _Worker.start()
        self._workers.append(new)
        self._idle.put_nowait(new)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def read(self, message_type: str, raw: bytes) -> Batch:
        max_items = self.max_items
        if len(raw) <= INLINE_BYTES:
            return read_batch(message_type, raw, max_items)
        if not self._workers:
            return await run_in_threadpool(read_batch, message_type, raw, max_items)
        worker = await self._idle.get()
        try:
            return await worker.read(message_type, raw, max_items)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            # The worker died (killed, out of memory): this body is read here, the next one by a new worker.
            logger.warning("an ingest worker process died (%s); starting a new one", exc)
            return await run_in_threadpool(read_batch, message_type, raw, max_items)
        finally:
            if worker.in_flight:  # died, or this request was cancelled mid-answer: a fresh worker takes over
                task = asyncio.create_task(self._replace(worker), name="tms-ingest-worker-restart")
                self._replacing.add(task)
                task.add_done_callback(self._replacing.discard)
            else:
                self._idle.put_nowait(worker)
