"""Items made on a worker thread, handed to the event loop as each is made.

A history page of 100,000 messages is read in chunks on a thread of the store. Handed over whole, the
first byte waited for the last chunk; relayed, the first chunk is on its way to the client while the
database joins the next, so reading and sending overlap.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_END = object()


class RelayClosedError(Exception):
    """The reader has left: the thread stops making items."""


class Relay(Generic[T]):
    """`put` on the thread; `next` and `items` on the loop, in the order put, until `end_with`'s work is done."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._closed = threading.Event()

    def put(self, item: T) -> None:
        """Thread side. Raises RelayClosedError once the reader has closed the relay."""
        if self._closed.is_set():
            raise RelayClosedError
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def end_with(self, work: asyncio.Future[Any]) -> None:
        """The items end when `work` (the thread's job) is done; its result or exception is the reader's to get."""
        # Queued behind every put: call_soon_threadsafe keeps their order, and the done callback comes later.
        work.add_done_callback(lambda _: self._queue.put_nowait(_END))

    async def next(self) -> T | None:
        """The next item, or None at the end."""
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # the end stays the end for any later call
            return None
        return item  # type: ignore[no-any-return]

    async def items(self) -> AsyncIterator[T]:
        while (item := await self.next()) is not None:
            yield item

    def close(self) -> None:
        """The reader is done: the thread's next put raises and its job ends."""
        self._closed.set()
