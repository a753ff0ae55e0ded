"""The receive queue and writable flag of LightWebSocketProtocol (bot/server/live/protocol.py): what uvicorn
and the fan-out ask of asyncio's Queue and Event, for any number of waiters, with no deque."""

from __future__ import annotations

import asyncio

from bot.server.live.protocol import ReceiveQueue, Writable


async def test_the_queue_hands_out_in_order_and_wakes_its_waiters() -> None:
    queue = ReceiveQueue()
    assert queue.empty() and queue.qsize() == 0
    queue.put_nowait("a")
    queue.put_nowait("b")
    assert not queue.empty() and await queue.get() == "a" and await queue.get() == "b"
    waiting = [asyncio.create_task(queue.get()) for _ in range(3)]
    await asyncio.sleep(0)
    for item in ("c", "d", "e"):
        queue.put_nowait(item)
    assert sorted(await asyncio.gather(*waiting)) == ["c", "d", "e"] and queue.empty()


async def test_a_cancelled_get_takes_nothing_and_leaves_no_waiter() -> None:
    queue = ReceiveQueue()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    getter.cancel()
    await asyncio.gather(getter, return_exceptions=True)
    queue.put_nowait("kept")
    assert queue.qsize() == 1 and queue._waiters is None and await queue.get() == "kept"


async def test_writable_blocks_waiters_until_set() -> None:
    writable = Writable()
    assert writable.is_set() and await writable.wait()
    writable.clear()
    waiters = [asyncio.create_task(writable.wait()) for _ in range(2)]
    await asyncio.sleep(0.01)
    assert not any(w.done() for w in waiters) and not writable.is_set()
    writable.set()
    assert await asyncio.gather(*waiters) == [True, True] and writable._waiters is None
