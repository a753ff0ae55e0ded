"""The in-memory broker: one process, no set-up. The default. Frames pass as they are, never encoded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Self

from bot.server.broker.base import Frame


class MemoryBroker:
    name = "memory"

    def __init__(self, url: str = "memory://") -> None:
        self._channels: set[str] = set()
        # Unbounded on purpose: its only reader is this instance's hub, which never awaits a spectator.
        self._queue: asyncio.Queue[tuple[str, Sequence[Frame]]] = asyncio.Queue()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._channels.clear()

    async def publish(self, channel: str, frames: Sequence[Frame]) -> None:
        if channel in self._channels:
            self._queue.put_nowait((channel, frames))

    async def publish_all(self, messages: Sequence[tuple[str, Sequence[Frame]]]) -> None:
        for channel, frames in messages:
            if channel in self._channels:
                self._queue.put_nowait((channel, frames))

    def problem(self) -> str | None:
        return None

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    async def events(self) -> AsyncIterator[tuple[str, Sequence[Frame]]]:
        while True:
            yield await self._queue.get()
