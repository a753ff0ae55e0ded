"""The young-only collector (bot/server/gc_pauses.py), on this process's real garbage collector: each test
leaves it as it found it (nothing frozen)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from bot.server import gc_pauses
from bot.server.gc_pauses import YoungOnlyCollector


class Cycle:
    """Stands for a connection's objects: freed only by a collection, never by reference counts alone."""

    def __init__(self) -> None:
        self.me = self


class Counts:
    def __init__(self) -> None:
        self.closed, self.open = 0, 0


@pytest.fixture
def counts() -> Iterator[Counts]:
    gc.collect()
    yield Counts()
    gc.unfreeze()
    gc.collect()


def test_a_tick_freezes_what_survived_it(counts: Counts) -> None:
    collector = YoungOnlyCollector(lambda: counts.closed, lambda: counts.open)
    collector.start()
    kept = [Cycle() for _ in range(100)]
    frozen = gc.get_freeze_count()
    collector.tick()
    assert gc.get_freeze_count() >= frozen + len(kept)
    assert not any(obj is kept[0] for obj in gc.get_objects())  # no collection walks them any more
    assert collector.stats.full_collections == 1


def test_garbage_made_before_a_tick_is_collected_by_it(counts: Counts) -> None:
    collector = YoungOnlyCollector(lambda: counts.closed, lambda: counts.open)
    collector.start()
    gone = weakref.ref(Cycle())
    collector.tick()
    assert gone() is None


def test_closed_connections_call_for_a_full_collection_that_frees_their_cycles(
    counts: Counts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gc_pauses, "MIN_CLOSED", 10)
    collector = YoungOnlyCollector(lambda: counts.closed, lambda: counts.open)
    collector.start()
    connections = [Cycle() for _ in range(40)]
    counts.open = len(connections)
    collector.tick()  # the connections are frozen now
    first = weakref.ref(connections[0])
    del connections[:9]
    counts.closed, counts.open = 9, 31
    collector.tick()
    assert first() is not None, "nine of 40 is under a quarter: no full collection yet"
    assert collector.stats.full_collections == 1
    del connections[:2]
    counts.closed, counts.open = 11, 29
    collector.tick()
    assert collector.stats.full_collections == 2
    assert first() is None


def test_a_fourfold_frozen_heap_calls_for_a_full_collection_whatever_closed(counts: Counts) -> None:
    collector = YoungOnlyCollector(lambda: counts.closed, lambda: counts.open)
    collector.start()
    kept: list[Cycle] = []
    for _ in range(20):
        kept.extend(Cycle() for _ in range(gc.get_freeze_count() // 4 + 1))
        collector.tick()
        if collector.stats.full_collections > 1:
            break
    assert collector.stats.full_collections == 2
    assert collector.stats.frozen >= len(kept)
