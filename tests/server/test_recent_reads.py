"""RecentReads: one read serves every reader of a key while it is fresh; a failure is not kept."""

from __future__ import annotations

import asyncio

import pytest

from bot.server.live.recent_reads import RecentReads


async def test_concurrent_readers_share_one_read_while_it_is_fresh() -> None:
    reads = 0

    async def read() -> int:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.01)
        return reads

    shared = RecentReads(ttl=60)
    assert await asyncio.gather(*(shared.get("k", read) for _ in range(50))) == [1] * 50
    assert await shared.get("k", read) == 1 and reads == 1
    assert await shared.get("other", read) == 2
    assert await RecentReads(ttl=0).get("k", read) == 3  # a new holder, or a stale answer: read again


async def test_a_failed_read_is_not_kept() -> None:
    attempts = 0

    async def read() -> str:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise LookupError("gone")
        return "back"

    shared = RecentReads(ttl=60)
    with pytest.raises(LookupError):
        await shared.get("k", read)
    assert await shared.get("k", read) == "back" and attempts == 2


async def test_forgetting_a_group_makes_its_next_reader_read_again() -> None:
    reads = 0

    async def read() -> int:
        nonlocal reads
        reads += 1
        return reads

    shared = RecentReads(ttl=60)
    assert await shared.get(("summary", "a"), read, "a") == 1
    assert await shared.get(("summary", "b"), read, "b") == 2
    shared.forget("a")  # a commit to session a
    assert await shared.get(("summary", "a"), read, "a") == 3
    assert await shared.get(("summary", "b"), read, "b") == 2  # b's answer still shared
