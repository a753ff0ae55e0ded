"""The hub's ordering: frames out of order, lost or duplicated in the broker reach spectators 1, 2, 3, ...

The store is faked at its seam (two functions over a list), because here the broker is the thing under
test; the end-to-end tests run the same hub against a real store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from bot.server.broker import BrokerUnavailableError, MemoryBroker
from bot.server.live.hub import Hub, HubFullError, channel_for
from bot.server.live.spectator import CONTROL, Spectator

TYPES = ["training_metrics"]


class FakeStore:
    def __init__(self) -> None:
        self.frames: list[tuple[int, str, str]] = []
        self.epoch: str | None = "e1"  # the incarnation stored now; None: the session is deleted

    def commit(self, count: int) -> list[tuple[int, str, str]]:
        start = len(self.frames) + 1
        new = [(seq, "training_metrics", f"frame-{seq}") for seq in range(start, start + count)]
        self.frames.extend(new)
        return new

    def recreate(self, epoch: str | None) -> None:
        """The session deleted (None) or deleted and created again as incarnation `epoch`."""
        self.frames.clear()
        self.epoch = epoch

    async def read_after(
        self, session_id: str, epoch: str, after: int, limit: int
    ) -> list[tuple[int, str, str]] | None:
        if epoch != self.epoch:
            return None
        return [f for f in self.frames if f[0] > after][:limit]

    async def last_seqs(self, session_ids: list[str]) -> dict[str, tuple[int, str]]:
        if self.epoch is None:
            return {}
        return {session_id: (len(self.frames), self.epoch) for session_id in session_ids}


def hub_over(broker: Any, store: FakeStore, **changes: Any) -> Hub:
    """A hub of 10 spectators at most over the fake store, with quick repairs unless `changes` say otherwise."""
    options: dict[str, Any] = {"gap_wait": 0.01, "repair_interval": 0.05, **changes}
    return Hub(
        broker,
        read_after=store.read_after,
        last_seqs=store.last_seqs,
        max_per_session=10,
        max_total=10,
        slow_timeout=60,
        **options,
    )


@pytest.fixture
async def setup() -> AsyncIterator[tuple[Hub, MemoryBroker, FakeStore]]:
    store = FakeStore()
    async with MemoryBroker() as broker:
        hub = hub_over(broker, store)
        async with hub:
            yield hub, broker, store


async def watching(hub: Hub, incarnation: tuple[str, str] = ("t1", "e1")) -> Spectator:
    spectator = Spectator("s", None, 1000, TYPES, incarnation)
    hub.add(spectator)
    await hub.watch(spectator)
    return spectator


async def received(spectator: Spectator, count: int) -> list[int]:
    async with asyncio.timeout(5):
        while len(spectator.queue.items) < count:
            await asyncio.sleep(0.01)
    return [seq for seq, _ in spectator.queue.items]


async def publish(broker: MemoryBroker, frames: list[tuple[int, str, str]], epoch: str = "e1") -> None:
    for frame in frames:
        await broker.publish(channel_for("s", epoch), [frame])


async def test_reordered_and_duplicated_frames_are_delivered_in_order_once(
    setup: tuple[Hub, MemoryBroker, FakeStore],
) -> None:
    hub, broker, store = setup
    spectator = await watching(hub)
    frames = store.commit(5)
    await publish(broker, [frames[2], frames[0], frames[1], frames[1], frames[4], frames[3], frames[0]])
    assert await received(spectator, 5) == [1, 2, 3, 4, 5]


async def test_frames_lost_by_the_broker_are_read_from_the_store(setup: tuple[Hub, MemoryBroker, FakeStore]) -> None:
    """A hole (lost publish) is filled after gap_wait; a lost tail is found by the periodic last-seq check."""
    hub, broker, store = setup
    spectator = await watching(hub)
    frames = store.commit(6)
    await publish(broker, [frames[0], frames[3]])  # 2 and 3 lost, 5 and 6 never published
    assert await received(spectator, 6) == [1, 2, 3, 4, 5, 6]


async def test_a_recreated_session_starts_with_fresh_delivery_state(
    setup: tuple[Hub, MemoryBroker, FakeStore],
) -> None:
    """Deleted and created again while an old spectator is still registered (its close in flight): the new
    incarnation's seq 1, 2, 3 reach its spectators, and none of them reach the old one."""
    hub, broker, store = setup
    old = await watching(hub, ("t1", "e1"))
    await publish(broker, store.commit(10))
    assert await received(old, 10) == list(range(1, 11))
    await broker.publish(channel_for("s", "e1"), [(0, "session_deleted", "{}")])
    async with asyncio.timeout(5):
        while old.close_request is None:
            await asyncio.sleep(0.01)
    store.recreate("e2")
    new = await watching(hub, ("t2", "e2"))
    await publish(broker, store.commit(3), "e2")
    assert await received(new, 3) == [1, 2, 3]
    assert [seq for seq, _ in old.queue.items] == list(range(1, 11))


async def test_a_spectator_of_a_newer_incarnation_retires_the_old_state(
    setup: tuple[Hub, MemoryBroker, FakeStore],
) -> None:
    """Where the `session_deleted` frame was lost, a spectator with a newer epoch still starts fresh, and
    one that read the older incarnation while connecting is refused with 4410."""
    hub, broker, store = setup
    old = await watching(hub, ("t1", "e1"))
    await publish(broker, store.commit(5))
    await received(old, 5)
    store.recreate("e2")
    new = await watching(hub, ("t2", "e2"))
    assert old.close_request is not None and old.close_request[0] == 4410
    await publish(broker, store.commit(2), "e2")
    assert await received(new, 2) == [1, 2]
    with pytest.raises(HubFullError) as refused:
        hub.add(Spectator("s", None, 1000, TYPES, ("t1", "e1")))
    assert refused.value.code == 4410


async def test_the_next_incarnations_frames_never_reach_the_last_ones_spectators_through_the_broker() -> None:
    """The broker lost the `session_deleted` frame, then carries the next incarnation's seqs 4, 5, 6 (a
    subscription rebuilt meanwhile): on a channel per incarnation, the old incarnation's spectators never take
    them for the ones after their own 1, 2, 3, even before the watchdog's look at the store."""
    store = FakeStore()
    async with MemoryBroker() as broker:
        hub = hub_over(broker, store, repair_interval=3600)  # no watchdog pass in this test
        async with hub:
            old = await watching(hub, ("t1", "e1"))
            await publish(broker, store.commit(3))
            assert await received(old, 3) == [1, 2, 3]
            await publish(broker, [(seq, "training_metrics", f"next-{seq}") for seq in (4, 5, 6)], "e2")
            await publish(broker, [(4, "training_metrics", "frame-4")])  # its own channel still works
            assert await received(old, 4) == [1, 2, 3, 4]
            assert [frame for _, frame in old.queue.items][-1] == "frame-4"


@pytest.mark.parametrize("epoch", ["e2", None], ids=["recreated", "deleted"])
async def test_an_incarnation_gone_while_its_deleted_frame_was_lost_is_retired_not_fed_another(
    setup: tuple[Hub, MemoryBroker, FakeStore], epoch: str | None
) -> None:
    """The broker lost the `session_deleted` frame (and the new incarnation's frames): the watchdog's look at
    the store finds another epoch, or none, and closes the old incarnation's spectators with 4410; the new
    incarnation's seqs, past the old one's, are never read for them."""
    hub, broker, store = setup
    old = await watching(hub, ("t1", "e1"))
    await publish(broker, store.commit(3))
    assert await received(old, 3) == [1, 2, 3]
    store.recreate(epoch)
    store.commit(6)  # 1..6 of the new incarnation (or nothing read, if deleted): only in the store
    async with asyncio.timeout(5):
        while old.close_request is None:
            await asyncio.sleep(0.01)
    assert old.close_request[0] == 4410
    assert [seq for seq, _ in old.queue.items if seq != CONTROL] == [1, 2, 3]


async def test_past_the_announce_limit_counts_are_sent_once_per_interval(
    setup: tuple[Hub, MemoryBroker, FakeStore],
) -> None:
    """Each join is announced to the others while few watch; past the limit, one `count` message replaces
    them, so a crowd joining costs each spectator a message per interval, not one per newcomer."""
    hub, _, _ = setup
    hub.announce_limit = 2
    first, second = await watching(hub), await watching(hub)
    assert events(first) == [("joined", 2)]
    crowd = [await watching(hub) for _ in range(5)]
    assert events(first) == [("joined", 2)]  # nothing per newcomer
    async with asyncio.timeout(5):
        while len(events(first)) < 2:
            await asyncio.sleep(0.01)
    for spectator in (first, second, *crowd):
        assert events(spectator)[-1] == ("count", 7)


def events(spectator: Spectator) -> list[tuple[str, int]]:
    data = [orjson.loads(frame)["data"] for _, frame in spectator.queue.items]
    return [(d["event"], d["spectator_count"]) for d in data]


class FlakyBroker(MemoryBroker):
    """A memory broker whose first `failures` subscribes fail, as Redis's do while it is away."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def subscribe(self, channel: str) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise BrokerUnavailableError(f"redis subscribe to {channel!r} failed: no answer")
        await super().subscribe(channel)


async def test_a_failed_subscribe_is_logged_and_tried_again_and_nothing_is_read_twice(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first spectators of a session with 3,000 stored frames join while the broker refuses the subscribe:
    they join all the same, the failure is logged, they get what is committed next from the store (and none of
    the 3,000 they had in their snapshot), and the hub subscribes again by itself."""
    caplog.set_level(logging.INFO, logger="bot.server.live.hub")
    store = FakeStore()
    store.commit(3000)
    async with FlakyBroker(failures=2) as broker:
        hub = hub_over(broker, store)
        async with hub:
            first, second = (Spectator("s", None, 5000, TYPES, ("t1", "e1")) for _ in range(2))
            hub.add(first)  # as the endpoint does: add, then watch, with no pause between
            watching_first = asyncio.create_task(hub.watch(first))
            await asyncio.sleep(0)
            hub.add(second)
            async with asyncio.timeout(5):
                await asyncio.gather(watching_first, hub.watch(second))
            assert "subscribe" in caplog.text and "failed" in caplog.text
            await publish(broker, store.commit(2))  # not subscribed yet: found in the store
            assert await received_data(first, 2) == [3001, 3002]
            assert await received_data(second, 2) == [3001, 3002]
            async with asyncio.timeout(5):
                while "subscribed to session 's' again" not in caplog.text:  # the watchdog's second try
                    await asyncio.sleep(0.01)
            await publish(broker, [(3003, "training_metrics", "frame-3003")])  # only the broker has it
            assert await received_data(first, 3) == [3001, 3002, 3003]


async def received_data(spectator: Spectator, count: int) -> list[int]:
    """The seqs of the stored frames queued for the spectator (not the announcements), once `count` are."""
    async with asyncio.timeout(5):
        while len(seqs := [seq for seq, _ in spectator.queue.items if seq != CONTROL]) < count:
            await asyncio.sleep(0.01)
    return seqs


async def test_the_watchdog_visits_only_spectators_with_frames_queued(
    setup: tuple[Hub, MemoryBroker, FakeStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a second the watchdog looks for spectators that stay behind: with 10,000 idle ones, a pass over
    every one of them held the event loop for 6-12 ms, each second. Only a queue with frames can be behind."""
    hub, _, _ = setup
    idle, behind = await watching(hub), await watching(hub)
    idle.queue.pop()  # the other's join announcement, as its sender task would have taken it
    assert not idle.queue.items
    behind.queue.offer(CONTROL, "connection_status", "queued")  # its sender task has not taken it yet
    visited: list[Spectator] = []
    settle = Spectator.settle
    monkeypatch.setattr(Spectator, "settle", lambda self, *args: (visited.append(self), settle(self, *args))[1])
    await asyncio.sleep(0.2)  # a few watchdog passes (repair_interval 0.05 s)
    assert behind in visited
    assert idle not in visited
