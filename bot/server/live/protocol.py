"""uvicorn's websockets-sansio protocol, made lighter for connections that stay open for hours.

An idle spectator's connection is mostly what the protocol keeps for it. uvicorn gives each connection an
`asyncio.Queue` of received messages and an `asyncio.Event` for "the transport can take more": four deques
between them, allocated at once, 3 KB a connection though a spectator's queue is nearly always empty and
nobody waits on the event. Here they are a list and a flag, with futures only while someone waits.

Its per-connection INFO lines (`"WebSocket /ws/..." [accepted]` and websockets' `connection open`) are
access-log lines: printed when uvicorn's access log is on (`TMS_ACCESS_LOG`, `--debug`), as HTTP requests'
lines are. 10,000 spectators connecting made 20,000 lines, and a reconnect storm spent a third of each join
making their records. Warnings and errors are printed as before.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

QUIET_LOGGER = logging.getLogger("uvicorn.error.websockets")  # its records reach uvicorn.error's handlers


class _Waiters:
    """Futures of the tasks waiting, made only while some wait."""

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] | None = None

    async def _wait_once(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
            if not self._waiters:
                self._waiters = None

    def _wake(self) -> None:
        for waiter in self._waiters or ():
            if not waiter.done():
                waiter.set_result(None)


class ReceiveQueue(_Waiters):
    """What uvicorn uses of its receive queue (put_nowait, get, empty), unbounded as its queue is."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        super().__init__()
        self._items: list[Any] = []

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        self._wake()

    async def get(self) -> Any:
        while not self._items:
            await self._wait_once()
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


class Writable(_Waiters):
    """What uvicorn and the fan-out use of its `writable` event: set, clear, is_set, wait."""

    __slots__ = ("_flag",)

    def __init__(self) -> None:
        super().__init__()
        self._flag = True

    def set(self) -> None:
        self._flag = True
        self._wake()

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    async def wait(self) -> bool:
        while not self._flag:
            await self._wait_once()
        return True


class LightWebSocketProtocol(WebSocketsSansIOProtocol):
    """What `bot serve` runs for every WebSocket (spectators', Socket.IO's); its internals the fast path
    (direct.py) reads are uvicorn's, within the versions pyproject.toml allows."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = ReceiveQueue()  # type: ignore[assignment]
        self.writable = Writable()  # type: ignore[assignment]
        if not self.config.access_log:
            if QUIET_LOGGER.level != logging.WARNING:  # once: setLevel clears every logger's cache
                QUIET_LOGGER.setLevel(logging.WARNING)
            self.logger = self.conn.logger = QUIET_LOGGER  # websockets' "connection open" too
