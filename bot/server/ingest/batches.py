"""Ingest bodies become Batches: validated and encoded, in a worker process when there is a core to spare.

Workers are processes of their own (`python -m bot.server.ingest.worker`, talking over pipes), never
multiprocessing's spawned children, which would re-import the user's main script.

Validation and encoding are most of ingest's CPU (pydantic: about 5 µs a point) and they hold the GIL
that the writer thread, the event loop and the spectators need too. A worker process does them on
another core, and what comes back (strings and numbers) unpickles in a fraction of that time. Small
bodies stay in the server process: the round trip to a worker would cost more than they do.

A worker that dies is replaced. One that cannot be (no process can be started) leaves its place to a
thread of the server process, which reads the bodies that would have gone to it, and a new worker is
tried again once RESTART_DELAY has passed (doubling up to MAX_RESTART_DELAY): no body ever waits for a
worker that will not come.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from bot.server.ingest.pipes import HEADER, READY, frame
from bot.store.batch import Batch, prepare

logger = logging.getLogger(__name__)

ADAPTERS: dict[str, ItemAdapters[Any]] = {
    "training_metrics": ItemAdapters.of(TrainingMetricsDict),  # half the cost of the model
    "bot_decision": ItemAdapters.of(BotDecisionData),
    "graph_update": ItemAdapters.of(PerformanceGraphData),
}
# Bodies up to this size are read on the event loop; larger ones on a worker (process or thread).
INLINE_BYTES = 32_768
# A worker's answer for the largest body takes a second or two; one that takes this long is stuck.
READ_TIMEOUT = 60.0
RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 60.0


def read_batch(message_type: str, raw: bytes, max_items: int) -> Batch:
    """Raises RequestValidationError, naming each bad field; nothing is stored then."""
    return prepare(message_type, parse_items(raw, ADAPTERS[message_type], max_items))


def default_processes() -> int:
    """One worker when the machine has a second core; none on one core, where it would only compete."""
    return 1 if (os.cpu_count() or 1) > 1 else 0


class _Worker:
    """One worker process (bot/server/ingest/worker.py) and its pipes; one request at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.in_flight = False  # a request sent whose answer was not read whole: the pipes are out of step

    @classmethod
    async def start(cls) -> _Worker:
        """A worker that has done its imports (about a second of CPU): until then the server is not ready,
        so that its first clients, and its first body for a worker, do not share the machine with them."""
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.server.ingest.worker", stdin=PIPE, stdout=PIPE
        )
        worker = cls(process)
        try:
            assert process.stdout is not None
            header = await asyncio.wait_for(process.stdout.readexactly(HEADER.size), READ_TIMEOUT)
            first = pickle.loads(await process.stdout.readexactly(HEADER.unpack(header)[0]))
            if first != READY:
                raise RuntimeError(f"an ingest worker began with {first!r}, not {READY!r}")
        except BaseException:
            await worker.stop(timeout=0)
            raise
        return worker

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
            with contextlib.suppress(ProcessLookupError):  # it died meanwhile, not yet reaped
                self.process.kill()
            await self.process.wait()


class BatchReader:
    """Reads ingest bodies of at most `max_items`; `processes` 0 keeps every body in the server process.

    `_idle` holds one entry per place in the pool that is free: a worker, or None for a place whose worker
    could not be started (the body is read in a thread). A place in use or being refilled is not in it, so
    every place comes back and a request waiting for one is never forgotten."""

    def __init__(self, processes: int, max_items: int) -> None:
        self.processes = processes
        self.max_items = max_items
        self._idle: asyncio.Queue[_Worker | None] = asyncio.Queue()
        self._workers: list[_Worker] = []
        self._replacing: set[asyncio.Task[None]] = set()
        self._restart_delay = RESTART_DELAY
        self._restart_at = 0.0  # loop time before which no new worker is tried for an empty place

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

    async def _replace(self, worker: _Worker | None) -> None:
        """Refill a place: its worker died (or is out of step), or it had none. Always gives the place back."""
        new: _Worker | None = None
        try:
            if worker is not None:
                self._workers.remove(worker)
                await worker.stop(timeout=0)
            new = await _Worker.start()
        except Exception as exc:  # no process can be started now (out of memory, of file descriptors, ...)
            loop = asyncio.get_running_loop()
            self._restart_at = loop.time() + self._restart_delay
            logger.error(
                "could not start an ingest worker process (%s: %s); its bodies are read in the server process, "
                "and a new worker is tried again in %g s",
                type(exc).__name__,
                exc,
                self._restart_delay,
            )
            self._restart_delay = min(self._restart_delay * 2, MAX_RESTART_DELAY)
        else:
            self._restart_delay = RESTART_DELAY
            self._workers.append(new)
        finally:
            self._idle.put_nowait(new)  # cancelled (close) or not: nobody waits for a place that never returns

    def _refill(self, worker: _Worker | None) -> None:
        task = asyncio.create_task(self._replace(worker), name="tms-ingest-worker-restart")
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def read(self, message_type: str, raw: bytes) -> Batch:
        max_items = self.max_items
        if len(raw) <= INLINE_BYTES:
            return read_batch(message_type, raw, max_items)
        if not self.processes:
            return await run_in_threadpool(read_batch, message_type, raw, max_items)
        worker = await self._idle.get()
        if worker is None:  # a place whose worker could not be started
            try:
                return await run_in_threadpool(read_batch, message_type, raw, max_items)
            finally:
                if asyncio.get_running_loop().time() >= self._restart_at:
                    self._refill(None)
                else:
                    self._idle.put_nowait(None)
        try:
            return await asyncio.wait_for(worker.read(message_type, raw, max_items), READ_TIMEOUT)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError) as exc:
            # The worker died (killed, out of memory) or is stuck: this body is read here, the next by a new worker.
            why = f"no answer in {READ_TIMEOUT:g} s" if isinstance(exc, TimeoutError) else "died"
            logger.warning("an ingest worker process %s (%r); starting a new one", why, exc)
            return await run_in_threadpool(read_batch, message_type, raw, max_items)
        finally:
            if worker.in_flight:  # died, or this request was cancelled mid-answer: a fresh worker takes over
                self._refill(worker)
            else:
                self._idle.put_nowait(worker)
