"""Big ingest bodies read by a worker process: stored whole, refused whole, and a dead worker loses nothing."""

from __future__ import annotations

import multiprocessing
import os
import signal
from typing import Any

import httpx
import pytest

from bot.config import Settings
from tests.conftest import TIMEOUT, create_session


def points(first: int, count: int) -> list[dict[str, Any]]:
    return [{"episode": i, "current_reward": i / 7, "custom": {"kl": 0.01}} for i in range(first, first + count)]


async def test_big_batches_go_through_a_worker_process(
    server_factory: Any, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    live = await server_factory(settings.model_copy(update={"ingest_processes": 1}))
    url = "/api/training/sessions/{}/metrics"
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "big")
        stored = await client.post(url.format(session_id), json=points(0, 2000))
        assert stored.status_code == 200 and (stored.json()["first_seq"], stored.json()["last_seq"]) == (1, 2000)

        bad = points(2000, 2000)
        bad[1500]["episode"] = -1
        refused = await client.post(url.format(session_id), json=bad)
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["body", 1500, "episode"]

        workers = multiprocessing.active_children()
        assert workers, "the server should have started a worker process"
        for worker in workers:
            os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
        for first in (2000, 4000, 6000):  # the first may meet the dead worker; each is stored once anyway
            response = await client.post(url.format(session_id), json=points(first, 2000))
            assert response.status_code == 200, response.text

        assert "worker process died" in caplog.text

        history = (await client.get(f"/api/training/sessions/{session_id}/history", params={"limit": 10_000})).json()
    seqs = [message["seq"] for message in history["messages"]]
    episodes = [message["data"]["episode"] for message in history["messages"]]
    assert seqs == list(range(1, 8001)) and episodes == list(range(8000))
