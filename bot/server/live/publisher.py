"""Committed frames to the broker, off the commit's path: the commit never waits for the broker.

The group commit hands each commit's frames over without waiting; one task publishes everything handed
over since its last round, in commit order, in one broker call bounded by `timeout`. A publish that fails
or times out is given up, not retried: the store is the log, and every hub reads what it missed from it
(its gap check and its periodic look at each watched session's last seq). Meanwhile /health says
`degraded` with the reason, until a publish gets through again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from typing import Self

from bot.server.broker import Broker, BrokerUnavailableError
from bot.server.broker.base import Frame
from bot.server.supervisor import Supervisor

logger = logging.getLogger(__name__)

# Handed-over broker messages waiting at most; past this the oldest are dropped (hubs repair from the store).
MAX_PENDING = 10_000


class Publisher:
    def __init__(
        self, broker: Broker, timeout: float, max_pending: int = MAX_PENDING, supervisor: Supervisor | None = None
    ) -> None:
        self.supervisor = supervisor or Supervisor()
        self._broker = broker
        self._timeout = timeout
        self._pending: deque[tuple[str, Sequence[Frame]]] = deque(maxlen=max_pending)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.problem: str | None = None  # why the last publish did not get through; None once one does
        self.given_up = 0  # broker messages not published (their frames reach spectators from the store)

    async def __aenter__(self) -> Self:
        self._task = self.supervisor.spawn("publisher", self._run)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            await self.supervisor.stop([self._task])

    def submit(self, messages: Sequence[tuple[str, Sequence[Frame]]]) -> None:
        """Queue one commit's broker messages; never waits."""
        dropped = max(0, len(self._pending) + len(messages) - (self._pending.maxlen or 0))
        self.given_up += dropped
        self._pending.extend(messages)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            if self.problem is None:
                await self._wake.wait()
            else:  # retry with nothing to publish (a round trip) until the broker answers again
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._timeout)
            self._wake.clear()
            messages = list(self._pending)
            self._pending.clear()
            if messages or self.problem is not None:
                await self._publish(messages)

    async def _publish(self, messages: list[tuple[str, Sequence[Frame]]]) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._broker.publish_all(messages)
        except (TimeoutError, BrokerUnavailableError) as exc:
            self.given_up += len(messages)
            why = f"publish failed: {exc}" if str(exc) else f"no answer to a publish in {self._timeout:g} s"
            problem = f"{self._broker.name}: {why}"
            if problem != self.problem:
                logger.warning("%s; spectators get these frames from the store", problem)
            self.problem = problem
            return
        if self.problem is not None:
            logger.info("publishing to the broker works again")
        self.problem = None
