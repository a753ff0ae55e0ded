"""Every long-lived loop of a server runs under one supervisor, so that none dies silently.

A loop is a coroutine function meant to run until cancelled: the hub's consumer and watchdog, the publisher,
the broker's probe, the credential watches, the Socket.IO emitter, the daemon, the jobs' lease, housekeeping.
If one raises, the supervisor logs it with the loop's name and runs it again after a back-off (0.1 s, doubling
to 30 s; back to 0.1 s once it has run a minute without failing). While a loop waits to be restarted
`/health` says `degraded` and names it. Stopping cancels the loops and waits for each; a loop's own error
never stops the others from being stopped, and the caller's cancellation is never swallowed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from bot.server.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

FIRST_BACKOFF = 0.1
MAX_BACKOFF = 30.0
HEALTHY_AFTER = 60.0  # seconds a restarted loop must run without failing before its back-off starts over

Loop = Callable[[], Awaitable[None]]


@dataclass
class LoopState:
    name: str
    crashes: int = 0
    last_error: str | None = None
    restarting_at: float | None = None  # monotonic time of the next try while it waits to be restarted


class Supervisor:
    def __init__(self) -> None:
        self.loops: dict[str, LoopState] = {}
        self._tasks: dict[asyncio.Task[None], str] = {}

    def spawn(self, name: str, loop: Loop) -> asyncio.Task[None]:
        """Run `loop` until stopped, restarting it whenever it fails."""
        self.loops.setdefault(name, LoopState(name))
        task = asyncio.create_task(self._keep(self.loops[name], loop), name=f"tms-{name}")
        self._tasks[task] = name
        task.add_done_callback(self._forget)
        return task

    def failing(self) -> dict[str, str]:
        """The loops waiting to be restarted after a failure, with their last error."""
        return {s.name: s.last_error or "" for s in self.loops.values() if s.restarting_at is not None}

    def alive(self) -> set[str]:
        """The loops running (or waiting to be restarted) now."""
        return {name for task, name in self._tasks.items() if not task.done()}

    async def stop(self, tasks: Iterable[asyncio.Task[None]] | None = None) -> None:
        """Cancel these loops (all of them by default) and wait until each has ended."""
        await cancel_and_wait(list(self._tasks) if tasks is None else tasks)

    def _forget(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)

    async def _keep(self, state: LoopState, loop: Loop) -> None:
        backoff = FIRST_BACKOFF
        while True:
            started = time.monotonic()
            try:
                await loop()
                error = "it returned"  # loops run until cancelled: an end is a fault too
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
                logger.exception("background loop %s failed; restarting it in %.1f s", state.name, backoff)
            else:
                logger.error("background loop %s ended by itself; restarting it in %.1f s", state.name, backoff)
            if time.monotonic() - started > HEALTHY_AFTER:
                backoff = FIRST_BACKOFF
            state.crashes += 1
            state.last_error = error
            state.restarting_at = time.monotonic() + backoff
            try:
                await asyncio.sleep(backoff)
            finally:
                state.restarting_at = None
            backoff = min(backoff * 2, MAX_BACKOFF)
