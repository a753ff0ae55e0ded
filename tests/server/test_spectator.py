"""The per-spectator queue: bounded, drops the oldest, reports lag, notices a spectator that stays behind."""

from __future__ import annotations

import asyncio
import contextlib

from bot.server.live.direct import WireFrames
from bot.server.live.spectator import BURST_FACTOR, CONTROL, Spectator, SpectatorQueue, Wake
from tests.conftest import TIMEOUT

TYPES = {"training_metrics", "bot_decision"}


def burst(queue: SpectatorQueue, seqs: range, now: float = 0.0) -> None:
    """Frames of one commit arrive together, then the bound is applied."""
    for seq in seqs:
        queue.offer(seq, "training_metrics", f"frame-{seq}")
    queue.settle(now)


def test_overflow_drops_the_oldest_and_counts() -> None:
    """A queue over its bound drops its oldest frames; the lag names how many and which seqs."""
    queue = SpectatorQueue(3, TYPES)
    burst(queue, range(1, 4))
    burst(queue, range(4, 6))
    assert [seq for seq, _ in queue.items] == [3, 4, 5]
    lag = queue.take_lag(delivered_through=0)
    assert lag is not None and (lag.dropped, lag.first_seq, lag.last_seq) == (2, 1, 2)
    assert queue.take_lag(delivered_through=0) is None


def test_a_big_burst_is_kept_whole_up_to_the_burst_factor() -> None:
    """One commit larger than the bound does not make a spectator that keeps up lose frames."""
    queue = SpectatorQueue(3, TYPES)
    burst(queue, range(1, 11))
    assert len(queue.items) == 10 and queue.dropped == 0
    burst(queue, range(11, 12 + 3 * BURST_FACTOR))
    assert len(queue.items) == 3 * BURST_FACTOR and queue.dropped > 0


def test_the_queue_is_bounded_in_bytes_too() -> None:
    """Few frames but big ones: the oldest are dropped until the queued bytes fit the budget (one burst may
    take BURST_FACTOR times it); popping gives the bytes back."""
    queue = SpectatorQueue(1000, TYPES, max_bytes=100)
    burst(queue, range(1, 3))  # 2 x 7 characters
    for seq in range(3, 13):
        queue.offer(seq, "training_metrics", "x" * 40)
        queue.settle(0.0)
    assert queue.size <= 100 and [seq for seq, _ in queue.items] == [11, 12]
    lag = queue.take_lag(delivered_through=0)
    assert lag is not None and (lag.dropped, lag.first_seq, lag.last_seq) == (10, 1, 10)
    queue.pop()
    assert queue.size == 40
    big = SpectatorQueue(1000, TYPES, max_bytes=100)
    burst(big, range(1, 21))  # one commit of 20 x 7 characters: over the budget, under BURST_FACTOR times it
    assert len(big.items) == 20 and big.dropped == 0


def test_drops_already_replayed_are_not_reported() -> None:
    """Frames dropped while the replay from the store covered them are no lag."""
    queue = SpectatorQueue(2, TYPES)
    burst(queue, range(1, 3))
    burst(queue, range(3, 5))
    assert queue.take_lag(delivered_through=2) is None


def test_unsubscribed_types_are_filtered_but_control_frames_pass() -> None:
    queue = SpectatorQueue(10, {"bot_decision"})
    assert not queue.offer(1, "training_metrics", "m")
    assert queue.offer(2, "bot_decision", "d")
    assert queue.offer(CONTROL, "connection_status", "c")
    assert [frame for _, frame in queue.items] == ["d", "c"]


def test_overdue_only_while_it_stays_behind() -> None:
    """Dropping for longer than the timeout makes a spectator overdue; catching up clears it."""
    queue = SpectatorQueue(2, TYPES)
    burst(queue, range(1, 3), now=10.0)
    burst(queue, range(3, 5), now=10.0)
    assert not queue.overdue(10.5, timeout=1.0)
    assert queue.overdue(11.0, timeout=1.0)
    while queue.pop() is not None:
        pass
    assert not queue.overdue(100.0, timeout=1.0)


class FakeWriter:
    """Stands in for DirectWriter (the transport is outside this test): takes writes while `open`."""

    def __init__(self) -> None:
        self.open = True
        self.writes: list[list[str]] = []

    def write(self, frames: list[str], wire: WireFrames) -> bool:
        if self.open:
            self.writes.append(frames)
        return self.open


def test_a_burst_goes_straight_out_in_one_write_only_while_the_sender_is_idle() -> None:
    """A burst offered to an idle spectator goes out, in order, as one write, without waking its sender
    task; a busy sender or a full transport keeps the frames queued for the task (which is woken);
    repeats are not written twice."""
    spectator = Spectator("s", None, 100, ["training_metrics"])
    writer = FakeWriter()
    spectator.direct = writer  # type: ignore[assignment]
    for seq in (1, 2):
        spectator.offer(seq, "training_metrics", f"f{seq}")
    spectator.offer(3, "bot_decision", "f3")  # not subscribed: never queued
    spectator.flush(WireFrames())  # the sender task is busy: nothing may overtake it
    assert writer.writes == [] and len(spectator.queue.items) == 2 and spectator.wake.is_set()
    spectator.idle = True
    spectator.wake.clear()
    spectator.flush(WireFrames())
    assert writer.writes == [["f1", "f2"]] and not spectator.queue.items and spectator.delivered_through == 2
    for seq in (4, 5):
        spectator.offer(seq, "training_metrics", f"f{seq}")
    assert writer.writes[-1] == ["f1", "f2"]  # nothing goes out before the burst ends
    spectator.settle(0.0, 10.0, WireFrames())  # the end of the burst
    assert writer.writes[-1] == ["f4", "f5"] and not spectator.wake.is_set()
    spectator.offer(5, "training_metrics", "f5 again")
    spectator.offer(CONTROL, "connection_status", "c")
    writer.open = False
    spectator.settle(0.0, 10.0, WireFrames())  # the transport is full: queued, and the task is woken to send it
    assert len(spectator.queue.items) == 2 and spectator.wake.is_set()
    writer.open = True
    spectator.flush(WireFrames())
    assert writer.writes[-1] == ["c"] and not spectator.queue.items


async def test_the_sender_s_wake_is_an_event_for_one_waiter() -> None:
    """Set before the wait: no wait. Set during it: the wait ends. Cleared: the next wait waits again."""
    wake = Wake()
    wake.set()
    await asyncio.wait_for(wake.wait(), TIMEOUT)
    wake.clear()
    waiting = asyncio.create_task(wake.wait())
    await asyncio.sleep(0)
    assert not waiting.done() and not wake.is_set()
    wake.set()
    await asyncio.wait_for(waiting, TIMEOUT)
    wake.clear()
    again = asyncio.create_task(wake.wait())
    await asyncio.sleep(0)
    again.cancel()  # a sender cancelled mid-wait leaves the wake usable
    with contextlib.suppress(asyncio.CancelledError):
        await again
    wake.set()
    await asyncio.wait_for(wake.wait(), TIMEOUT)
