"""One spectator's bounded queue and its bookkeeping. The sender task in ws.py sends what is queued;
flush() writes a burst straight out while that task is idle (the fast path of direct.py).

Overflow policy "drop oldest": history stays in the store, so a live chart loses least by skipping
the oldest frames. The queue is bounded in frames and in bytes (as characters of their JSON text), so
neither many small frames nor a few huge ones let one spectator hold more than its budget.
Drops are counted and reported to the spectator in a `lag` message before the
next frame it gets. A spectator that keeps dropping for `slow_timeout` seconds is evicted.

The bound is applied after each burst (all the frames of one commit arrive together, before any
sender task can run): the queue keeps max(maxsize, the burst) frames, up to BURST_FACTOR * maxsize,
and as many bytes, so that a big batch does not make a spectator that keeps up lose frames.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bot.server.live.closes import CLOSE_SLOW
from bot.server.live.direct import DirectWriter, WireFrames

CONTROL = 0  # the seq of frames that are not part of the stored stream
NO_ITEMS: deque[tuple[int, str]] = deque(maxlen=0)  # every empty queue's: nothing can be added to it
BURST_FACTOR = 10
CLOSE_GRACE_SECONDS = 5.0
ABUSE_GRACE_SECONDS = 0.5


class Wake:
    """asyncio.Event's set, clear and wait for one waiter, the sender task: a flag, and a future only while it
    waits. An Event holds a deque of waiters from its creation (760 bytes a spectator)."""

    __slots__ = ("_flag", "_waiter")

    def __init__(self) -> None:
        self._flag = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._flag = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def clear(self) -> None:
        self._flag = False

    def is_set(self) -> bool:
        return self._flag

    async def wait(self) -> None:
        if self._flag:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


_SUBSCRIPTIONS: dict[frozenset[str], frozenset[str]] = {}  # at most one per subset of the message types


def subscribed(types: Iterable[str]) -> frozenset[str]:
    """The types a spectator takes, one shared set per choice (nearly all take every type): a set of their own
    was 700 bytes a spectator."""
    chosen = frozenset(types)
    return _SUBSCRIPTIONS.setdefault(chosen, chosen)


@dataclass(frozen=True, slots=True)
class Lag:
    dropped: int
    first_seq: int
    last_seq: int

    def as_data(self) -> dict[str, int | str]:
        return {
            "dropped": self.dropped,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "hint": "frames were skipped because this connection fell behind; read them from history",
        }


class SpectatorQueue:
    # Slots: a push touches every spectator's queue, and with a thousand of them fewer, denser objects
    # is measurably less time in the fan-out loop.
    __slots__ = (
        "maxsize",
        "max_bytes",
        "types",
        "items",
        "size",
        "burst_size",
        "dropped",
        "dropped_first",
        "dropped_last",
        "total_dropped",
        "dropping_since",
        "burst",
    )

    def __init__(self, maxsize: int, types: Iterable[str], max_bytes: int = 2**62) -> None:
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.types = subscribed(types)
        self.items: deque[tuple[int, str]] = NO_ITEMS  # a deque of its own only while frames wait
        self.size = 0  # characters of the queued frames
        self.burst_size = 0
        self.dropped = 0
        self.dropped_first = 0
        self.dropped_last = 0
        self.total_dropped = 0
        self.dropping_since: float | None = None
        self.burst = 0

    def offer(self, seq: int, message_type: str, frame: str) -> bool:
        """Queue a frame the spectator subscribed to; returns False when it is filtered out."""
        if seq != CONTROL and message_type not in self.types:
            return False
        if self.items is NO_ITEMS:
            self.items = deque()
        self.items.append((seq, frame))
        self.size += len(frame)
        self.burst += 1
        self.burst_size += len(frame)
        return True

    def settle(self, now: float) -> None:
        """End of a burst: drop the oldest frames beyond the bound, counting them."""
        burst, self.burst = self.burst, 0
        burst_size, self.burst_size = self.burst_size, 0
        if len(self.items) <= self.maxsize and self.size <= self.max_bytes:
            return
        limit = max(self.maxsize, min(burst, self.maxsize * BURST_FACTOR))
        size_limit = max(self.max_bytes, min(burst_size, self.max_bytes * BURST_FACTOR))
        while len(self.items) > limit or (self.size > size_limit and len(self.items) > 1):
            old_seq, old_frame = self.items.popleft()
            self.size -= len(old_frame)
            if old_seq != CONTROL:
                self.dropped += 1
                self.total_dropped += 1
                self.dropped_first = self.dropped_first or old_seq
                self.dropped_last = old_seq
                if self.dropping_since is None:
                    self.dropping_since = now

    def pop(self) -> tuple[int, str] | None:
        if not self.items:
            return None
        item = self.items.popleft()
        self.size -= len(item[1])
        if not self.items:
            self.emptied()  # caught up
        return item

    def emptied(self) -> None:
        """Everything queued went out: its deque (760 bytes however few it held) is let go."""
        self.items = NO_ITEMS
        self.size = 0
        self.dropping_since = None

    def take_lag(self, delivered_through: int) -> Lag | None:
        """The drops not yet reported, unless replay from the store already covered them."""
        if not self.dropped:
            return None
        lag = None
        if self.dropped_last > delivered_through:
            lag = Lag(self.dropped, max(self.dropped_first, delivered_through + 1), self.dropped_last)
        self.dropped = self.dropped_first = self.dropped_last = 0
        return lag

    def overdue(self, now: float, timeout: float) -> bool:
        return self.dropping_since is not None and now - self.dropping_since >= timeout


class Spectator:
    """A connected spectator as the hub sees it: a queue, a wake-up event and a close request."""

    __slots__ = (
        "id",
        "session_id",
        "user_name",
        "queue",
        "wake",
        "close_request",
        "cut_off",
        "delivered_through",
        "direct",
        "idle",
        "incarnation",
    )

    def __init__(
        self,
        session_id: str,
        user_name: str | None,
        maxsize: int,
        types: Iterable[str],
        incarnation: tuple[str, str] = ("", ""),
        max_bytes: int = 2**62,
    ) -> None:
        self.id = f"spectator-{secrets.token_hex(6)}"
        self.session_id = session_id
        self.incarnation = incarnation  # (created_at, epoch) of the session as it was when this one connected
        self.user_name = user_name
        self.queue = SpectatorQueue(maxsize, types, max_bytes)
        self.wake = Wake()
        self.close_request: tuple[int, str] | None = None
        self.cut_off: Callable[[], object] | None = None  # set by the endpoint: ends a connection that hangs
        self.delivered_through = 0  # highest seq sent (or skipped by a type filter), for de-duplication
        self.direct: DirectWriter | None = None  # the fast path, where the server allows it (direct.py)
        self.idle = False  # set by the sender task while it waits with an empty queue

    def offer(self, seq: int, message_type: str, frame: str) -> None:
        """Queue a frame; put_nowait semantics, never an await: one stalled browser must not delay any
        other spectator. The caller ends each burst with settle(), which sends or wakes the sender."""
        if self.queue.offer(seq, message_type, frame) and not (self.idle and self.direct is not None):
            self.wake.set()

    def flush(self, wire: WireFrames) -> None:
        """The fast path (direct.py): while the sender task is idle, nothing else writes to the socket, so
        everything queued goes out now, in order, as one write, without waking the task. A spectator
        that is behind (a busy sender, drops to report, a full transport) keeps its queue for the task."""
        if self.idle:
            self.write_queued(wire)

    def write_queued(self, wire: WireFrames) -> bool:
        """Everything queued, as one write, where the transport takes it now and there are no drops to report
        first; True if it was written. The sender task catches up this way too (a storm's joiners had each
        queued a second of live frames, sent one by one through ASGI)."""
        queue, direct = self.queue, self.direct
        items = queue.items
        if not (direct is not None and items and not queue.dropped and self.close_request is None):
            return False
        through = self.delivered_through
        frames = [frame for seq, frame in items if seq > through or seq == CONTROL]
        if frames and not direct.write(frames, wire):
            return False
        self.delivered_through = max(through, max(seq for seq, _ in items))
        queue.emptied()
        return True

    def settle(self, now: float, slow_timeout: float, wire: WireFrames) -> None:
        """End of a burst: apply the queue bound, close a spectator that stayed behind too long (4008),
        and send what is queued straight out while the sender task is idle (else wake the task)."""
        queue = self.queue
        queue.settle(now)
        if queue.dropping_since is not None and queue.overdue(now, slow_timeout):
            self.request_close(CLOSE_SLOW, f"too slow: fell behind and {queue.total_dropped} frames were dropped")
        if queue.items and self.idle and self.direct is not None:
            self.flush(wire)
            if queue.items:
                self.wake.set()

    def request_close(self, code: int, reason: str, grace: float = CLOSE_GRACE_SECONDS) -> None:
        """Close with `code`; a connection still open `grace` seconds later is cut off. An abusive client
        gets a short grace: while the close handshake waits for its reply, its flood is still read."""
        if self.close_request is None:
            self.close_request = (code, reason)
            self.wake.set()
            if self.cut_off is not None:
                # A timer, not a task per spectator: the close normally goes out long before it fires.
                asyncio.get_running_loop().call_later(grace, self.cut_off)
