"""The training daemon as operators run it: a real server, real job processes, the `training-daemon`
session's spectator, the configuration changed through the API while the daemon runs."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from typing import Any

import httpx
import orjson
import pytest

from bot.config import Settings
from bot.store import Store
from bot.store.daemon import PutConfig
from tests.conftest import TIMEOUT, LiveServer
from tests.training.test_jobs import JOB_TIMEOUT, EventWatcher

pytestmark = pytest.mark.slow  # each run starts a job process (Python, torch and gymnasium)

RUN_EVENTS = "rl_v3.training.started,rl_v3.training.completed"


@pytest.fixture
async def daemon_server(server_factory: Any, settings: Settings, tmp_path: Any) -> LiveServer:
    """The daemon on, its stored configuration disabled until a test enables it (enabled is the default)."""
    async with Store(settings.database_url) as store:
        await store.write(PutConfig({"enabled": False}))
    changed = {"training_daemon": True, "models_dir": tmp_path / "models", "max_concurrent_jobs": 2}
    live: LiveServer = await server_factory(settings.model_copy(update=changed))
    return live


async def put_config(client: httpx.AsyncClient, **changes: Any) -> dict[str, Any]:
    response = await client.put("/api/training/daemon/config", json=changes)
    assert response.status_code == 200, response.text
    config: dict[str, Any] = response.json()
    return config


class RunWatcher(EventWatcher):
    """A spectator of the daemon's session, keeping its two event types."""

    def __init__(self, live: LiveServer) -> None:
        super().__init__(live, "training-daemon")
        self.url = live.ws_url("training-daemon", f"since=0&types={RUN_EVENTS}")

    async def next(self) -> dict[str, Any]:
        async with asyncio.timeout(JOB_TIMEOUT):
            while True:
                message: dict[str, Any] = orjson.loads(await self.ws.recv())
                if message["type"].startswith("rl_v3."):
                    return message


async def wait_for_session(client: httpx.AsyncClient) -> None:
    async with asyncio.timeout(TIMEOUT):
        while (await client.get("/api/training/sessions/training-daemon")).status_code != 200:
            await asyncio.sleep(0.05)


async def test_run_once_publishes_both_events_and_the_summary_counts_it(
    daemon_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with httpx.AsyncClient(base_url=daemon_server.url, timeout=TIMEOUT) as client:
        await put_config(client, enabled=False, episodes_per_run=3, scenario="mock_cache")
        with caplog.at_level(logging.INFO, logger="bot.training.daemon"):
            started = await client.post("/api/training/daemon/run")
            assert started.status_code == 202, started.text
            run_id = started.json()["data"]["run_id"]
            await wait_for_session(client)
            async with RunWatcher(daemon_server) as watcher:
                first, last = await watcher.next(), await watcher.next()
        assert first["type"] == "rl_v3.training.started"
        assert first["data"]["run_id"] == run_id and first["data"]["episodes"] == 3 and first["data"]["timestamp"] > 0
        assert last["type"] == "rl_v3.training.completed"
        completed = last["data"]
        assert (completed["run_id"], completed["success"], completed["episodes"]) == (run_id, True, 3)
        assert {"duration_seconds", "avg_reward", "final_reward", "timestamp"} <= set(completed)
        assert "error" not in completed
        lines = [r.getMessage() for r in caplog.records]
        assert any(line.startswith(f"[RLv3][TRAINING][RUN_ID={run_id}][episode=3/3]") for line in lines), lines
        for path in ("/api/training/summary", "/api/v1/rl-v3/dashboard/training-summary"):
            summary = (await client.get(path)).json()
            assert (summary["total_runs"], summary["successful_runs"], summary["success_rate"]) == (1, 1, 1.0)
            assert summary["recent_runs"][0]["run_id"] == run_id and summary["last_error"] is None
            assert summary["daemon"]["config"]["episodes_per_run"] == 3


async def test_a_failed_run_is_counted_with_its_error(daemon_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=daemon_server.url, timeout=TIMEOUT) as client:
        await put_config(client, enabled=False, episodes_per_run=100_000)
        run_id = (await client.post("/api/training/daemon/run")).json()["data"]["run_id"]
        busy = await client.post("/api/training/daemon/run")
        assert busy.status_code == 409 and run_id in busy.json()["detail"]
        async with asyncio.timeout(JOB_TIMEOUT):
            while not (jobs := (await client.get("/api/training/jobs")).json()["jobs"]) or not jobs[0]["pid"]:
                await asyncio.sleep(0.1)
        await wait_for_session(client)
        async with RunWatcher(daemon_server) as watcher:
            assert (await watcher.next())["type"] == "rl_v3.training.started"
            os.kill(jobs[0]["pid"], signal.SIGKILL)
            completed = (await watcher.next())["data"]
        assert completed["success"] is False and "SIGKILL" in completed["error"]
        summary = (await client.get("/api/training/summary")).json()
        assert (summary["total_runs"], summary["failed_runs"], summary["success_rate"]) == (1, 1, 0.0)
        assert "SIGKILL" in summary["last_error"]


async def test_a_new_interval_takes_effect_without_a_restart(daemon_server: LiveServer) -> None:
    """Disabled, nothing runs; a PUT that enables it with a 1.2-second interval makes runs follow, each in a
    window of its own; another PUT disables it again."""
    async with httpx.AsyncClient(base_url=daemon_server.url, timeout=TIMEOUT) as client:
        await put_config(client, enabled=False, episodes_per_run=2)
        assert (await client.get("/api/training/summary")).json()["total_runs"] == 0
        await put_config(client, enabled=True, interval_minutes=0.02)
        async with asyncio.timeout(JOB_TIMEOUT * 2):
            while (summary := (await client.get("/api/training/summary")).json())["successful_runs"] < 2:
                await asyncio.sleep(0.2)
        await put_config(client, enabled=False)
        runs = summary["recent_runs"]
        assert all(run["trigger"] == "schedule" for run in runs)
        windows = [int(run["started_at"] // 1.2) for run in runs]
        assert len(set(windows)) == len(windows)
        status = (await client.get("/api/training/daemon/status")).json()
        assert status["active"] is True and status["config"]["enabled"] is False


async def test_bad_configurations_are_refused_and_change_nothing(daemon_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=daemon_server.url, timeout=TIMEOUT) as client:
        before = (await client.get("/api/training/daemon/config")).json()
        assert (before["enabled"], before["interval_minutes"], before["episodes_per_run"]) == (False, 60.0, 2)
        for body, field in (
            ({"interval_minutes": 0}, "interval_minutes"),
            ({"episodes_per_run": "3"}, "episodes_per_run"),
            ({"enabled": "yes"}, "enabled"),
            ({"scenario": "atari"}, "scenario"),
            ({"every": 5}, "every"),
        ):
            refused = await client.put("/api/training/daemon/config", json=body)
            assert refused.status_code == 422 and field in refused.text, (body, refused.text)
        assert (await client.get("/api/training/daemon/config")).json() == before


async def test_a_server_with_the_daemon_off_runs_nothing(live: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        refused = await client.post("/api/training/daemon/run")
        assert refused.status_code == 400 and "TMS_TRAINING_DAEMON" in refused.json()["detail"]
        assert (await client.get("/api/training/daemon/status")).json()["state"] == "off"
