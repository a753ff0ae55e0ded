"""Training jobs through the API, as users run them: a real server, real child processes (`python -m
bot.training.job`), short mock-cache runs, raw WebSocket spectators of each job's session."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import socketio
import websockets

from bot.config import Settings
from bot.sdk import Spool
from tests.conftest import TIMEOUT, LiveServer
from tests.e2e.test_deploy import free_port
from tests.reliability.harness import ServerProcess

pytestmark = pytest.mark.slow  # each job starts Python, torch and gymnasium afresh

JOB_TIMEOUT = TIMEOUT * 6  # a child process imports torch before its first episode
EVENTS = ("training_started", "training_progress", "training_completed", "training_stopped", "training_error")


@pytest.fixture(params=["process", pytest.param("ray", marks=pytest.mark.xdist_group("ray"))])
def job_settings(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Settings:
    """Each job test runs on both backends: child processes, and a local Ray head of the run's own."""
    update: dict[str, Any] = {"models_dir": tmp_path / "models", "max_concurrent_jobs": 2}
    if request.param == "ray":
        ray_python = sys.executable  # the cluster runs jobs with this environment's Python
        update |= {
            "job_backend": "ray",
            "ray_address": request.getfixturevalue("ray_address"),
            "ray_python": ray_python,
        }
    return settings.model_copy(update=update)


@pytest.fixture
async def jobs_server(server_factory: Any, job_settings: Settings) -> LiveServer:
    live: LiveServer = await server_factory(job_settings)
    return live


async def start(client: httpx.AsyncClient, scenario: str = "mock_cache", **fields: Any) -> dict[str, Any]:
    body = {"scenario_name": scenario, "num_episodes": 100_000, "save_interval": 50, "eval_episodes": 1, **fields}
    # A Ray job's submission waits for Ray's job supervisor, which on a fresh cluster under a loaded 2-core
    # machine took more than TIMEOUT twice (fresh-clone runs); the answer is the same, only later.
    response = await client.post("/api/training/start", json=body, timeout=JOB_TIMEOUT)
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    assert answer["message"] == "Training started successfully" and answer["data"]["status"] == "started"
    return answer["data"]


class EventWatcher:
    """A raw WebSocket spectator of a job's session that keeps the job events it receives, in order."""

    def __init__(self, live: LiveServer, session_id: str) -> None:
        self.url = live.ws_url(session_id, f"since=0&types={','.join(EVENTS)}")
        self.events: list[dict[str, Any]] = []
        self.ws: Any = None

    async def __aenter__(self) -> EventWatcher:
        self.ws = await websockets.connect(self.url, compression=None, open_timeout=TIMEOUT)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.ws.close()

    async def until(self, event: str) -> dict[str, Any]:
        async with asyncio.timeout(JOB_TIMEOUT):
            while True:
                message = orjson.loads(await self.ws.recv())
                if message["type"] in EVENTS:
                    self.events.append(message)
                    if message["type"] == event:
                        return message

    def kinds(self) -> list[str]:
        return [event["type"] for event in self.events]


async def ended(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    async with asyncio.timeout(JOB_TIMEOUT):
        while True:
            row: dict[str, Any] = (await client.get(f"/api/training/jobs/{job_id}")).json()
            if row["status"] not in ("running", "stopping"):
                return row
            await asyncio.sleep(0.1)


def alive(pid: int | None) -> bool:
    """Whether a job's process lives (a Ray job has no pid here: Ray's status says it ended)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def pid_of(job_id: str) -> int:
    """The process of a job that runs elsewhere (a Ray job on this machine's head), by its command line."""
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if b"bot.training.job" in argv and job_id.encode() in argv:
                return int(entry.name)
    raise AssertionError(f"no process of job {job_id}")


class SocketIOWatcher:
    """The original design's Python client (python-socketio), subscribed to every job's events."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient()
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.completed = asyncio.Event()
        for event in ("connection_established", *EVENTS):
            self.client.on(event, self._keep(event))

    def _keep(self, event: str) -> Any:
        async def keep(data: dict[str, Any]) -> None:
            self.events.append((event, data))
            if event in ("training_completed", "training_stopped", "training_error"):
                self.completed.set()

        return keep

    async def connect(self, url: str) -> dict[str, Any]:
        await self.client.connect(url, wait_timeout=TIMEOUT)  # long polling first, then the WebSocket upgrade
        answer: dict[str, Any] = await self.client.call("subscribe_training", {}, timeout=TIMEOUT)
        return answer


async def test_a_job_runs_to_the_end_watched_live(jobs_server: LiveServer, job_settings: Settings) -> None:
    """Start → 202; the session's raw WebSocket spectator and a Socket.IO client both get started, a progress
    for every episode, completed; status and jobs say so; the models and checkpoints are where the original
    design puts them."""
    sio = SocketIOWatcher()
    assert await sio.connect(jobs_server.url) == {"status": "subscribed", "job_id": None}
    async with httpx.AsyncClient(base_url=jobs_server.url, timeout=TIMEOUT) as client:
        job = await start(client, num_episodes=6, save_interval=3, seed=1)
        async with EventWatcher(jobs_server, job["session_id"]) as watcher:
            completed = await watcher.until("training_completed")
        assert watcher.kinds() == ["training_started", *["training_progress"] * 6, "training_completed"]
        async with asyncio.timeout(TIMEOUT):
            await sio.completed.wait()
        await sio.client.disconnect()
        assert [kind for kind, _ in sio.events] == [
            "connection_established",
            "training_started",
            *["training_progress"] * 6,
            "training_completed",
        ]
        assert [data for _, data in sio.events[1:]] == [event["data"] for event in watcher.events]
        progress = [event["data"] for event in watcher.events[1:-1]]
        assert [p["episode"] for p in progress] == [1, 2, 3, 4, 5, 6]
        assert {"avg_reward", "avg_duration", "elapsed_time", "total_episodes"} <= set(progress[0])
        assert completed["data"]["episodes_completed"] == 6 and completed["data"]["job_id"] == job["job_id"]
        # the original design's keys and types (#26.3)
        started = watcher.events[0]["data"]
        assert started["num_episodes"] == 6 and datetime.fromisoformat(started["start_time"]) and job["start_time"]
        final = completed["data"]["final_metrics"]
        assert final["episodes_completed"] == 6 and final["model_path"] == completed["data"]["model_path"]
        status = (await client.get("/api/training/status")).json()
        assert (status["is_training"], status["current_episode"], status["total_episodes"]) == (False, 6, 6)
        assert status["latest_progress"]["episode"] == 6 and status["scenario_name"] == "mock_cache"
        assert status["start_time"] == job["start_time"] and datetime.fromisoformat(status["start_time"])
        listed = (await client.get("/api/training/jobs")).json()["jobs"]
        assert [(j["job_id"], j["status"], j["exit_code"]) for j in listed] == [(job["job_id"], "completed", 0)]
        history = (await client.get(f"/api/training/sessions/{job['session_id']}/history")).json()
        assert [m["type"] for m in history["messages"]].count("training_progress") == 6
        assert any(m["type"] == "training_metrics" for m in history["messages"])  # the child's own pushes
        metadata = (await client.get(f"/api/training/sessions/{job['session_id']}")).json()["metadata"]
        assert metadata["job_id"] == job["job_id"] and metadata["num_episodes"] == 6, metadata
        config = metadata["config"]  # the whole configuration the job trained with, defaults filled in
        assert config["max_episodes"] == 6 and config["seed"] == 1 and config["learning_rate"] > 0, config
    models = job_settings.models_dir
    checkpoints = models / "checkpoints" / "mock_cache"
    assert (models / "mock_cache_final.pt").is_file() and (models / "mock_cache_history.json").is_file()
    for folder in ("checkpoint_episode_3", "checkpoint_best", "checkpoint_final"):
        assert (checkpoints / folder / "model.pt").is_file(), folder


async def test_a_stop_saves_a_checkpoint_and_ends_the_process(jobs_server: LiveServer, job_settings: Settings) -> None:
    async with httpx.AsyncClient(base_url=jobs_server.url, timeout=TIMEOUT) as client:
        job = await start(client)
        async with EventWatcher(jobs_server, job["session_id"]) as watcher:
            await watcher.until("training_progress")
            response = await client.post("/api/training/stop", json={"job_id": job["job_id"]})
            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer["message"] == "Training stopped successfully", answer
            assert answer["data"]["status"] == "stopped" and answer["data"]["total_episodes"] == 100_000
            stopped = await watcher.until("training_stopped")
        done = answer["data"]["episodes_completed"]
        assert done >= 1 and stopped["data"]["checkpoint"].endswith(f"checkpoint_episode_{done}")
        seed = (await client.get(f"/api/training/jobs/{job['job_id']}")).json()["params"]["seed"]
        assert isinstance(seed, int) and 0 <= seed < 2**32  # none was asked for: one was drawn, and is kept
        assert (Path(stopped["data"]["checkpoint"]) / "model.pt").exists()
        assert not (job_settings.models_dir / "checkpoints" / "mock_cache").exists()  # only completed jobs show
        row = await ended(client, job["job_id"])  # the child may still be handing its last points over
        assert (row["status"], row["exit_code"]) == ("stopped", 130) and not alive(row["pid"])
        again = await client.post("/api/training/stop")
        assert again.status_code == 400 and "no training job is running" in again.json()["detail"]


async def test_a_killed_job_is_failed_with_its_exit_status(jobs_server: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=jobs_server.url, timeout=TIMEOUT) as client:
        job = await start(client)
        async with EventWatcher(jobs_server, job["session_id"]) as watcher:
            await watcher.until("training_progress")
            pid = (await client.get(f"/api/training/jobs/{job['job_id']}")).json()["pid"] or pid_of(job["job_id"])
            os.kill(pid, signal.SIGKILL)
            error = await watcher.until("training_error")
        assert error["data"]["exit_code"] == -9 and "SIGKILL" in error["data"]["error"]
        assert error["data"]["message"] == error["data"]["error"] and error["data"]["details"] == {"exit_code": -9}
        row = (await client.get(f"/api/training/jobs/{job['job_id']}")).json()
        assert (row["status"], row["exit_code"]) == ("failed", -9)
        assert (await client.get("/api/training/status")).json()["is_training"] is False


async def test_limits_and_bad_requests_start_nothing(server_factory: Any, job_settings: Settings) -> None:
    """Two scenarios at once; the same one again, or a third job past max_concurrent_jobs → 400; an unknown
    scenario → 404; a bad body → 422 naming the field. A server that shuts down stops its jobs, given the time
    a Ray job's stop takes on a busy machine (its checkpoint, then Ray's word that it ended)."""
    job_settings = job_settings.model_copy(update={"shutdown_timeout": TIMEOUT})
    live = await server_factory(job_settings)
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        first = await start(client, "mock_cache")
        again = await client.post("/api/training/start", json={"scenario_name": "mock_cache"})
        assert again.status_code == 400 and "already training" in again.json()["detail"]
        second = await start(client, "cartpole")
        third = await client.post("/api/training/start", json={"scenario_name": "mock_cache", "allow_concurrent": True})
        assert third.status_code == 400 and "max_concurrent_jobs" in third.json()["detail"]
        unknown = await client.post("/api/training/start", json={"scenario_name": "atari"})
        assert unknown.status_code == 404 and "cartpole" in unknown.json()["detail"]
        for body, field in (
            ({"num_episodes": 5}, "scenario_name"),
            ({"scenario_name": "cartpole", "num_episodes": 0}, "num_episodes"),
            ({"scenario_name": "cartpole", "num_episodes": "5"}, "num_episodes"),
            ({"scenario_name": "cartpole", "seed": -1}, "seed"),
            ({"scenario_name": "cartpole", "episodes": 5}, "episodes"),
        ):
            refused = await client.post("/api/training/start", json=body)
            assert refused.status_code == 422 and field in refused.text, (body, refused.text)
        ambiguous = await client.post("/api/training/stop")
        assert ambiguous.status_code == 400 and "say which" in ambiguous.json()["detail"]
        jobs = (await client.get("/api/training/jobs")).json()["jobs"]
        assert {j["job_id"] for j in jobs} == {first["job_id"], second["job_id"]}
    await live.stop(timeout=3 * TIMEOUT)  # shutdown stops both jobs, gracefully, within its grace
    restarted = await server_factory(job_settings)
    async with httpx.AsyncClient(base_url=restarted.url, timeout=TIMEOUT) as client:
        jobs = (await client.get("/api/training/jobs")).json()["jobs"]
    assert {j["status"] for j in jobs} == {"stopped"}, [(j["status"], j["exit_code"], j["error"]) for j in jobs]
    assert not any(alive(j["pid"]) for j in jobs)


async def training_job(url: str) -> tuple[dict[str, Any], int]:
    """A job started on the server at `url`, once it has trained an episode, and its process id."""
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as client:
        job = await start(client)
        async with asyncio.timeout(JOB_TIMEOUT):
            while (await client.get("/api/training/status")).json()["current_episode"] < 1:
                await asyncio.sleep(0.2)
        pid: int = (await client.get(f"/api/training/jobs/{job['job_id']}")).json()["pid"]
    return job, pid


async def test_sigterm_stops_a_job_while_the_server_still_takes_its_last_points(tmp_path: Path) -> None:
    """`bot serve` told to stop (SIGTERM) with a job running: the job is stopped first, while the server still
    answers, so the job's last points and its session's `stopped` reach the database, not a spool: the
    session was left `running` (its end waited in a spool) and the exit took longer than the shutdown's time."""
    spool = tmp_path / "spool"
    env = {"TMS_MODELS_DIR": str(tmp_path / "models"), "TMS_SPOOL_DIR": str(spool)}
    server = ServerProcess(tmp_path / "metrics.db", free_port(), env=env)
    await asyncio.to_thread(server.start)
    try:
        job, pid = await training_job(server.url)
        await asyncio.to_thread(server.stop)  # SIGTERM, and the process ends (within TIMEOUT)
        assert not alive(pid)
        await asyncio.to_thread(server.start)
        async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as client:
            row = (await client.get(f"/api/training/jobs/{job['job_id']}")).json()
            session = (await client.get(f"/api/training/sessions/{job['session_id']}")).json()
    finally:
        server.stop()
    assert row["status"] == "stopped", row
    assert session["status"] == "stopped", session
    assert Spool(spool).pending() == 0  # everything reached the server before it stopped


async def test_a_server_crash_stops_its_jobs_and_the_restart_marks_them_failed(tmp_path: Path) -> None:
    """SIGKILL the server: its job process stops with it (it never trains on alone); the restarted server
    marks the job failed and says so in the job's session. The server comes back at once, while the job still
    delivers its last points: the job says `failed` too, never `stopped` (a stop is what a user asks for)."""
    server = ServerProcess(tmp_path / "metrics.db", free_port(), env={"TMS_MODELS_DIR": str(tmp_path / "models")})
    await asyncio.to_thread(server.start)
    try:
        job, pid = await training_job(server.url)
        await asyncio.to_thread(server.kill9)
        await asyncio.to_thread(server.start)
        async with asyncio.timeout(JOB_TIMEOUT):
            while alive(pid):
                await asyncio.sleep(0.1)
        async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as client:
            row = (await client.get(f"/api/training/jobs/{job['job_id']}")).json()
            history = (await client.get(f"/api/training/sessions/{job['session_id']}/history")).json()
            session = (await client.get(f"/api/training/sessions/{job['session_id']}")).json()
    finally:
        server.stop()
        with contextlib.suppress(ProcessLookupError, NameError):
            os.kill(pid, signal.SIGKILL)
    assert row["status"] == "failed" and "server stopped" in row["error"]
    assert session["status"] == "failed", [
        (m["seq"], m["data"].get("status"), m["data"].get("message"))
        for m in history["messages"]
        if m["type"] in ("training_status", "training_error")
    ]
    assert any(m["type"] == "training_error" for m in history["messages"])
    statuses = [m["data"]["status"] for m in history["messages"] if m["type"] == "training_status"]
    assert "stopped" not in statuses, statuses
