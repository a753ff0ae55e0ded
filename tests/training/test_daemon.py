"""The training daemon as operators run it: a real server, real job processes, the `training-daemon`
session's spectator, the configuration changed through the API (and with Redis, by hand with `redis-cli`)
while the daemon runs."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest

from bot.config import Settings
from bot.server.training.daemon import READ_CONFIG_EVERY, TrainingDaemon
from bot.store import Store
from bot.store.daemon import ClaimRun, FinishRun, PutConfig
from tests.conftest import TIMEOUT, LiveServer, PrivateRedis
from tests.training.test_jobs import JOB_TIMEOUT, EventWatcher

pytestmark = pytest.mark.slow  # each run starts a job process (Python, torch and gymnasium)

RUN_EVENTS = "rl_v3.training.started,rl_v3.training.completed"
QUICK_TICKS = {"training_daemon_tick": 0.1}  # the loop takes its 10 iterations in a second


@pytest.fixture
async def daemon_server(server_factory: Any, settings: Settings, tmp_path: Any) -> LiveServer:
    """The daemon's stored configuration disabled until a test enables it (TMS_TRAINING_DAEMON=1 makes enabled
    the default of a server with nothing stored)."""
    async with Store(settings.database_url) as store:
        await store.write(PutConfig({"enabled": False}))
    changed = {"training_daemon": True, "models_dir": tmp_path / "models", "max_concurrent_jobs": 2, **QUICK_TICKS}
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


DESIGN_SUMMARY = {
    "enabled",
    "interval_minutes",
    "episodes_per_run",
    "total_runs",
    "success_rate",
    "last_run_at",
    "last_error",
    "recent_runs",
}
DESIGN_RUN = {"timestamp", "episodes", "duration_seconds", "success", "avg_reward", "final_reward"}
SUMMARIES = ("/api/training/summary", "/api/v1/rl-v3/dashboard/training-summary")


def is_iso(value: Any) -> bool:
    return isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None


async def states(client: httpx.AsyncClient, daemon: TrainingDaemon) -> set[str]:
    """The daemon's state as every route shows it, and as get_status() does."""
    shown = {(await client.get("/api/training/daemon/status")).json()["state"], daemon.get_status()["state"]}
    return shown | {(await client.get(path)).json()["daemon"]["state"] for path in SUMMARIES}


async def enabled_everywhere(client: httpx.AsyncClient) -> set[bool]:
    """`enabled` as every route shows it."""
    shown = {(await client.get(path)).json()["enabled"] for path in SUMMARIES}
    shown.add((await client.get("/api/training/daemon/config")).json()["enabled"])
    return shown | {(await client.get("/api/training/daemon/status")).json()["enabled"]}


async def test_a_fresh_server_is_disabled_everywhere_and_runs_on_demand(
    server_factory: Any, settings: Settings, tmp_path: Any
) -> None:
    """Without TMS_TRAINING_DAEMON and nothing stored, every route says disabled and the loop (which always
    runs) starts nothing; POST /daemon/run still runs, and every route says `training` while it does."""
    live: LiveServer = await server_factory(settings.model_copy(update={"models_dir": tmp_path / "models"}))
    daemon: TrainingDaemon = live.server.lifespan.state["daemon"]
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        async with asyncio.timeout(TIMEOUT):
            while daemon.get_status()["iterations"] < 3:
                await asyncio.sleep(0.1)
        assert await enabled_everywhere(client) == {False} and await states(client, daemon) == {"disabled"}
        assert daemon.get_status()["running"] is True
        assert (await client.get(SUMMARIES[1])).json()["total_runs"] == 0
        started = await client.post("/api/training/daemon/run")
        assert started.status_code == 202, started.text
        async with asyncio.timeout(JOB_TIMEOUT):
            while (seen := await states(client, daemon)) != {"training"}:
                assert seen <= {"training", "disabled"}, seen  # a route may still say disabled for a moment
                await asyncio.sleep(0.05)
            while not (runs := (await client.get(SUMMARIES[1])).json()["recent_runs"]) or runs[0]["success"] is None:
                await asyncio.sleep(0.1)
        summary = (await client.get(SUMMARIES[1])).json()
        assert summary["total_runs"] == 1 and summary["recent_runs"][0]["success"] is True
        assert await states(client, daemon) == {"disabled"} and await enabled_everywhere(client) == {False}


@pytest.fixture
async def redis_daemon_server(
    server_factory: Any, settings: Settings, tmp_path: Any, private_redis: PrivateRedis
) -> LiveServer:
    """A server with a Redis of its own (the design's key names are fixed) and a scheduled run stored as
    started just now, so that enabling the daemon starts no run for an hour."""
    async with Store(settings.database_url) as store:
        await store.write(ClaimRun("run-earlier", "first", "schedule", "mock_cache", 2, "earlier-server"))
        await store.write(FinishRun("run-earlier", {"status": "succeeded"}))
    changed = {
        "redis_url": private_redis.url,
        "models_dir": tmp_path / "models",
        "max_concurrent_jobs": 2,
        **QUICK_TICKS,
    }
    live: LiveServer = await server_factory(settings.model_copy(update=changed))
    return live


async def redis_cli(redis: PrivateRedis, *command: str) -> str:
    """The real redis-cli, as an operator types it (`-n 0`: the private server's database)."""
    process = await asyncio.create_subprocess_exec(
        "redis-cli", "-p", str(redis.port), "-n", "0", *command, stdout=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(TIMEOUT):
        out, _ = await process.communicate()
    assert process.returncode == 0
    return out.decode().strip()


async def loop_reads(daemon: TrainingDaemon, field: str, value: Any) -> int:
    """Wait until the daemon's loop has read `value` for `field`; the iterations that took."""
    before = daemon.get_status()["iterations"]
    async with asyncio.timeout(TIMEOUT * 2):
        while daemon.get_status()[field] != value:
            await asyncio.sleep(0.05)
    taken: int = daemon.get_status()["iterations"] - before
    return taken


async def test_redis_is_the_live_configuration(redis_daemon_server: LiveServer, private_redis: PrivateRedis) -> None:
    """The API's PUT writes the `rl_v3.training.*` keys; `redis-cli SET rl_v3.training.enabled false` (and the
    interval and episodes) are shown by every route at once and taken by the loop within 10 iterations."""
    daemon: TrainingDaemon = redis_daemon_server.server.lifespan.state["daemon"]
    async with httpx.AsyncClient(base_url=redis_daemon_server.url, timeout=TIMEOUT) as client:
        assert await enabled_everywhere(client) == {False}
        await put_config(client, enabled=True, episodes_per_run=3)
        assert await redis_cli(private_redis, "GET", "rl_v3.training.enabled") == "true"
        assert await redis_cli(private_redis, "GET", "rl_v3.training.episodes_per_run") == "3"
        await loop_reads(daemon, "enabled", True)
        assert await enabled_everywhere(client) == {True} and await states(client, daemon) == {"idle"}

        assert await redis_cli(private_redis, "SET", "rl_v3.training.enabled", "false") == "OK"
        assert await enabled_everywhere(client) == {False}
        assert await loop_reads(daemon, "enabled", False) <= READ_CONFIG_EVERY + 1
        assert await states(client, daemon) == {"disabled"}

        await redis_cli(private_redis, "SET", "rl_v3.training.interval_minutes", "30")
        await redis_cli(private_redis, "SET", "rl_v3.training.episodes_per_run", "50")
        config = (await client.get("/api/training/daemon/config")).json()
        assert (config["interval_minutes"], config["episodes_per_run"], config["source"]) == (30.0, 50, "redis")
        assert await loop_reads(daemon, "episodes_per_run", 50) <= READ_CONFIG_EVERY + 1
        status = daemon.get_status()
        assert (status["interval_minutes"], status["running"], is_iso(status["last_check"])) == (30.0, True, True)
        for path in SUMMARIES:
            summary = (await client.get(path)).json()
            assert (summary["enabled"], summary["interval_minutes"], summary["episodes_per_run"]) == (False, 30.0, 50)
        assert (await client.get(SUMMARIES[0])).json()["total_runs"] == 1  # the stored one: nothing ran


async def test_a_bad_value_set_by_hand_is_logged_once_and_the_last_good_one_kept(
    redis_daemon_server: LiveServer, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """A value the API would refuse, SET with redis-cli, never crashes the loop: the last good value stays,
    and one warning names the key and the value however often it is read. A Redis that went away keeps the
    last values too, and a PUT then is a 503 that changes nothing."""
    live = redis_daemon_server
    daemon: TrainingDaemon = live.server.lifespan.state["daemon"]
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        await redis_cli(private_redis, "SET", "rl_v3.training.interval_minutes", "45")
        await loop_reads(daemon, "interval_minutes", 45.0)
        bad = {"interval_minutes": "banana", "episodes_per_run": "-3", "enabled": "yes", "scenario": "atari"}
        with caplog.at_level(logging.WARNING, logger="bot.training.daemon"):
            for field, value in bad.items():
                await redis_cli(private_redis, "SET", f"rl_v3.training.{field}", value)
            for _ in range(3):
                config = (await client.get("/api/training/daemon/config")).json()
                assert (config["interval_minutes"], config["episodes_per_run"]) == (45.0, 2)
                assert (config["enabled"], config["scenario"]) == (False, "mock_cache")
            before = daemon.get_status()["iterations"]
            async with asyncio.timeout(TIMEOUT * 2):  # the loop reads them too
                while daemon.get_status()["iterations"] < before + READ_CONFIG_EVERY + 1:
                    await asyncio.sleep(0.1)
        assert "daemon" not in live.server.lifespan.state["supervisor"].failing()
        assert daemon.get_status()["interval_minutes"] == 45.0 and daemon.get_status()["episodes_per_run"] == 2
        warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
        for field, value in bad.items():
            named = [line for line in warnings if f"rl_v3.training.{field} has value {value!r}" in line]
            assert len(named) == 1, (field, warnings)
        assert "keeps rl_v3.training.interval_minutes = 45.0" in " ".join(warnings)

        await redis_cli(private_redis, "DEL", "rl_v3.training.interval_minutes")  # gone: the database's value
        assert (await client.get("/api/training/daemon/config")).json()["interval_minutes"] == 60.0
        await put_config(client, interval_minutes=20)
        private_redis.stop()
        for _ in range(2):
            assert (await client.get("/api/training/daemon/config")).json()["interval_minutes"] == 20.0
        refused = await client.put("/api/training/daemon/config", json={"interval_minutes": 5})
        assert refused.status_code == 503 and "Redis" in refused.json()["detail"]
        private_redis.start()  # an empty Redis (no persistence): the database's values, the refused one absent
        assert (await client.get("/api/training/daemon/config")).json()["interval_minutes"] == 20.0


async def test_a_run_is_on_the_redis_streams_in_the_designs_shapes(
    redis_daemon_server: LiveServer, private_redis: PrivateRedis
) -> None:
    """`daemon.run_once()` on the app's daemon returns the design's dict; `XLEN rl_v3.training.started` counts
    the run, each stream entry carries the design's payload, and streams stay near 10,000 entries. Every
    route says `training` during the run, and the summary is the design's flat object."""
    import redis.asyncio as redis

    live = redis_daemon_server
    daemon: TrainingDaemon = live.server.lifespan.state["daemon"]
    app_daemon = live.app_server.app.state.rl_v3_training_daemon
    assert app_daemon is daemon and app_daemon._running is True
    client_redis: Any = redis.from_url(private_redis.url)
    async with client_redis.pipeline(transaction=False) as pipe:
        for i in range(12_000):  # an old, long stream: the run's entry trims it
            pipe.xadd("rl_v3.training.completed", {"payload": orjson.dumps({"old": i})})
        await pipe.execute()
    try:
        async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
            await put_config(client, episodes_per_run=2)
            run = asyncio.create_task(daemon.run_once())
            async with asyncio.timeout(JOB_TIMEOUT):
                while (seen := await states(client, daemon)) != {"training"}:
                    assert seen <= {"training", "disabled"}, seen
                    await asyncio.sleep(0.05)
                result = await run
            assert DESIGN_RUN | {"run_id", "error"} <= set(result) and is_iso(result["timestamp"])
            assert (result["episodes"], result["success"], result["error"]) == (2, True, None)
            assert await redis_cli(private_redis, "XLEN", "rl_v3.training.started") == "1"
            completed_length = int(await redis_cli(private_redis, "XLEN", "rl_v3.training.completed"))
            assert 10_000 <= completed_length < 12_001
            for stream, keys in (
                ("rl_v3.training.started", {"run_id", "episodes", "timestamp"}),
                ("rl_v3.training.completed", DESIGN_RUN | {"run_id"}),
            ):
                ((_, entry),) = await client_redis.xrevrange(stream, count=1)
                payload = orjson.loads(entry[b"payload"])
                assert entry[b"event_type"].decode() == stream and entry[b"trace_id"].decode() == result["run_id"]
                assert set(payload) == keys and payload["run_id"] == result["run_id"] and is_iso(payload["timestamp"])
            assert payload["success"] is True and payload["episodes"] == 2
            assert await states(client, daemon) == {"disabled"}
            for path in SUMMARIES:
                summary = (await client.get(path)).json()
                assert DESIGN_SUMMARY <= set(summary) and is_iso(summary["last_run_at"])
                assert (summary["total_runs"], summary["success_rate"], summary["last_error"]) == (2, 1.0, None)
                latest = summary["recent_runs"][0]
                assert DESIGN_RUN <= set(latest) and latest["run_id"] == result["run_id"]
                assert summary["last_run_at"] == latest["timestamp"] == result["timestamp"]
    finally:
        await client_redis.aclose()
