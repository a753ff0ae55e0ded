"""A history page is sent as the database reads it (bot/server/relay.py): its first frames are on their
way while the next chunk is read, and a client that leaves stops the read."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import orjson
import pytest

from bot.store import joined_frames as joined_module
from tests.conftest import TIMEOUT, create_session


class HeldChunks:
    """Wraps joined_frames' chunk read: the first chunk goes through, the next waits until released."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.release = threading.Event()
        self.reads = 0
        read = joined_module._chunk

        def held(*args: Any) -> Any:
            self.reads += 1
            if self.reads > 1 and not self.release.wait(TIMEOUT):
                raise TimeoutError("the test never released the read")
            return read(*args)

        monkeypatch.setattr(joined_module, "_chunk", held)
        monkeypatch.setattr(joined_module, "CHUNK", 10)


async def filled(client: httpx.AsyncClient, name: str, count: int) -> str:
    session_id = await create_session(client, name)
    body = [{"episode": i, "current_reward": i / 2} for i in range(count)]
    assert (await client.post(f"/api/training/sessions/{session_id}/metrics", json=body)).status_code == 200
    return session_id


async def test_the_first_frames_arrive_before_the_rest_is_read(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    session_id = await filled(client, "streamed", 35)
    held = HeldChunks(monkeypatch)
    received = b""
    async with client.stream("GET", f"/api/training/sessions/{session_id}/history", params={"limit": 30}) as r:
        assert r.status_code == 200
        chunks = r.aiter_raw()
        async with asyncio.timeout(TIMEOUT):
            while received.count(b'"type":"training_metrics"') < 10:  # the first chunk, the rest held back
                received += await anext(chunks)
        held.release.set()
        async for chunk in chunks:
            received += chunk
    page = orjson.loads(received)
    assert [m["data"]["episode"] for m in page["messages"]] == list(range(30))
    assert (page["count"], page["next_cursor"], page["last_seq"]) == (30, "30", 35)


async def test_a_client_that_leaves_mid_page_leaves_the_server_as_it_was(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The read it left behind ends (at the next chunk the server finds nobody to send to) without an error
    anywhere, and the next page is whole."""
    session_id = await filled(client, "left", 100)
    held = HeldChunks(monkeypatch)
    async with client.stream("GET", f"/api/training/sessions/{session_id}/history", params={"limit": 100}) as r:
        async with asyncio.timeout(TIMEOUT):
            await anext(r.aiter_raw())
    held.release.set()
    for _ in range(3):  # more pages than the pool of big reads has threads: none is held by the one left
        later = (await client.get(f"/api/training/sessions/{session_id}/history", params={"limit": 100})).json()
        assert [m["seq"] for m in later["messages"]] == list(range(1, 101))
    assert not [record for record in caplog.records if record.levelname in ("ERROR", "CRITICAL")]
