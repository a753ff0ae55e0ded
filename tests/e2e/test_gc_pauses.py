"""`bot serve`'s garbage collector (bot/server/gc_pauses.py) seen from outside, over /metrics: spectators'
objects are frozen while they stay, and reclaimed once enough of them have gone."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import websockets

from tests.conftest import TIMEOUT, create_session
from tests.e2e.test_deploy import free_port, wait_until_serving

pytestmark = pytest.mark.slow  # a server process and three collector ticks: CI runs it, `-m "not slow"` skips it

SPECTATORS = 300  # past gc_pauses.MIN_CLOSED once they leave, with few connections open


def gc_figures(text: str) -> dict[str, float]:
    return {
        name: float(value)
        for line in text.splitlines()
        if line.startswith("tms_gc_") and " " in line
        for name, value in [line.split(" ", 1)]
    }


async def after_a_tick(client: httpx.AsyncClient) -> dict[str, float]:
    await asyncio.sleep(1.5)  # the collector's tick is once a second
    return gc_figures((await client.get("/metrics")).text)


async def test_spectators_objects_are_frozen_then_reclaimed_when_they_leave(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'gc.db'}", "MAX_CONNECTIONS_PER_SESSION": "400"}
    env.pop("REDIS_URL", None)
    process = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--port", str(port)], env=env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as client:
            await wait_until_serving(client)
            session_id = await create_session(client, "gc")
            before = await after_a_tick(client)
            assert before["tms_gc_full_collections_total"] >= 1  # the start-up heap's
            url = f"ws://127.0.0.1:{port}/ws/{session_id}"
            spectators = await asyncio.gather(*(websockets.connect(url) for _ in range(SPECTATORS)))
            welcomes = await asyncio.gather(*(spectator.recv() for spectator in spectators))
            assert all('"event":"connected"' in str(welcome) for welcome in welcomes)
            connected = await after_a_tick(client)
            assert connected["tms_gc_frozen_objects"] > before["tms_gc_frozen_objects"] + 50 * SPECTATORS
            assert connected["tms_gc_full_collections_total"] == before["tms_gc_full_collections_total"]
            await asyncio.gather(*(spectator.close() for spectator in spectators))
            gone = await after_a_tick(client)
            assert gone["tms_gc_full_collections_total"] > connected["tms_gc_full_collections_total"]
            assert gone["tms_gc_frozen_objects"] < connected["tms_gc_frozen_objects"]
    finally:
        process.terminate()
        process.wait(TIMEOUT)
