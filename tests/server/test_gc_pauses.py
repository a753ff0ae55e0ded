"""The young-only collector (bot/server/gc_pauses.py), on this process's real garbage collector: each test
leaves it as it found it (nothing frozen, no collector of the process)."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from collections.abc import Iterator

import pytest

from bot.server import gc_pauses
from bot.server.gc_pauses import YoungOnlyCollector


class Cycle:
    """Stands for a connection's objects: freed only by a collection, never by reference counts alone."""

    def __init__(self) -> None:
        self.me = self


class Hub:
    """The two counts the collector reads from the hub."""

    def __init__(self) -> None:
        self.left, self.total = 0, 0


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[Hub]:
    monkeypatch.setattr(gc_pauses, "MIN_FULL_SECONDS", 0.0)
    monkeypatch.setattr(gc_pauses, "running", None)
    gc.collect()
    yield Hub()
    gc.unfreeze()
    gc.collect()


def collector_of(hub: Hub) -> YoungOnlyCollector:
    collector = YoungOnlyCollector(lambda: hub.left, lambda: hub.total)
    collector.start()
    return collector


def test_a_tick_freezes_what_survived_it(hub: Hub) -> None:
    collector = collector_of(hub)
    assert gc_pauses.running is collector
    kept = [Cycle() for _ in range(100)]
    frozen = gc.get_freeze_count()
    collector.tick()
    assert gc.get_freeze_count() >= frozen + len(kept)
    assert not any(obj is kept[0] for obj in gc.get_objects())  # no collection walks them any more
    assert collector.stats.full_collections == 1


def test_garbage_made_before_a_tick_is_collected_by_it(hub: Hub) -> None:
    collector = collector_of(hub)
    gone = weakref.ref(Cycle())
    collector.tick()
    assert gone() is None


def test_a_quarter_of_the_spectators_gone_calls_for_a_full_collection_that_frees_their_cycles(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gc_pauses, "MIN_GONE", 1)
    collector = collector_of(hub)
    spectators = [Cycle() for _ in range(40)]
    hub.total = len(spectators)
    collector.tick()  # they are frozen now
    first = weakref.ref(spectators[0])
    del spectators[:7]
    hub.left, hub.total = 7, 33
    collector.tick()
    assert first() is not None, "7 gone of 33 is under a quarter: no full collection yet"
    assert collector.stats.full_collections == 1
    del spectators[:2]
    hub.left, hub.total = 9, 31
    collector.tick()
    assert collector.stats.full_collections == 2
    assert first() is None


def test_few_gone_call_for_no_full_collection(hub: Hub) -> None:
    collector = collector_of(hub)
    hub.left, hub.total = gc_pauses.MIN_GONE - 1, 1
    collector.tick()
    assert collector.stats.full_collections == 1


def test_full_collections_wait_for_their_interval_and_come_after_the_longest(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gc_pauses, "MIN_FULL_SECONDS", 3600.0)
    collector = collector_of(hub)
    hub.left = 10 * gc_pauses.MIN_GONE
    collector.tick()
    assert collector.stats.full_collections == 1, "due, but the last one was less than MIN_FULL_SECONDS ago"
    monkeypatch.setattr(gc_pauses, "MAX_FULL_SECONDS", 0.0)
    hub.left = 0
    collector.tick()
    assert collector.stats.full_collections == 2, "not due, but the last one was MAX_FULL_SECONDS ago"


def test_a_grown_frozen_heap_calls_for_a_full_collection_whatever_left(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gc_pauses, "GROWTH_FACTOR", 1.5)
    collector = collector_of(hub)
    kept = [Cycle() for _ in range(gc.get_freeze_count() // 4)]
    collector.tick()
    assert collector.stats.full_collections == 1
    kept += [Cycle() for _ in range(gc.get_freeze_count() // 3)]
    collector.tick()  # freezes them: now 1.67 times what the last full collection kept
    assert collector.stats.full_collections == 1
    collector.tick()
    assert collector.stats.full_collections == 2
    assert collector.stats.frozen >= len(kept)


def test_a_failing_tick_is_logged_and_stop_gives_the_heap_back(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    collector = collector_of(hub)

    def broken() -> int:
        raise RuntimeError("no hub")

    monkeypatch.setattr(collector, "_gone", broken)

    async def one_tick() -> None:
        monkeypatch.setattr(gc_pauses, "TICK_SECONDS", 0.0)
        task = asyncio.create_task(collector.run())
        await asyncio.sleep(0.05)
        task.cancel()

    with caplog.at_level(logging.ERROR, logger=gc_pauses.__name__):
        asyncio.run(one_tick())
    assert "garbage collection tick failed" in caplog.text
    collector.stop()
    assert gc.get_freeze_count() == 0
    assert gc_pauses.running is None
