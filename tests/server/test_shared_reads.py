"""SharedRead: one fetch for everyone who asked while the previous one ran, and only fetches that start
after one asked (so a join's snapshot is never older than its registration with the hub)."""

from __future__ import annotations

import asyncio

import pytest

from bot.server.live.direct import wire_frame
from bot.server.live.shared_reads import ReplayPage, SharedRead


async def test_callers_during_a_fetch_share_the_next_one() -> None:
    started: list[list[int]] = []
    release = asyncio.Event()

    async def fetch(key: str, args: list[int]) -> tuple[int, list[int]]:
        started.append(list(args))
        number = len(started)
        await release.wait()
        return number, sorted(args)

    shared: SharedRead[str, int, tuple[int, list[int]]] = SharedRead(fetch)
    first = asyncio.create_task(shared.read("s", 0))
    await asyncio.sleep(0)
    later = [asyncio.create_task(shared.read("s", n)) for n in range(1, 50)]
    other = asyncio.create_task(shared.read("t", 99))
    await asyncio.sleep(0)
    release.set()
    assert await first == (1, [0])  # started before the others asked: theirs is the next fetch
    assert [await task for task in later] == [(3, list(range(1, 50)))] * 49
    assert await other == (2, [99])
    assert shared.fetches == 3


async def test_a_failed_fetch_fails_its_callers_and_the_next_one_runs() -> None:
    calls = 0

    async def fetch(key: str, args: list[None]) -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        if calls == 1:
            raise LookupError("gone")
        return "back"

    shared: SharedRead[str, None, str] = SharedRead(fetch)
    failing = [asyncio.create_task(shared.read("s", None)) for _ in range(3)]
    with pytest.raises(LookupError):
        await failing[0]
    assert await shared.read("s", None) == "back"


async def test_a_caller_that_goes_away_cancels_nobody_else() -> None:
    async def fetch(key: str, args: list[None]) -> str:
        await asyncio.sleep(0.01)
        return key

    shared: SharedRead[str, None, str] = SharedRead(fetch)
    leaving = asyncio.create_task(shared.read("s", None))
    staying = asyncio.create_task(shared.read("s", None))
    await asyncio.sleep(0)
    leaving.cancel()
    assert await staying == "s"


def test_a_replay_page_gives_each_since_its_frames_framed_once() -> None:
    """Each spectator of a storm takes the page's tail after its own `since`: the same frames, in the same
    bytes, as framing each of them on its own."""
    frames = [(seq, "training_metrics", f'{{"seq":{seq},"data":"{"x" * seq * 3}"}}') for seq in range(5, 65)]
    page = ReplayPage(frames)
    for since in (0, 4, 5, 30, 63, 64, 99):
        expected = [frame for frame in frames if frame[0] > since]
        assert page.after(since) == expected
        assert bytes(page.wire_after(since)) == b"".join(wire_frame(text) for _, _, text in expected)
    assert ReplayPage([]).after(0) == [] and bytes(ReplayPage([]).wire_after(0)) == b""
