"""The per-spectator queue: bounded, drops the oldest, reports lag, notices a spectator that stays behind."""

from __future__ import annotations

from bot.server.spectator import BURST_FACTOR, CONTROL, Spectator, SpectatorQueue

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
    """Stands in for DirectWriter (the transport is outside this test): takes frames while `open`."""

    def __init__(self) -> None:
        self.open = True
        self.written: list[str] = []

    def write(self, frame: str) -> bool:
        if self.open:
            self.written.append(frame)
        return self.open


def test_frames_go_straight_out_only_while_nothing_is_queued() -> None:
    """The fast path writes a frame only when the sender is idle with an empty queue; once one frame had
    to queue, the next ones queue behind it, so order holds; filtered and repeated frames go nowhere."""
    spectator = Spectator("s", None, 100, ["training_metrics"])
    writer = FakeWriter()
    spectator.direct = writer  # type: ignore[assignment]
    spectator.idle = True
    spectator.offer(1, "training_metrics", "f1")
    spectator.offer(2, "bot_decision", "f2")  # not subscribed
    spectator.offer(1, "training_metrics", "f1 again")
    writer.open = False
    spectator.offer(3, "training_metrics", "f3")  # the transport is full: queued
    writer.open = True
    spectator.offer(4, "training_metrics", "f4")  # behind f3
    assert writer.written == ["f1"] and spectator.delivered_through == 1
    assert [seq for seq, _ in spectator.queue.items] == [3, 4] and spectator.wake.is_set()
    spectator.queue.items.clear()
    spectator.idle = False  # the sender task is busy sending: nothing may overtake it
    spectator.offer(5, "training_metrics", "f5")
    assert writer.written == ["f1"] and [seq for seq, _ in spectator.queue.items] == [5]
