"""The async face of the store: reads on reader threads, writes through one group-commit writer.

Group commit: requests that arrive while a commit is in progress wait in a queue and are applied
together in the next transaction, so N concurrent requests cost one commit (one fsync), not N.
A request's future resolves only after its transaction committed (the API answers 2xx only then)
and its frames were handed to on_commit, which publishes them without making anyone wait.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from bot.store.engine import create_engines
from bot.store.errors import StoreUnavailableError
from bot.store.schema import prepare_schema
from bot.store.writes import Applied, Job, Published, commit_group

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")
OnCommit = Callable[[list[Published]], None]


@dataclass(slots=True)
class _Pending:
    job: Job
    future: asyncio.Future[Any]


class Store:
    """Open with `async with Store(url) as store:`; every method is safe to call from the event loop."""

    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: str = "FULL",
        max_group: int = 512,
        auto_migrate: bool = False,
        close_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self.close_timeout = close_timeout  # how long closing waits for reads still running (never on the loop)
        self.auto_migrate = auto_migrate
        self.writer, self.reader = create_engines(url, sqlite_synchronous=sqlite_synchronous)
        self._writer_pool = ThreadPoolExecutor(1, thread_name_prefix="tms-writer")
        shared = self.reader is self.writer  # in-memory SQLite: one connection, one thread
        self._reader_pool = self._writer_pool if shared else ThreadPoolExecutor(4, thread_name_prefix="tms-reader")
        # Big reads (history pages, chart series) queue here, two at a time, so that however many clients
        # ask for them, the small reads (/health, a spectator's join, the hub's repairs) keep their threads.
        self._heavy_pool = self._writer_pool if shared else ThreadPoolExecutor(2, thread_name_prefix="tms-heavy")
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._max_group = max_group
        self._task: asyncio.Task[None] | None = None
        self.on_commit: OnCommit | None = None
        self.commits = 0
        self.on_commit_timed: Callable[[float], None] | None = None  # seconds of each group commit (for /metrics)

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._writer_pool, prepare_schema, self.writer, self.auto_migrate)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        self._task = asyncio.create_task(self._commit_loop(), name="tms-group-commit")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._queue.put_nowait(None)  # finish what is queued, then stop
            await self._task
        # Reads still running end on their own threads; waiting for them here, on the loop, would stop every
        # other task until the slowest query returned. They are waited for elsewhere, for close_timeout at most.
        closing = asyncio.get_running_loop().run_in_executor(None, self._close_pools)
        try:
            await asyncio.wait_for(asyncio.shield(closing), self.close_timeout)
        except TimeoutError:
            logger.warning(
                "store: reads still running %g s after closing began; not waiting for them", self.close_timeout
            )

    def _close_pools(self) -> None:
        """Blocking: waits for the reads in progress, then closes the connections."""
        self._writer_pool.shutdown(wait=True)
        self._reader_pool.shutdown(wait=True)
        self._heavy_pool.shutdown(wait=True)
        self.writer.dispose()
        self.reader.dispose()

    async def read(self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(conn, *args)` on a reader thread with a connection of its own."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader_pool, partial(_read, self.reader, fn, *args, **kwargs))

    async def read_heavy(self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Like read(), on the bounded pool of big reads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._heavy_pool, partial(_read, self.reader, fn, *args, **kwargs))

    async def write(self, job: Job) -> Any:
        """Queue a job for the next group commit and return its result once committed.

        Raises:
            SessionNotFoundError, SessionExistsError: the job was rejected; nothing was written.
            StoreUnavailableError: the commit failed; nothing of the group was written.
        """
        if self._task is None or self._task.done():
            raise StoreUnavailableError("store is not open; use `async with Store(url)` first")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(job, future))
        return await future

    async def _commit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                return
            group = [first]
            while not self._queue.empty() and len(group) < self._max_group:
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                group.append(item)
            await self._commit(loop, group)

    async def _commit(self, loop: asyncio.AbstractEventLoop, group: list[_Pending]) -> None:
        jobs = [pending.job for pending in group]
        started = time.perf_counter()
        try:
            outcomes = await loop.run_in_executor(self._writer_pool, commit_group, self.writer, jobs, time.time())
        except Exception as exc:
            # The database's failures are said in a line; anything else is a bug of ours, with its traceback.
            logger.error("group commit of %d jobs failed: %s", len(jobs), exc, exc_info=not isinstance(exc, DBAPIError))
            for pending in group:
                if not pending.future.done():
                    pending.future.set_exception(StoreUnavailableError(f"commit failed: {exc}"))
            return
        self.commits += 1
        if self.on_commit_timed is not None:
            self.on_commit_timed(time.perf_counter() - started)
        published = [frame for outcome in outcomes if isinstance(outcome, Applied) for frame in outcome.published]
        if published and self.on_commit is not None:
            try:
                self.on_commit(published)  # hands the frames over; never waits for the broker
            except Exception:
                # The broker is a fast path, not the source of truth: hubs repair from the store.
                logger.exception("handing %d committed frames to the broker failed", len(published))
        for pending, outcome in zip(group, outcomes, strict=True):
            if pending.future.done():
                continue
            if isinstance(outcome, Exception):
                pending.future.set_exception(outcome)
            else:
                pending.future.set_result(outcome.result)


def _read(engine: Any, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    try:
        with engine.connect() as conn:
            return fn(conn, *args, **kwargs)
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
    # The database dropped the pooled connection (a restart, a failover): the pool has been emptied, so
    # this try gets a fresh one. SQLAlchemy's recipe for disconnects handled without a ping per checkout.
    with engine.connect() as conn:
        return fn(conn, *args, **kwargs)
