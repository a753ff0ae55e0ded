"""`bot serve`'s garbage collector (bot/server/gc_pauses.py) seen from outside, over /metrics: spectators'
objects are frozen while they stay, and reclaimed once enough of them have gone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import websockets

from bot.server.gc_pauses import MIN_FULL_SECONDS
from tests.conftest import TIMEOUT, create_session
from tests.e2e.test_deploy import bot_serve

pytestmark = pytest.mark.slow  # a server process and 10 s between full collections: `-m "not slow"` skips it

SPECTATORS = 300  # past gc_pauses.MIN_GONE once they leave


def gc_figures(text: str) -> dict[str, float]:
    return {
        name: float(value)
        for line in text.splitlines()
        if line.startswith("tms_gc_") and " " in line
        for name, value in [line.split(" ", 1)]
    }


async def figures_once(
    client: httpx.AsyncClient, holds: Callable[[dict[str, float]], bool], seconds: float = TIMEOUT
) -> dict[str, float]:
    """/metrics' tms_gc_* figures, read again until `holds` (the collector ticks once a second)."""
    async with asyncio.timeout(seconds):
        while not holds(figures := gc_figures((await client.get("/metrics")).text)):
            await asyncio.sleep(0.2)
    return figures


async def test_spectators_objects_are_frozen_then_reclaimed_when_they_leave(tmp_path: Path) -> None:
    async with bot_serve(tmp_path, MAX_CONNECTIONS_PER_SESSION="400") as (_, client):
        session_id = await create_session(client, "gc")
        before = await figures_once(client, lambda f: f.get("tms_gc_full_collections_total", 0) >= 1)
        url = f"ws://127.0.0.1:{client.base_url.port}/ws/{session_id}"
        spectators = await asyncio.gather(*(websockets.connect(url) for _ in range(SPECTATORS)))
        welcomes = await asyncio.gather(*(spectator.recv() for spectator in spectators))
        assert all('"event":"connected"' in str(welcome) for welcome in welcomes)
        connected = await figures_once(
            client, lambda f: f["tms_gc_frozen_objects"] > before["tms_gc_frozen_objects"] + 50 * SPECTATORS
        )
        assert connected["tms_gc_full_collections_total"] == before["tms_gc_full_collections_total"]
        await asyncio.gather(*(spectator.close() for spectator in spectators))
        gone = await figures_once(
            client,
            lambda f: f["tms_gc_full_collections_total"] > connected["tms_gc_full_collections_total"],
            MIN_FULL_SECONDS + TIMEOUT,  # full collections are that far apart at least
        )
        # What the full collection kept: about what was there before them, not their 200 objects each.
        assert gone["tms_gc_frozen_objects"] < before["tms_gc_frozen_objects"] + 20 * SPECTATORS
