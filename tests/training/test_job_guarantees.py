"""Training jobs keep the server's promises (#24): with auth on a job pushes with a credential of its own and
stores its data; a job whose pushes are refused fails; two jobs of one scenario keep their own models; a job
and a daemon run whose server died are failed by another instance (leases); `training_completed` means the job
is over. Real servers, real child processes, real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio

from bot.config import Settings
from bot.server.training.job_backends import JobRun
from bot.store.engine import create_engines
from bot.store.keys import list_keys
from tests.conftest import TIMEOUT, LiveServer
from tests.e2e.test_auth import SECRET, keys
from tests.e2e.test_deploy import free_port
from tests.reliability.harness import ServerProcess
from tests.training.test_jobs import JOB_TIMEOUT, EventWatcher, alive, ended, start

pytestmark = pytest.mark.slow  # each job starts Python, torch and gymnasium afresh


def store_keys(database_url: str) -> list[dict[str, Any]]:
    writer, reader = create_engines(database_url)
    try:
        with reader.connect() as conn:
            return list_keys(conn)
    finally:
        writer.dispose()
        reader.dispose()


def revoke_job_keys(database_url: str) -> int:
    """Revoke every job's credential behind the server's back, as `bot keys revoke` would."""
    from bot.store.keys import revoke_key

    writer, reader = create_engines(database_url)
    try:
        with writer.begin() as conn:
            return sum(revoke_key(conn, k["key_id"]) for k in list_keys(conn) if (k["name"] or "").startswith("job:"))
    finally:
        writer.dispose()
        reader.dispose()


def environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {name.decode(): value.decode(errors="replace") for name, value in pairs}


async def first_progress(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    async with asyncio.timeout(JOB_TIMEOUT):
        while True:
            row: dict[str, Any] = (await client.get(f"/api/training/jobs/{job_id}")).json()
            if row["episodes_completed"] >= 1:
                return row
            await asyncio.sleep(0.1)


@pytest.fixture
def auth_settings(settings: Settings, tmp_path: Path) -> Settings:
    update = {
        "models_dir": tmp_path / "models",
        "max_concurrent_jobs": 2,
        "enable_auth": True,
        "jwt_secret_key": SECRET,
    }
    return settings.model_copy(update=update)


async def test_with_auth_on_a_job_stores_its_data_with_a_credential_of_its_own(
    server_factory: Any, auth_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child gets a `write` key limited to its session (never the server's JWT secret), pushes every
    episode with it, and the key is revoked when the job ends."""
    monkeypatch.setenv("JWT_SECRET_KEY", SECRET)  # as a server started with it in its environment
    live: LiveServer = await server_factory(auth_settings)
    (admin,) = keys(auth_settings.database_url, (["admin"], None))
    headers = {"Authorization": f"Bearer {admin}"}
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT, headers=headers) as client:
        job = await start(client, num_episodes=300, save_interval=100)
        row = await first_progress(client, job["job_id"])
        environment = environment_of(row["pid"])
        assert "JWT_SECRET_KEY" not in environment and "TMS_JWT_SECRET_KEY" not in environment
        assert environment["TMS_API_KEY"] != admin
        (credential,) = [k for k in store_keys(auth_settings.database_url) if k["name"] == f"job:{job['job_id']}"]
        assert (credential["scopes"], credential["session_id"], credential["revoked_at"]) == (
            "write",
            job["session_id"],
            None,
        )
        await client.post("/api/training/stop", json={"job_id": job["job_id"]})
        row = await ended(client, job["job_id"])
        assert row["status"] == "stopped", row
        session = (await client.get(f"/api/training/sessions/{job['session_id']}")).json()
        history = (await client.get(f"/api/training/sessions/{job['session_id']}/history?limit=1000")).json()
    kinds = [m["type"] for m in history["messages"]]
    assert kinds.count("training_metrics") >= 1 and "training_status" in kinds
    assert session["status"] in ("stopped", "failed", "completed") and session["status"] != "created"
    (credential,) = [k for k in store_keys(auth_settings.database_url) if k["name"] == f"job:{job['job_id']}"]
    assert credential["revoked_at"] is not None


async def test_a_job_whose_pushes_are_refused_fails_naming_why(server_factory: Any, auth_settings: Settings) -> None:
    live: LiveServer = await server_factory(auth_settings)
    (admin,) = keys(auth_settings.database_url, (["admin"], None))
    async with httpx.AsyncClient(
        base_url=live.url, timeout=TIMEOUT, headers={"Authorization": f"Bearer {admin}"}
    ) as client:
        job = await start(client)
        await first_progress(client, job["job_id"])
        assert revoke_job_keys(auth_settings.database_url) == 1
        row = await ended(client, job["job_id"])
        assert row["status"] == "failed" and row["exit_code"] == 3, row
        assert "refused" in row["error"] and "401" in row["error"], row["error"]
        session = (await client.get(f"/api/training/sessions/{job['session_id']}")).json()
    assert session["status"] == "failed"


async def test_two_jobs_of_one_scenario_keep_their_own_models(server_factory: Any, tmp_path: Path) -> None:
    """Each job writes into its own folder; the original design's names show the one that finished last."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'metrics.db'}",
        models_dir=tmp_path / "models",
        max_concurrent_jobs=2,
        ingest_processes=0,
    )
    live: LiveServer = await server_factory(settings)
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        first = await start(client, num_episodes=3, save_interval=1, seed=1)
        second = await start(client, num_episodes=3, save_interval=1, seed=2, allow_concurrent=True)
        rows = [await ended(client, job["job_id"]) for job in (first, second)]
        completed = {
            job["job_id"]: (await client.get(f"/api/training/jobs/{job['job_id']}")).json() for job in (first, second)
        }
        history = {
            job["job_id"]: (await client.get(f"/api/training/sessions/{job['session_id']}/history")).json()
            for job in (first, second)
        }
    assert [row["status"] for row in rows] == ["completed", "completed"]
    model_paths = {}
    for job_id, messages in history.items():
        (done,) = [m["data"] for m in messages["messages"] if m["type"] == "training_completed"]
        model_paths[job_id] = Path(done["model_path"])
        assert model_paths[job_id].is_file() and job_id in str(model_paths[job_id])
    assert len(set(model_paths.values())) == 2
    # The design's names show one finished job, whole: the model and the checkpoints of the same job (the one
    # that published last; the server's end_time may order them otherwise under load).
    models = settings.models_dir
    latest = (models / "checkpoints" / "mock_cache").resolve()
    (last,) = [job_id for job_id in completed if latest == (models / "jobs" / job_id / "checkpoints" / "mock_cache")]
    assert (models / "mock_cache_final.pt").read_bytes() == model_paths[last].read_bytes()
    for job_id in model_paths:
        assert (models / "jobs" / job_id / "checkpoints" / "mock_cache" / "checkpoint_episode_2" / "model.pt").is_file()


async def test_a_dead_servers_job_and_daemon_run_are_failed_by_another_instance(tmp_path: Path) -> None:
    """kill -9 the server on one port; one started on another port (sharing the database) finds the job and
    the daemon run whose lease ran out: failed, with a training_error, and the job's session failed."""
    env = {"TMS_MODELS_DIR": str(tmp_path / "models"), "TMS_JOB_LEASE_SECONDS": "1.5", "TMS_TRAINING_DAEMON": "1"}
    env["TMS_MAX_CONCURRENT_JOBS"] = "2"
    first = ServerProcess(tmp_path / "metrics.db", free_port(), env=env)
    second = ServerProcess(tmp_path / "metrics.db", free_port(), env=env)
    await asyncio.to_thread(first.start)
    pids: list[int] = []
    try:
        async with httpx.AsyncClient(base_url=first.url, timeout=TIMEOUT) as client:
            job = await start(client, "cartpole")  # beside the daemon's first scheduled run (mock_cache)
            await first_progress(client, job["job_id"])
            deadline = asyncio.get_running_loop().time() + JOB_TIMEOUT
            while len(running := (await client.get("/api/training/jobs")).json()["jobs"]) < 2:
                summary = (await client.get("/api/training/summary")).json()
                assert asyncio.get_running_loop().time() < deadline, f"no daemon job: {running} {summary}"
                await asyncio.sleep(0.1)
            (run_id,) = [r["run_id"] for r in (await client.get("/api/training/summary")).json()["recent_runs"]]
            pids = [j["pid"] for j in running]
        await asyncio.to_thread(first.kill9)
        await asyncio.to_thread(second.start)
        async with httpx.AsyncClient(base_url=second.url, timeout=TIMEOUT) as client:
            row = await ended(client, job["job_id"])
            async with asyncio.timeout(JOB_TIMEOUT):
                while True:
                    summary = (await client.get("/api/training/summary")).json()
                    (run,) = [r for r in summary["recent_runs"] if r["run_id"] == run_id]
                    if run["status"] != "running":
                        break
                    await asyncio.sleep(0.1)
            session = (await client.get(f"/api/training/sessions/{job['session_id']}")).json()
            history = (await client.get(f"/api/training/sessions/{job['session_id']}/history")).json()
            status = (await client.get("/api/training/status")).json()
            stop = await client.post("/api/training/stop")
    finally:
        second.stop()
        first.stop()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert row["status"] == "failed" and "went away" in row["error"], row
    assert run["status"] == "failed" and "went away" in run["error"], run
    assert session["status"] == "failed"
    assert history["messages"][-1]["type"] == "training_error"
    assert status["is_training"] is False and stop.status_code == 400


async def test_training_completed_means_the_job_is_over(server_factory: Any, tmp_path: Path) -> None:
    """A Socket.IO client that starts the same scenario the moment it hears `training_completed` is accepted."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'metrics.db'}", models_dir=tmp_path / "models", ingest_processes=0
    )
    live: LiveServer = await server_factory(settings)
    answers: list[tuple[int, Any]] = []
    heard = asyncio.Event()
    sio = socketio.AsyncClient()

    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:

        async def on_completed(data: dict[str, Any]) -> None:
            status = (await client.get("/api/training/status")).json()
            again = await client.post("/api/training/start", json={"scenario_name": "mock_cache", "num_episodes": 1})
            answers.append((again.status_code, status["is_training"]))
            heard.set()

        sio.on("training_completed", on_completed)
        await sio.connect(live.url, wait_timeout=TIMEOUT)
        await sio.call("subscribe_training", {}, timeout=TIMEOUT)
        job = await start(client, num_episodes=2, save_interval=1)
        async with asyncio.timeout(JOB_TIMEOUT):
            await heard.wait()
        await sio.disconnect()
        jobs = (await client.get("/api/training/jobs")).json()["jobs"]
        for other in jobs:
            if other["job_id"] != job["job_id"]:
                await ended(client, other["job_id"])
    assert answers == [(202, False)]
    assert not any(alive(j["pid"]) for j in jobs if j["pid"])


async def test_a_job_started_on_one_instance_is_watched_and_stopped_on_another(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    """Two `bot serve` processes on one PostgreSQL and one Redis: start on A; B refuses a second job (the
    limits count both instances' jobs); B's raw WebSocket spectator and Socket.IO client see the job's events;
    B's status and job list agree with A's; a bare stop on B stops it."""
    env = {"TMS_MODELS_DIR": str(tmp_path / "models")}
    a, b = (ServerProcess(postgres_url, free_port(), env=env, redis_url=redis_url) for _ in range(2))
    for instance in (a, b):
        await asyncio.to_thread(instance.start)
    sio = socketio.AsyncClient()
    heard: list[str] = []
    for event in ("training_started", "training_progress", "training_stopped"):
        sio.on(event, lambda data, event=event: heard.append(event))
    try:
        await sio.connect(b.url, wait_timeout=TIMEOUT)
        await sio.call("subscribe_training", {}, timeout=TIMEOUT)
        async with (
            httpx.AsyncClient(base_url=a.url, timeout=TIMEOUT) as on_a,
            httpx.AsyncClient(base_url=b.url, timeout=TIMEOUT) as on_b,
        ):
            job = await start(on_a)
            # The limits count every instance's jobs: B refuses a second mock_cache (and, with the default
            # max_concurrent_jobs of 1, any second job), and starts no process.
            for body in ({"scenario_name": "mock_cache"}, {"scenario_name": "cartpole", "num_episodes": 5}):
                refused = await on_b.post("/api/training/start", json=body, timeout=JOB_TIMEOUT)
                assert refused.status_code == 400 and "max_concurrent_jobs = 1" in refused.text, refused.text
            live_b = LiveServerAt(b.port)
            async with EventWatcher(live_b, job["session_id"]) as watcher:  # type: ignore[arg-type]
                await watcher.until("training_progress")
                status_a, status_b = [(await c.get("/api/training/status")).json() for c in (on_a, on_b)]
                assert status_b["job_id"] == status_a["job_id"] == job["job_id"] and status_b["is_training"]
                stop = await on_b.post("/api/training/stop")
                assert stop.status_code == 200, stop.text
                stopped = await watcher.until("training_stopped")
            row_a, row_b = [await ended(c, job["job_id"]) for c in (on_a, on_b)]
            jobs_b = (await on_b.get("/api/training/jobs")).json()["jobs"]
        async with asyncio.timeout(TIMEOUT):
            while "training_stopped" not in heard:
                await asyncio.sleep(0.05)
    finally:
        await sio.disconnect()
        for instance in (a, b):
            instance.stop()
    assert stopped["data"]["job_id"] == job["job_id"]
    assert row_a["status"] == row_b["status"] == "stopped" and [j["job_id"] for j in jobs_b] == [job["job_id"]]
    assert heard[0] == "training_started" and "training_progress" in heard


class LiveServerAt:
    """Enough of LiveServer for EventWatcher: a server process's WebSocket URLs."""

    def __init__(self, port: int) -> None:
        self.port = port

    def ws_url(self, session_id: str, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/ws/{session_id}" + (f"?{query}" if query else "")


async def test_one_job_at_a_time_by_default(server_factory: Any, tmp_path: Path) -> None:
    """As the original design runs training (#26.4): a second start is refused, a bare stop stops the one."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'metrics.db'}", models_dir=tmp_path / "models", ingest_processes=0
    )
    live: LiveServer = await server_factory(settings)
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        job = await start(client)
        second = await client.post("/api/training/start", json={"scenario_name": "cartpole"})
        assert second.status_code == 400 and "max_concurrent_jobs" in second.json()["detail"]
        stop = await client.post("/api/training/stop")
        assert stop.status_code == 200 and stop.json()["data"]["job_id"] == job["job_id"]
        await ended(client, job["job_id"])


class _Delegating(JobRun):
    """A real job run, seen through a wrapper that a test changes one part of."""

    def __init__(self, run: JobRun) -> None:
        self.run, self.pid = run, run.pid

    def lines(self) -> AsyncIterator[bytes]:
        return self.run.lines()

    async def wait(self) -> int:
        return await self.run.wait()

    def interrupt(self) -> None:
        self.run.interrupt()

    def kill(self) -> None:
        self.run.kill()

    @property
    def running(self) -> bool:
        return self.run.running

    async def describe_exit(self, code: int) -> str:
        return await self.run.describe_exit(code)


def runs_through(live: LiveServer, wrapper: Callable[[JobRun], JobRun]) -> None:
    """The server's jobs, started as ever, are seen through `wrapper` (a _Delegating)."""
    jobs = live.server.lifespan.state["jobs"]
    backend_start = jobs.backend.start

    async def wrapped(*args: Any) -> JobRun:
        return wrapper(await backend_start(*args))

    jobs.backend.start = wrapped


class _Unkillable(_Delegating):
    """A job run whose interrupt and kill do nothing: it stands in for a cluster (outside this server) that does
    not end a job when told to. The real child process behind it is ended by the test."""

    def interrupt(self) -> None:
        pass

    def kill(self) -> None:
        pass


GARBLED = [
    b'TMS-EVENT {"event": "progress", "episode": 1}TMS-EVENT {"event": "stopped"}\n',
    b"TMS-EVENT [1, 2]\n",
    b"TMS-EVENT \xff\n",
]


class _Garbling(_Delegating):
    """A job run whose output starts with event lines that do not parse, as a crashed writer would leave."""

    async def _lines(self) -> AsyncIterator[bytes]:
        for line in GARBLED:
            yield line
        async for line in self.run.lines():
            yield line

    def lines(self) -> AsyncIterator[bytes]:
        return self._lines()


async def test_a_garbled_event_line_is_logged_and_the_job_goes_on(
    server_factory: Any, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    live = await server_factory(settings.model_copy(update={"models_dir": tmp_path / "models"}))
    runs_through(live, _Garbling)
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        job = await start(client)
        await first_progress(client, job["job_id"])
        stop = await client.post("/api/training/stop", json={"job_id": job["job_id"]})
        assert stop.status_code == 200, stop.text
        row = await ended(client, job["job_id"])
    assert row["status"] == "stopped", row
    said = [(r.levelno, r.getMessage()) for r in caplog.records if job["job_id"] in r.getMessage()]
    garbled = [message for level, message in said if level == logging.WARNING and "event" in message]
    assert len(garbled) == len(GARBLED), said
    assert not [message for level, message in said if level >= logging.ERROR], said


async def test_a_job_that_outlives_the_shutdown_is_failed_not_left_running(
    server_factory: Any, settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A job still running after the shutdown's grace and its kill is recorded failed, saying why, before the
    store closes: no row is left `running` for a lease to find half a minute later, no error is logged."""
    job_settings = settings.model_copy(update={"models_dir": tmp_path / "models", "shutdown_timeout": 0.5})
    live = await server_factory(job_settings)
    runs_through(live, _Unkillable)
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        job = await start(client)
        pid = (await first_progress(client, job["job_id"]))["pid"]
    try:
        await live.stop()
        restarted = await server_factory(job_settings)
        async with httpx.AsyncClient(base_url=restarted.url, timeout=TIMEOUT) as client:
            row = (await client.get(f"/api/training/jobs/{job['job_id']}")).json()
    finally:
        os.kill(pid, signal.SIGKILL)
    assert row["status"] == "failed" and "had not ended" in row["error"], row
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [r.getMessage() for r in caplog.records]
