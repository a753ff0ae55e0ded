"""Training jobs: the reference trainer in processes of their own, started, stopped and watched through the API.

Each job is `python -m bot.training.job` (the server never imports torch), run by a backend (a child process
of this server, or a Ray job: bot/server/training/job_backends.py), pushing into a session of its own
through the SDK, like any engine. Its supervisor here reads the `TMS-EVENT` lines the child prints and
turns them into the job's row (bot/store/jobs.py) and into messages of the job's session, stored and sent
to its spectators like every message, of the types `training_started`, `training_progress` (every
episode), `training_completed`, `training_stopped` and `training_error`; listeners (Socket.IO) get them too.

The process's end decides the job's: exit 0 after `completed` is completed; the end of a stop that was
asked for (SIGINT: the child saves a checkpoint) is stopped; anything else (a crash, SIGKILL, a push the
server refused) is failed, with the exit status and the end of the child's stderr, and so is its session.
The final event is sent once the job is over: its row written, its slot free for a new start.

With auth on, each job gets a credential of its own (an API key: `write`, its session only), revoked when
the job ends; the child never sees a server secret (its environment is the server's less every secret,
database and broker setting). A server that shuts down stops its jobs as a stop request would.

Ownership is a lease: each instance renews its row in `server_instances` every third of
`job_lease_seconds`, and any instance fails the jobs and daemon runs of an owner whose lease ran out (it
died with its processes), with a `training_error` and its session `failed`. A server that starts on the
host and port of a predecessor fails that one's jobs at once. A stop asked of any instance reaches the
job's owner through the job's row (`stop_requested_at`), so it works behind a load balancer, with or
without Redis; status and job lists read the rows, which every instance shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import re
import secrets
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bot.config import Settings
from bot.schemas import ENDED_STATUSES, SessionCreate, SessionUpdate
from bot.server.services import TrainingService
from bot.server.supervisor import Supervisor
from bot.server.tasks import cancel_and_wait
from bot.server.training.job_backends import EXIT_STOPPED, JobBackend, JobRun, job_backend
from bot.store.batch import Batch
from bot.store.errors import JobLimitError
from bot.store.jobs import (
    RUNNING_STATUSES,
    CreateJob,
    FailOrphans,
    IssueJobKey,
    RenewLease,
    RequestStop,
    RevokeJobKey,
    UpdateJob,
    get_job,
    list_jobs,
    stop_requests,
)

logger = logging.getLogger(__name__)

# The child's side of the protocol (bot/training/job.py), repeated here: importing that package imports torch.
EVENT_PREFIX = b"TMS-EVENT "
SCENARIO_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ROW_UPDATE_INTERVAL = 1.0  # a running job's row takes its latest progress at most this often
KILLED_WITHIN = 3.0  # seconds a shutdown waits for the jobs it killed
STOP_WATCH_INTERVAL = 0.25  # how often an instance with running jobs looks for stops asked of another
SHIPPED_SCENARIOS = Path(__file__).resolve().parents[2] / "training" / "scenarios"

ORPHANED = "its server stopped or went away while the job was running (its lease was not renewed)"

Listener = Callable[[str, dict[str, Any]], None]
OrphanedRuns = Callable[[list[dict[str, Any]], str], Awaitable[None]]


def scenarios_dir(settings: Settings) -> Path:
    return Path(settings.scenarios_dir) if settings.scenarios_dir else SHIPPED_SCENARIOS


def scenario_names(scenarios: Path) -> list[str]:
    """The scenarios a job or the daemon can run: the YAML files of the directory, by name."""
    return sorted(p.stem for p in scenarios.glob("*.yaml") if SCENARIO_NAME.match(p.stem))


class JobRefusedError(Exception):
    """The request is understood but cannot be done now (400): the limit, the same scenario, no such job."""


class ScenarioNotFoundError(LookupError):
    pass


@dataclass
class _Running:
    job: dict[str, Any]
    process: JobRun
    log: Path
    stop_requested: bool = False
    progress: dict[str, Any] | None = None
    outcome: dict[str, Any] | None = None  # the child's `completed` or `stopped` event
    done: asyncio.Event = field(default_factory=asyncio.Event)
    row_written: float = 0.0
    task: asyncio.Task[None] | None = None  # the supervision of this job (_supervise)


class JobSupervisor:
    def __init__(self, service: TrainingService, settings: Settings, supervisor: Supervisor | None = None) -> None:
        self.supervisor = supervisor or Supervisor()
        self.service = service
        self.settings = settings
        self.max_jobs = settings.max_concurrent_jobs or os.cpu_count() or 1
        self.models = Path(settings.models_dir)
        self.backend: JobBackend = job_backend(settings)
        self.scenarios = scenarios_dir(settings)
        # This instance's name in the jobs' rows and its lease: the host and port, and a token of this process.
        place = f"{socket.gethostname()}:{settings.port}"
        self.identity = f"{place}/{secrets.token_hex(4)}"
        # A server on a fixed port replaces any earlier one there: that one's jobs are gone, lease or not.
        self._predecessors = f"{place}/%" if settings.port else None
        self.running: dict[str, _Running] = {}
        self.closing = False  # the server is shutting down: no job starts
        self._shutdown_deadline: float | None = None  # loop time by which every job must have ended
        self.listeners: list[Listener] = []
        self.on_orphaned_runs: list[OrphanedRuns] = []  # the daemon's runs failed with their dead owner
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []

    # -- lifecycle ----------------------------------------------------------------------------------

    async def recover(self) -> None:
        """Take this instance's lease, fail the jobs and runs of owners that hold none, and keep renewing it."""
        await self.service.store.write(RenewLease(self.identity))
        await self._fail_orphans(self._predecessors)
        self._loops = [
            self.supervisor.spawn("jobs.lease", self._keep_lease),
            self.supervisor.spawn("jobs.stops", self._watch_stops),
        ]

    async def _watch_stops(self) -> None:
        """Stops asked of another instance for this one's jobs (bot/store/jobs.py RequestStop)."""
        while True:
            await asyncio.sleep(STOP_WATCH_INTERVAL)
            if not self.running:
                continue
            try:
                for job_id in await self.service.store.read(stop_requests, self.identity):
                    if job_id in self.running:
                        self._interrupt(self.running[job_id])
            except Exception:
                logger.exception("looking for training job stops failed; trying again")

    async def _keep_lease(self) -> None:
        interval = self.settings.job_lease_seconds / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.service.store.write(RenewLease(self.identity))
                await self._fail_orphans(None)
            except Exception:
                logger.exception("renewing the training jobs' lease failed; trying again in %.1f s", interval)

    async def _fail_orphans(self, predecessors: str | None) -> None:
        reason = ORPHANED
        jobs, runs = await self.service.store.write(
            FailOrphans(self.identity, self.settings.job_lease_seconds, reason, predecessors)
        )
        for job in jobs:
            logger.warning(
                "training job %s (%s) lost its server: failed", job["job_id"], job["scenario_name"],
                extra={"job_id": job["job_id"]},
            )  # fmt: skip
            await self.backend.abandon(job["job_id"])
            await self._fail_session(job["session_id"], reason)
            await self._event(job, "training_error", error_event(reason, None))
        if runs:
            for hook in self.on_orphaned_runs:
                await hook(runs, reason)

    async def _fail_session(self, session_id: str, reason: str) -> None:
        """A failed job's session says so too (unless the child ended it itself, or it was deleted)."""
        with contextlib.suppress(Exception):
            session = await self.service.get_session(session_id)
            if session["status"] not in ENDED_STATUSES:
                update = SessionUpdate.model_validate({"status": "failed", "message": reason[:1024]})
                await self.service.update_session(session_id, update)

    async def stop_while_serving(self, within: float) -> None:
        """The first step of a server's shutdown, while it still answers requests: every job is asked to stop,
        as a stop request would, and waited for up to `within` seconds, so that its last points and its
        session's status reach this server (not a spool). No job starts from now on."""
        self.closing = True
        self._shutdown_deadline = asyncio.get_running_loop().time() + within
        for running in list(self.running.values()):
            self._interrupt(running)
        waiting = [asyncio.ensure_future(running.done.wait()) for running in self.running.values()]
        if waiting:
            _, pending = await asyncio.wait(waiting, timeout=within)
            for waiter in pending:
                waiter.cancel()

    async def shutdown(self, grace: float) -> None:
        """Stop every running job as a stop request would; kill what has not ended within `grace` (or by the
        end of the time stop_while_serving gave them, when it ran: the whole shutdown keeps to one budget)."""
        self.closing = True
        await self.supervisor.stop(self._loops)
        for running in list(self.running.values()):
            self._interrupt(running)
        if self._shutdown_deadline is not None:
            grace = max(0.0, min(grace, self._shutdown_deadline - asyncio.get_running_loop().time()))
        waiting = [running.done.wait() for running in self.running.values()]
        if waiting:
            _, pending = await asyncio.wait([asyncio.ensure_future(w) for w in waiting], timeout=grace)
            for running in list(self.running.values()):
                if running.process.running:
                    running.process.kill()
            if pending:  # a killed child ends at once; a Ray job is SIGKILLed by Ray within 3 s
                await asyncio.wait(pending, timeout=KILLED_WITHIN)
        for running in list(self.running.values()):
            try:
                await self._abandon(running)
            except Exception:  # the store may be failing too: the other jobs are still recorded
                job_id = running.job["job_id"]
                logger.exception("recording training job %s at shutdown failed", job_id, extra={"job_id": job_id})

    # -- the API's operations -----------------------------------------------------------------------

    def scenario_file(self, name: str) -> Path:
        path = self.scenarios / f"{name}.yaml"
        if not SCENARIO_NAME.match(name) or not path.is_file():
            known = ", ".join(scenario_names(self.scenarios)) or "none"
            raise ScenarioNotFoundError(f"unknown scenario {name!r}; expected one of {known}")
        return path

    async def start(self, scenario: str, params: dict[str, Any], allow_concurrent: bool = False) -> dict[str, Any]:
        scenario_file = self.scenario_file(scenario)
        if self.closing:
            raise JobRefusedError("the server is shutting down: start the job on another instance, or after")
        if self.backend.name == "process" and importlib.util.find_spec("torch") is None:
            raise JobRefusedError("training jobs need the train extra on the server's machine: pip install .[train]")
        job_id = f"job-{secrets.token_hex(6)}"
        if params.get("seed") is None:  # drawn here, so that the job's record says it: a run can be repeated
            params = {**params, "seed": secrets.randbelow(2**32)}
        return await self._launch(job_id, scenario, scenario_file, params, allow_concurrent)

    async def _launch(
        self, job_id: str, scenario: str, scenario_file: Path, params: dict[str, Any], allow_concurrent: bool
    ) -> dict[str, Any]:
        session_id = f"train-{scenario}-{job_id[4:]}"
        total = params["num_episodes"]
        # The limits, counting every instance's jobs (this one's too), in the transaction that stores the row.
        create = CreateJob(job_id, scenario, session_id, params, total, self.identity, self.max_jobs, allow_concurrent)
        try:
            job: dict[str, Any] = await self.service.store.write(create)
        except JobLimitError as exc:
            raise JobRefusedError(str(exc)) from None
        spec = SessionCreate.model_validate(
            {
                "training_id": session_id,
                "name": f"{scenario} ({job_id})",
                "algorithm": "DQN",
                "total_episodes": total,
                "metadata": job_metadata(job_id, scenario, params),
            }
        )
        try:
            await self.service.create_session(spec)
        except Exception as exc:
            await self.service.store.write(UpdateJob(job_id, status="failed", error=f"its session: {exc}"))
            raise
        log = self.models / "logs" / f"{job_id}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        try:
            api_key = None
            if self.settings.enable_auth:
                api_key = await self.service.store.write(IssueJobKey(job_id, session_id))
            process = await self._spawn(job, scenario_file, log, api_key)
        except OSError as exc:
            await self.service.store.write(RevokeJobKey(job_id))
            job = await self.service.store.write(UpdateJob(job_id, status="failed", error=str(exc)))
            await self._event(job, "training_error", error_event(str(exc), None))
            raise JobRefusedError(f"the training process could not be started: {exc}") from exc
        job = await self.service.store.write(UpdateJob(job_id, pid=process.pid))
        running = self.running[job_id] = _Running(job, process, log)
        started = {"start_time": job["start_time"], "num_episodes": job["total_episodes"]}
        await self._event(job, "training_started", started)
        task = running.task = asyncio.create_task(self._supervise(running), name=f"tms-job-{job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def stop(self, job_id: str | None) -> tuple[dict[str, Any], bool]:
        """Ask a running job (the only one, on any instance, without `job_id`) to stop: it saves a checkpoint
        and ends. Returns the job and whether it ended within the backend's stop_answer_within seconds."""
        if job_id is None:
            rows = await self.service.store.read(list_jobs, 100, RUNNING_STATUSES)
            running_ids = sorted({row["job_id"] for row in rows} | set(self.running))
            if len(running_ids) != 1:
                raise JobRefusedError(
                    "no training job is running"
                    if not running_ids
                    else f"{len(running_ids)} jobs are running: say which with job_id ({', '.join(running_ids)})"
                )
            job_id = running_ids[0]
        running = self.running.get(job_id)
        if running is None:
            return await self._stop_elsewhere(job_id)
        self._interrupt(running)
        # The answer waits for the job to be over (its checkpoint saved, its last points handed over, its slot
        # free for a new start), for at most the backend's stop_answer_within; past that it says `stopping`.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(running.done.wait(), self.backend.stop_answer_within)
        if running.done.is_set():
            ended = await self.job(job_id)
            assert ended is not None
            return ended, True
        return self._view(running), False

    async def _stop_elsewhere(self, job_id: str) -> tuple[dict[str, Any], bool]:
        """A job another instance supervises: asked through its row, answered once the row says it ended."""
        job = await self.service.store.write(RequestStop(job_id))
        if job is None:
            raise JobRefusedError(f"no running training job {job_id!r}")
        deadline = time.monotonic() + self.backend.stop_answer_within + STOP_WATCH_INTERVAL
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            job = await self.service.store.read(get_job, job_id)
            if job["status"] not in RUNNING_STATUSES:
                return job, True
        return {**job, "status": "stopping"}, False

    async def wait(self, job_id: str) -> dict[str, Any]:
        """The job's row once it has ended."""
        running = self.running.get(job_id)
        if running is not None:
            await running.done.wait()
        job = await self.service.store.read(get_job, job_id)
        assert job is not None
        return job

    async def job(self, job_id: str) -> dict[str, Any] | None:
        if job_id in self.running:
            return self._view(self.running[job_id])
        return await self.service.store.read(get_job, job_id)

    async def logs(self, job_id: str) -> str | None:
        """The end of a job's output, from wherever it runs (None: no such job, or no output yet)."""
        if await self.job(job_id) is None:
            return None
        return await self.backend.logs(job_id, self.models / "logs" / f"{job_id}.log")

    async def jobs(self, limit: int, session_id: str | None = None) -> list[dict[str, Any]]:
        """The newest first; `session_id`, when given: that session's jobs only."""
        rows = await self.service.store.read(list_jobs, limit, None, session_id)
        return [self._view(self.running[row["job_id"]]) if row["job_id"] in self.running else row for row in rows]

    # -- the child ----------------------------------------------------------------------------------

    async def _spawn(self, job: dict[str, Any], scenario_file: Path, log: Path, api_key: str | None) -> JobRun:
        params = job["params"]
        host = self.settings.host if self.settings.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        server = self.settings.job_server_url or f"http://{host}:{self.settings.port}"
        args = [
            "--scenario", job["scenario_name"],
            "--scenario-file", str(scenario_file),
            "--episodes", str(params["num_episodes"]),
            "--save-interval", str(params["save_interval"]),
            "--eval-episodes", str(params["eval_episodes"]),
            "--server", server,
            "--session", job["session_id"],
            "--models-dir", str(self.models.resolve()),  # a Ray job runs in a folder of its own
            "--job-id", job["job_id"],
            "--threads", str(self.settings.training_threads),
        ]  # fmt: skip
        if params.get("seed") is not None:
            args += ["--seed", str(params["seed"])]
        return await self.backend.start(job["job_id"], args, api_key, log)

    def _interrupt(self, running: _Running) -> None:
        if running.process.running and not running.stop_requested:
            running.stop_requested = True
            running.process.interrupt()

    async def _supervise(self, running: _Running) -> None:
        job_id = running.job["job_id"]
        try:
            async for line in running.process.lines():
                if line.startswith(EVENT_PREFIX) and (event := _event_of(line, job_id)) is not None:
                    await self._child_event(running, event)
            code = await running.process.wait()
            await self._ended(running, code)
        except Exception:
            logger.exception("supervising training job %s failed", job_id, extra={"job_id": job_id})
            running.process.kill()
            await self._ended(running, await running.process.wait(), supervisor_failed=True)
        finally:
            self._release(running)

    async def _abandon(self, running: _Running) -> None:
        """A job that ended neither when told to nor when killed (its backend did not end it): recorded failed
        before the store closes, rather than left `running` for a lease to find; it loses its credential."""
        await cancel_and_wait([running.task])
        error = f"the server shut down, and the job had not ended {KILLED_WITHIN:g} s after it was killed"
        await self._ended(running, None, error=error)

    def _release(self, running: _Running) -> None:
        """The job is over: its slot is free for a new start, and its waiters wake."""
        self.running.pop(running.job["job_id"], None)
        running.done.set()

    async def _child_event(self, running: _Running, event: dict[str, Any]) -> None:
        kind = event.pop("event")
        if kind == "progress":
            running.progress = event
            await self._event(running.job, "training_progress", event)
            now = time.monotonic()
            if now - running.row_written >= ROW_UPDATE_INTERVAL:
                running.row_written = now
                await self.service.store.write(UpdateJob(running.job["job_id"], progress=event))
        elif kind in ("completed", "stopped"):
            running.outcome = {"event": kind, **event}
        elif kind == "config":
            await self._record_config(running.job, event.get("config"))

    async def _record_config(self, job: dict[str, Any], config: Any) -> None:
        """The whole configuration the job trains with (its scenario, defaults filled in) joins the session's
        metadata, which the page and compare show; one that does not fit is logged, and the job goes on."""
        metadata = {**job_metadata(job["job_id"], job["scenario_name"], job["params"]), "config": config}
        try:
            await self.service.update_session(job["session_id"], SessionUpdate.model_validate({"metadata": metadata}))
        except Exception as exc:
            why = "training job %s: its configuration was not recorded: %s"
            logger.warning(why, job["job_id"], exc, extra={"job_id": job["job_id"]})

    async def _ended(
        self, running: _Running, code: int | None, supervisor_failed: bool = False, error: str | None = None
    ) -> None:
        """The row, the credential and the session first, then the slot; the final event last, so a client that
        sees it finds the job over (a new start of its scenario is accepted at once). `error`: failed, for this
        reason (`code` None: the exit is not known)."""
        job_id, outcome = running.job["job_id"], running.outcome or {}
        if self.settings.enable_auth:
            await self.service.store.write(RevokeJobKey(job_id))
        if running.progress is not None:
            await self.service.store.write(UpdateJob(job_id, progress=running.progress))
        if error is None and code == 0 and outcome.get("event") == "completed" and not supervisor_failed:
            job = await self.service.store.write(UpdateJob(job_id, status="completed", exit_code=code))
            final = _without(outcome, "event")
            kind, payload = "training_completed", {**final, "final_metrics": final}
        elif (
            error is None
            and running.stop_requested
            and (code in (EXIT_STOPPED, -signal.SIGINT) or outcome.get("event") == "stopped")
        ):
            # -SIGINT: stopped while Python was still starting, before it could catch the signal. The count is
            # the job's own: a stop between an episode's end and its progress event left the row one behind.
            count = outcome.get("episodes_completed")
            episodes = count if isinstance(count, int) and not isinstance(count, bool) and count >= 0 else None
            job = await self.service.store.write(
                UpdateJob(job_id, status="stopped", exit_code=code, episodes_completed=episodes)
            )
            kind, payload = "training_stopped", {"checkpoint": outcome.get("checkpoint")}
        else:
            if error is None and code is not None:
                error = await running.process.describe_exit(code)
            error = error or "the job ended for no known reason"
            job = await self.service.store.write(UpdateJob(job_id, status="failed", exit_code=code, error=error))
            logger.warning("training job %s failed: %s", job_id, error, extra={"job_id": job_id})
            await self._fail_session(job["session_id"], error)
            kind, payload = "training_error", error_event(error, code)
        self._release(running)
        await self._event(job, kind, payload)

    async def _event(self, job: dict[str, Any], kind: str, payload: dict[str, Any]) -> None:
        """A job event: stored in the job's session (its spectators and history see it) and told to listeners."""
        data = {
            "job_id": job["job_id"],
            "scenario_name": job["scenario_name"],
            "session_id": job["session_id"],
            "total_episodes": job["total_episodes"],
            "episodes_completed": (payload.get("episode") or job["episodes_completed"]),
            **payload,
        }
        encoded = orjson.dumps(data).decode()
        with contextlib.suppress(Exception):  # the session may have been deleted: the job goes on regardless
            await self.service.ingest(
                job["session_id"], Batch(kind, [encoded], [data.get("episode")], [time.time()]), None
            )
        for listener in self.listeners:
            try:
                listener(kind, data)
            except Exception:
                logger.exception("a training event listener failed")

    def _view(self, running: _Running) -> dict[str, Any]:
        """A running job as the API shows it: its row with the latest progress and its live status."""
        job = dict(running.job)
        if running.progress is not None:
            job["latest_progress"] = running.progress
            job["episodes_completed"] = running.progress["episode"]
        if running.stop_requested and job["status"] in RUNNING_STATUSES:
            job["status"] = "stopping"
        return job


def error_event(error: str, exit_code: int | None) -> dict[str, Any]:
    """`training_error` as the original design has it (`message`, `details`), and as before (`error`, `exit_code`)."""
    return {"message": error, "details": {"exit_code": exit_code}, "error": error, "exit_code": exit_code}


def job_metadata(job_id: str, scenario: str, params: dict[str, Any]) -> dict[str, Any]:
    """A job's session's metadata: which job, which scenario, with what parameters."""
    return {"job_id": job_id, "scenario": scenario, **params}


def _event_of(line: bytes, job_id: str) -> dict[str, Any] | None:
    """A child's event, or None for a line that is not one (logged): a garbled line does not end a job."""
    try:
        event = orjson.loads(line[len(EVENT_PREFIX) :])
    except orjson.JSONDecodeError as exc:
        why = "training job %s wrote a garbled event line (%s): %.300r"
        logger.warning(why, job_id, exc, line, extra={"job_id": job_id})
        return None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        logger.warning("training job %s wrote an event of no kind: %.300r", job_id, line, extra={"job_id": job_id})
        return None
    return event


def _without(values: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k != key}
