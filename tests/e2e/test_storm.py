"""A reconnect storm: past the connect rate, spectators get 1013 with a retry delay before any work, and
once they retry as advised every one resumes from its `since` with no gap."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
import pytest
import websockets

from bot.config import Settings
from tests.conftest import TIMEOUT, create_session

pytestmark = pytest.mark.slow


async def resume(url: str, since: int, until: int) -> tuple[list[int], list[float]]:
    """Connect with since, retrying as 1013s advise; (the seqs received up to `until`, the delays advised)."""
    advised: list[float] = []
    async with asyncio.timeout(TIMEOUT * 3):
        while True:
            async with websockets.connect(f"{url}?since={since}", compression=None) as ws:
                first = orjson.loads(await ws.recv())
                if first["type"] == "error":
                    assert first["data"]["code"] == "try_again_later", first
                    advised.append(first["data"]["retry_after"])
                    try:
                        await ws.recv()
                    except websockets.ConnectionClosed as closed:
                        assert closed.rcvd is not None and closed.rcvd.code == 1013
                        assert f"retry in {first['data']['retry_after']:g} s" in closed.rcvd.reason
                    await asyncio.sleep(first["data"]["retry_after"])
                    continue
                seqs: list[int] = []
                while not seqs or seqs[-1] < until:
                    message = orjson.loads(await ws.recv())
                    if message.get("seq") is not None:
                        seqs.append(message["seq"])
                return seqs, advised


async def test_a_reconnect_storm_is_spread_and_every_spectator_resumes(server_factory: Any, settings: Settings) -> None:
    live = await server_factory(settings.model_copy(update={"ws_connect_rate": 5, "max_connections_per_session": 100}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "storm")
        url = f"/api/training/sessions/{session_id}/metrics"
        assert (await client.post(url, json=[{"episode": i} for i in range(20)])).status_code == 200
        storm = [asyncio.create_task(resume(live.ws_url(session_id), since, 25)) for since in range(20)]
        await asyncio.sleep(0.2)
        assert (await client.post(url, json=[{"episode": i} for i in range(20, 25)])).status_code == 200
        results = await asyncio.gather(*storm)
    for since, (seqs, _) in enumerate(results):
        assert seqs == list(range(since + 1, 26)), (since, seqs)
    advised = [delay for _, delays in results for delay in delays]
    assert len(advised) >= 10 and len(set(advised)) > 1, advised  # most were told to wait, not all alike


async def test_a_hundred_spectators_resuming_at_once_while_pushes_go_on_miss_nothing(
    server_factory: Any, settings: Settings
) -> None:
    """Joins that share their reads (the snapshot and replay pages of one session) still each get exactly
    what follows their own `since`, with pushes committed while they join. Each spectator's queue has the
    default bound (the suite's is 50): the others' 99 join notices and 30 live frames arrive while it replays,
    which on a busy machine can take longer than the slow timeout; being cut off is another test's subject."""
    update = {"max_connections_per_session": 200, "max_backlog": Settings().max_backlog}
    live = await server_factory(settings.model_copy(update=update))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "shared-joins")
        url = f"/api/training/sessions/{session_id}/metrics"
        assert (await client.post(url, json=[{"episode": i} for i in range(1500)])).status_code == 200
        sinces = [(i * 37) % 1500 for i in range(100)]
        storm = [asyncio.create_task(resume(live.ws_url(session_id), since, 1530)) for since in sinces]
        for batch in range(30):
            assert (await client.post(url, json={"episode": 1500 + batch})).status_code == 200
        results = await asyncio.gather(*storm)
    for since, (seqs, advised) in zip(sinces, results, strict=True):
        assert seqs == list(range(since + 1, 1531)) and advised == [], since
