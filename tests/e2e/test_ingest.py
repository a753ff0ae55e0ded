"""Big ingest bodies read by a worker process: stored whole, refused whole; a dead worker loses nothing,
and a killed server leaves no worker behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings
from tests.conftest import TIMEOUT, create_session
from tests.e2e.test_deploy import bot_serve


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

        workers = children_of(os.getpid())
        assert workers, "the server should have started a worker process"
        for worker in workers:
            os.kill(worker, signal.SIGKILL)
        for first in (2000, 4000, 6000):  # the first may meet the dead worker; each is stored once anyway
            response = await client.post(url.format(session_id), json=points(first, 2000))
            assert response.status_code == 200, response.text

        assert "worker process died" in caplog.text

        history = (await client.get(f"/api/training/sessions/{session_id}/history", params={"limit": 10_000})).json()
    seqs = [message["seq"] for message in history["messages"]]
    episodes = [message["data"]["episode"] for message in history["messages"]]
    assert seqs == list(range(1, 8001)) and episodes == list(range(8000))


async def test_a_worker_that_cannot_be_replaced_leaves_no_request_waiting(
    server_factory: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The one worker dies with a body in it and one more body waiting for it, and no new worker can start
    (here: the Python it would run is gone): both bodies are read in the server process, and so is the next."""
    live = await server_factory(settings.model_copy(update={"ingest_processes": 1}))
    url = "/api/training/sessions/{}/metrics"
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "orphaned")
        [worker] = children_of(os.getpid())
        monkeypatch.setattr(sys, "executable", "/nonexistent/python")  # its replacement cannot start
        os.kill(worker, signal.SIGSTOP)  # takes a body and answers nothing
        try:
            pending = [
                asyncio.create_task(client.post(url.format(session_id), json=points(n, 2000))) for n in (0, 2000)
            ]
            await asyncio.sleep(0.5)  # one body is in the stopped worker, the other waits for it
        finally:
            os.kill(worker, signal.SIGKILL)
        async with asyncio.timeout(TIMEOUT):
            responses = await asyncio.gather(*pending)
        assert [response.status_code for response in responses] == [200, 200], [r.text for r in responses]
        later = await client.post(url.format(session_id), json=points(4000, 2000))
        assert later.status_code == 200, later.text
        assert "could not start an ingest worker" in caplog.text
        history = (await client.get(f"/api/training/sessions/{session_id}/history", params={"limit": 10_000})).json()
    assert [message["seq"] for message in history["messages"]] == list(range(1, 6001))
    assert sorted(message["data"]["episode"] for message in history["messages"]) == list(range(6000))


async def test_the_server_is_up_once_its_worker_has_done_its_imports(server_factory: Any, settings: Settings) -> None:
    """A server that answers has a worker that has loaded what it reads bodies with (pydantic's compiled
    core): its second or so of imports is over before the first client comes, not shared with it."""
    await server_factory(settings.model_copy(update={"ingest_processes": 1}))
    [worker] = children_of(os.getpid())
    assert "pydantic_core" in Path(f"/proc/{worker}/maps").read_text()


def children_of(pid: int, module: str = "bot.server.ingest.worker") -> list[int]:
    """The ingest workers among a process's children (a test process may have others: a Ray head, a server)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                if module.encode() in (stat.parent / "cmdline").read_bytes():
                    found.append(int(stat.parent.name))
    return found


@pytest.mark.slow
async def test_workers_leave_with_a_killed_server(tmp_path: Path) -> None:
    """kill -9 of `bot serve` leaves no worker process behind (nobody is left to close the pool)."""
    async with bot_serve(tmp_path, TMS_INGEST_PROCESSES="1") as (process, client):
        session_id = await create_session(client, "killed")
        response = await client.post(f"/api/training/sessions/{session_id}/metrics", json=points(0, 2000))
        assert response.status_code == 200
        workers = children_of(process.pid)
        assert workers, "the server should run a worker process"
        process.kill()
    async with asyncio.timeout(TIMEOUT):
        while any(Path(f"/proc/{pid}").exists() for pid in workers):
            await asyncio.sleep(0.1)


def test_the_worker_entry_point_starts_clean() -> None:
    """`python -m bot.server.ingest.worker` runs without a warning (none of the server's imports runs it
    first) and exits at the end of its input."""
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "bot.server.ingest.worker"],
        input=b"",
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0 and not result.stderr, result.stderr.decode()
