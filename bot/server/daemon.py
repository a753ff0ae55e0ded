"""The training daemon: scheduled training runs, configured at run time, reported to an event stream.

Off unless the settings turn it on (`TMS_TRAINING_DAEMON=1`): a server does not start training processes
by itself. Once on, it follows its configuration in the database (`enabled`, `interval_minutes`,
`episodes_per_run`, `scenario`), changeable through `PUT /api/training/daemon/config` without a restart:
the loop reads it again at least every 10 iterations (a second each), before each run, and at once after
a change. A scheduled run is due `interval_minutes` after the previous scheduled run started (the first at
once); it claims "the run after that one" in the database (bot/store/daemon.py), so with several
instances exactly one of them runs it.

A run is a training job (bot/server/jobs.py) of `episodes_per_run` episodes. It publishes
`rl_v3.training.started` {run_id, episodes, timestamp} and `rl_v3.training.completed` {run_id, success,
episodes, duration_seconds, avg_reward, final_reward, timestamp, error?} as messages of the session
`training-daemon` (its spectators and history see them), and logs
`[RLv3][TRAINING][RUN_ID=…][episode=X/Y] …` lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

import orjson

from bot.schemas import SessionCreate
from bot.server.jobs import JobRefusedError, JobSupervisor, ScenarioNotFoundError
from bot.server.services import TrainingService
from bot.server.supervisor import Supervisor
from bot.store import SessionExistsError
from bot.store.batch import Batch
from bot.store.daemon import (
    ClaimRun,
    FinishRun,
    PutConfig,
    last_error,
    last_scheduled,
    read_config,
    recent_runs,
    run_counts,
)

logger = logging.getLogger("bot.training.daemon")

EVENTS_SESSION = "training-daemon"
TICK = 1.0  # seconds between two looks at the clock
READ_CONFIG_EVERY = 10  # iterations


class RunInProgressError(Exception):
    pass


class DaemonOffError(Exception):
    pass


class TrainingDaemon:
    def __init__(
        self, service: TrainingService, jobs: JobSupervisor, *, active: bool, supervisor: Supervisor | None = None
    ) -> None:
        self.supervisor = supervisor or Supervisor()
        self.service, self.jobs = service, jobs
        self.active = active  # the settings' switch: off, the loop never starts
        self.state = "stopped"
        self.current: dict[str, Any] | None = None  # the run in progress
        self.config: dict[str, Any] | None = None
        self.iterations = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._run_task: asyncio.Task[dict[str, Any]] | None = None
        jobs.on_orphaned_runs.append(self._orphaned)

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.active and (self._task is None or self._task.done()):
            self.state = "idle"
            self._task = self.supervisor.spawn("daemon", self._loop)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop the loop; a run in progress is stopped gracefully (its job saves a checkpoint)."""
        if self._task is not None:
            await self.supervisor.stop([self._task])
        self._task = None
        if self._run_task is not None and not self._run_task.done() and self.current and self.current["job_id"]:
            with contextlib.suppress(JobRefusedError):
                await self.jobs.stop(self.current["job_id"])
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._run_task), grace)
        self.state = "stopped"

    def reconfigured(self) -> None:
        """The configuration changed: read it again now."""
        self._wake.set()

    # -- runs ---------------------------------------------------------------------------------------

    async def run_once(self, trigger: str = "manual", slot: str | None = None) -> dict[str, Any] | None:
        """One run now, to its end; its record (None: a scheduled slot another instance took)."""
        if self._run_task is not None and not self._run_task.done():
            raise RunInProgressError(f"run {self.current and self.current['run_id']} is in progress")
        self._run_task = asyncio.create_task(self._run(trigger, slot))
        result: dict[str, Any] | None = await self._run_task
        return result

    def start_run(self) -> str:
        """POST /daemon/run: a run in the background; its id."""
        if not self.active:
            raise DaemonOffError("the training daemon is off on this server (TMS_TRAINING_DAEMON=1 turns it on)")
        if self._run_task is not None and not self._run_task.done():
            raise RunInProgressError(f"run {self.current and self.current['run_id']} is in progress")
        run_id = f"run-{secrets.token_hex(6)}"
        self._run_task = asyncio.create_task(self._run("manual", None, run_id))
        return run_id

    async def _run(self, trigger: str, slot: str | None, run_id: str | None = None) -> dict[str, Any]:
        config = await self.service.store.read(read_config)
        run_id = run_id or f"run-{secrets.token_hex(6)}"
        episodes, scenario = config["episodes_per_run"], config["scenario"]
        claim = ClaimRun(run_id, slot, trigger, scenario, episodes, self.jobs.identity)
        run: dict[str, Any] | None = await self.service.store.write(claim)
        if run is None:
            return {}
        self.current, self.state = run, "training"
        started = time.time()
        await self._publish("rl_v3.training.started", {"run_id": run_id, "episodes": episodes, "timestamp": started})
        _log(run_id, None, episodes, f"started: scenario {scenario}, {episodes} episodes ({trigger})")
        values: dict[str, Any]
        listener = self._progress_logger(run_id)
        self.jobs.listeners.append(listener)
        try:
            params = {"num_episodes": episodes, "save_interval": max(1, episodes), "eval_episodes": 1, "seed": None}
            job = await self.jobs.start(scenario, params, allow_concurrent=True)
            self.current = {**run, "job_id": job["job_id"]}
            await self.service.store.write(FinishRun(run_id, {"job_id": job["job_id"]}))
            ended = await self.jobs.wait(job["job_id"])
            progress = ended["latest_progress"] or {}
            values = {
                "status": "succeeded" if ended["status"] == "completed" else "failed",
                "avg_reward": progress.get("avg_reward"),
                "final_reward": progress.get("reward"),
                "error": ended["error"] or (None if ended["status"] == "completed" else f"job {ended['status']}"),
            }
        except (JobRefusedError, ScenarioNotFoundError) as exc:
            values = {"status": "failed", "error": str(exc)}
        except BaseException as exc:  # cancelled with the server: recorded, then let go
            values = {"status": "failed", "error": f"interrupted: {type(exc).__name__}"}
            await asyncio.shield(self._finish(run_id, episodes, started, values))
            raise
        finally:
            self.jobs.listeners.remove(listener)
        return await self._finish(run_id, episodes, started, values)

    async def _finish(self, run_id: str, episodes: int, started: float, values: dict[str, Any]) -> dict[str, Any]:
        run: dict[str, Any] = await self.service.store.write(FinishRun(run_id, values))
        success = values["status"] == "succeeded"
        completed = {
            "run_id": run_id,
            "success": success,
            "episodes": episodes,
            "duration_seconds": round(time.time() - started, 3),
            "avg_reward": values.get("avg_reward"),
            "final_reward": values.get("final_reward"),
            "timestamp": time.time(),
            **({} if success else {"error": values.get("error")}),
        }
        await self._publish("rl_v3.training.completed", completed)
        outcome = "succeeded" if success else f"failed: {values.get('error')}"
        _log(run_id, None, episodes, f"completed in {completed['duration_seconds']} s: {outcome}")
        self.current = None
        self.state = "idle" if self._task is not None and not self._task.done() else "stopped"
        return run

    async def _orphaned(self, runs: list[dict[str, Any]], reason: str) -> None:
        """Runs whose server died with them (any instance finds them: bot/server/jobs.py): failed, and said so."""
        for run in runs:
            completed = {
                "run_id": run["run_id"],
                "success": False,
                "episodes": run["episodes"],
                "duration_seconds": round(time.time() - run["started_at"], 3),
                "avg_reward": None,
                "final_reward": None,
                "timestamp": time.time(),
                "error": reason,
            }
            await self._publish("rl_v3.training.completed", completed)
            _log(run["run_id"], None, run["episodes"], f"failed: {reason}")

    def _progress_logger(self, run_id: str) -> Any:
        def log(kind: str, data: dict[str, Any]) -> None:
            if kind == "training_progress" and self.current and data["job_id"] == self.current.get("job_id"):
                reward, average = data.get("reward"), data.get("avg_reward")
                _log(run_id, data["episode"], data["total_episodes"], f"reward={reward} avg_reward={average}")

        return log

    async def _publish(self, kind: str, data: dict[str, Any]) -> None:
        """A message of the `training-daemon` session (created on first use)."""
        spec = SessionCreate.model_validate({"training_id": EVENTS_SESSION, "name": "Training daemon"})
        for attempt in range(2):
            try:
                batch = Batch(kind, [orjson.dumps(data).decode()], [None], [time.time()])
                await self.service.ingest(EVENTS_SESSION, batch, None)
                return
            except Exception:
                if attempt:
                    logger.exception("the daemon's %s event could not be stored", kind)
                    return
                with contextlib.suppress(SessionExistsError):
                    await self.service.create_session(spec)

    # -- the schedule -------------------------------------------------------------------------------

    async def _loop(self) -> None:
        config = await self.service.store.read(read_config)
        while True:
            if self.iterations % READ_CONFIG_EVERY == 0 or self._wake.is_set():
                self._wake.clear()
                config = await self.service.store.read(read_config)
            self.config = config
            self.iterations += 1
            if config["enabled"] and not (self._run_task and not self._run_task.done()):
                slot = await self._due_slot(config)
                if slot is not None:
                    config = await self.service.store.read(read_config)  # before each run: it may have just changed
                    if config["enabled"]:
                        try:
                            await self.run_once("schedule", slot)
                        except RunInProgressError:
                            pass
                        except Exception:
                            logger.exception("a scheduled training run failed")
            self.state = "idle" if config["enabled"] else "disabled"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), TICK)

    async def _next_run(self, config: dict[str, Any]) -> tuple[float, str]:
        """(when the next scheduled run is due, the slot it claims): interval_minutes after the previous
        scheduled run started, or at once when there was none. The slot names the run it follows, so that
        every instance claims the same one and exactly one of them gets it."""
        last = await self.service.store.read(last_scheduled)
        if last is None:
            return time.time(), "first"
        return last["started_at"] + config["interval_minutes"] * 60, f"after:{last['run_id']}"

    async def _due_slot(self, config: dict[str, Any]) -> str | None:
        due, slot = await self._next_run(config)
        return slot if time.time() >= due else None

    async def status(self) -> dict[str, Any]:
        config = await self.service.store.read(read_config)
        next_run, _ = await self._next_run(config)
        failing = self.supervisor.failing().get("daemon")
        state = "failing" if failing is not None else self.state
        return {
            "active": self.active,
            "state": state if self.active else "off",
            "last_loop_error": failing,
            "config": config,
            "current_run": self.current,
            "iterations": self.iterations,
            "next_run_at": next_run if self.active and config["enabled"] else None,
            "events_session": EVENTS_SESSION,
        }

    get_status = status  # the original design's name

    async def summary(self) -> dict[str, Any]:
        counts = await self.service.store.read(run_counts)
        recent = await self.service.store.read(recent_runs, 10)
        ended = counts["succeeded"] + counts["failed"]
        return {
            "daemon": await self.status(),
            "total_runs": counts["total"],
            "successful_runs": counts["succeeded"],
            "failed_runs": counts["failed"],
            "success_rate": round(counts["succeeded"] / ended, 4) if ended else None,
            "last_run_time": recent[0]["started_at"] if recent else None,
            "last_error": await self.service.store.read(last_error),
            "recent_runs": recent,
        }

    async def put_config(self, changes: dict[str, Any]) -> dict[str, Any]:
        config: dict[str, Any] = await self.service.store.write(PutConfig(changes))
        self.reconfigured()
        return config


def _log(run_id: str, episode: int | None, episodes: int, message: str) -> None:
    where = f"[episode={episode}/{episodes}]" if episode is not None else ""
    logger.info("[RLv3][TRAINING][RUN_ID=%s]%s %s", run_id, where, message, extra={"run_id": run_id})
