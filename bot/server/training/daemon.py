"""The training daemon: scheduled training runs, configured at run time, reported to event streams.

Its stored configuration (`enabled`, `interval_minutes`, `episodes_per_run`, `scenario`) is the one truth
every route shows: with Redis configured, the keys `rl_v3.training.*` (bot/server/training/daemon_redis.py: an
operator's `redis-cli SET rl_v3.training.enabled false` counts) over the database's row; without Redis,
the row. Until anything is stored, `enabled` is the server's setting TMS_TRAINING_DAEMON (off by default,
so a fresh server starts no training by itself). `PUT /api/training/daemon/config` writes both. The loop
always runs (it is cheap: a look at the clock a second) and reads the configuration again at least every
10 iterations, before each run, and at once after a PUT. A scheduled run is due `interval_minutes` after
the previous scheduled run started (the first at once); it claims "the run after that one" in the database
(bot/store/daemon.py), so with several instances exactly one of them runs it. A manual run
(`POST /daemon/run`, `run_once()`) runs whether the daemon is enabled or not; during any run, on any
instance, the state is `training`, else `idle` when enabled and `disabled` when not.

A run is a training job (bot/server/training/jobs.py) of `episodes_per_run` episodes. It publishes
`rl_v3.training.started` {run_id, episodes, timestamp} and `rl_v3.training.completed` {run_id, success,
episodes, duration_seconds, avg_reward, final_reward, timestamp, error?} as messages of the session
`training-daemon` (its spectators and history see them) and, with Redis, as entries of the Redis Streams
of those names (with the original design's ISO 8601 timestamps), and logs
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

from bot.frames import iso
from bot.schemas import SessionCreate
from bot.server.services import TrainingService
from bot.server.supervisor import Supervisor
from bot.server.training.daemon_redis import DaemonRedis, DaemonRedisError
from bot.server.training.jobs import JobRefusedError, JobSupervisor, ScenarioNotFoundError
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
READ_CONFIG_EVERY = 10  # iterations


class RunInProgressError(Exception):
    pass


class TrainingDaemon:
    def __init__(
        self,
        service: TrainingService,
        jobs: JobSupervisor,
        *,
        default_enabled: bool = False,
        redis: DaemonRedis | None = None,
        supervisor: Supervisor | None = None,
        tick: float = 1.0,
    ) -> None:
        self.supervisor = supervisor or Supervisor()
        self.tick = tick  # seconds between two iterations (TMS_TRAINING_DAEMON_TICK)
        self.service, self.jobs = service, jobs
        self.default_enabled = default_enabled  # TMS_TRAINING_DAEMON: `enabled` until a configuration is stored
        self.redis = redis
        self._running = False  # the original design's name: the loop runs
        self.current: dict[str, Any] | None = None  # the run in progress
        self.config: dict[str, Any] = {}  # the configuration the loop read last
        self.last_check: float | None = None  # when the loop last looked at its configuration and the clock
        self.iterations = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._run_task: asyncio.Task[dict[str, Any]] | None = None
        self._run_id: str | None = None  # the run in progress, or the last one
        jobs.on_orphaned_runs.append(self._orphaned)

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self.config = await self.read_config()
            self._running = True
            self._task = self.supervisor.spawn("daemon", self._loop)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop the loop; a run in progress is stopped gracefully (its job saves a checkpoint)."""
        self._running = False
        if self._task is not None:
            await self.supervisor.stop([self._task])
        self._task = None
        if self._run_task is not None and not self._run_task.done() and self.current and self.current["job_id"]:
            with contextlib.suppress(JobRefusedError):
                await self.jobs.stop(self.current["job_id"])
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._run_task), grace)

    def reconfigured(self) -> None:
        """The configuration changed: read it again now."""
        self._wake.set()

    async def read_config(self) -> dict[str, Any]:
        """The stored configuration: Redis's keys over the database's row with Redis configured, else the row
        (`source` says which)."""
        base: dict[str, Any] = await self.service.store.read(read_config, self.default_enabled)
        if self.redis is None:
            return {**base, "source": "database"}
        return await self.redis.overlay(base, self._scenario_error)

    def _scenario_error(self, name: str) -> str | None:
        try:
            self.jobs.scenario_file(name)
        except ScenarioNotFoundError as exc:
            return str(exc)
        return None

    def _in_progress(self) -> bool:
        return self._run_task is not None and not self._run_task.done()

    # -- runs ---------------------------------------------------------------------------------------

    async def run_once(self, trigger: str = "manual", slot: str | None = None) -> dict[str, Any] | None:
        """One run now, enabled or not, to its end; its record, with the original design's `run_id`,
        `timestamp`, `episodes`, `duration_seconds`, `success`, `error`, `avg_reward` and `final_reward`
        ({}: a scheduled slot another instance took)."""
        self._refuse_while_in_progress()
        self._run_task = asyncio.create_task(self._run(trigger, slot, self._new_run_id()))
        result: dict[str, Any] | None = await self._run_task
        return result

    def start_run(self) -> str:
        """POST /daemon/run: a run in the background, enabled or not; its id."""
        self._refuse_while_in_progress()
        run_id = self._new_run_id()
        self._run_task = asyncio.create_task(self._run("manual", None, run_id))
        return run_id

    def _refuse_while_in_progress(self) -> None:
        if self._in_progress():  # named from the start: the run's row is written a moment later
            raise RunInProgressError(f"run {self._run_id} is in progress")

    def _new_run_id(self) -> str:
        self._run_id = f"run-{secrets.token_hex(6)}"
        return self._run_id

    async def _run(self, trigger: str, slot: str | None, run_id: str) -> dict[str, Any]:
        config = await self.read_config()
        episodes, scenario = config["episodes_per_run"], config["scenario"]
        claim = ClaimRun(run_id, slot, trigger, scenario, episodes, self.jobs.identity)
        run: dict[str, Any] | None = await self.service.store.write(claim)
        if run is None:
            return {}
        self.current = run
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
        return run

    async def _orphaned(self, runs: list[dict[str, Any]], reason: str) -> None:
        """Runs whose server died with them (any instance finds them: training/jobs.py): failed, and said so."""
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
        """A message of the `training-daemon` session, and with Redis an entry of the stream `kind` with the
        original design's payload (its timestamp in ISO 8601). Neither failing fails the run: logged."""
        await self._store_event(kind, data)
        if self.redis is not None:
            try:
                await self.redis.append(kind, {**data, "timestamp": iso(data["timestamp"])}, data["run_id"])
            except DaemonRedisError as exc:
                logger.warning("%s (run %s)", exc, data["run_id"])

    async def _store_event(self, kind: str, data: dict[str, Any]) -> None:
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
        while True:
            if not self.config or self.iterations % READ_CONFIG_EVERY == 0 or self._wake.is_set():
                self._wake.clear()
                self.config = await self.read_config()
            config = self.config
            self.iterations += 1
            self.last_check = time.time()
            if config["enabled"] and not self._in_progress():
                slot = await self._due_slot(config)
                if slot is not None:
                    self.config = config = await self.read_config()  # before each run: it may have just changed
                    if config["enabled"]:
                        try:
                            await self.run_once("schedule", slot)
                        except RunInProgressError:
                            pass
                        except Exception:
                            logger.exception("a scheduled training run failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick)

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

    def _state(self, enabled: bool, training: bool) -> str:
        if training:
            return "training"
        if not self._running:
            return "stopped"
        if "daemon" in self.supervisor.failing():
            return "failing"  # its loop crashed and waits to be restarted (bot/server/supervisor.py)
        return "idle" if enabled else "disabled"

    def get_status(self) -> dict[str, Any]:
        """The original design's synchronous status: the configuration the loop read last (again at least
        every 10 iterations), whether the loop runs, and when it last looked (`last_check`). The API's
        `status()` reads the stored configuration afresh."""
        config, training = self.config, self._in_progress()
        return {
            "enabled": config.get("enabled"),
            "interval_minutes": config.get("interval_minutes"),
            "episodes_per_run": config.get("episodes_per_run"),
            "running": self._running,
            "last_check": iso(self.last_check) if self.last_check is not None else None,
            "state": self._state(bool(config.get("enabled")), training),
            "in_progress": training,
            "scenario": config.get("scenario"),
            "current_run": self.current,
            "iterations": self.iterations,
        }

    async def status(self) -> dict[str, Any]:
        config = await self.read_config()
        return await self._status(config, await self.service.store.read(run_counts))

    async def _status(self, config: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
        """get_status()'s keys from the stored configuration, and more; `state` is `training` while any
        instance runs a run (the database's `running` rows)."""
        next_run, _ = await self._next_run(config)
        enabled = config["enabled"]
        return {
            **self.get_status(),
            "enabled": enabled,
            "interval_minutes": config["interval_minutes"],
            "episodes_per_run": config["episodes_per_run"],
            "scenario": config["scenario"],
            "state": self._state(enabled, self._in_progress() or counts["running"] > 0),
            "active": self._running,
            "last_loop_error": self.supervisor.failing().get("daemon"),
            "config": config,
            "next_run_at": next_run if self._running and enabled else None,
            "events_session": EVENTS_SESSION,
        }

    async def summary(self) -> dict[str, Any]:
        """The original design's flat summary (enabled, interval_minutes, episodes_per_run, total_runs,
        success_rate, last_run_at, last_error, recent_runs), then this server's own keys."""
        config = await self.read_config()
        counts = await self.service.store.read(run_counts)
        recent = await self.service.store.read(recent_runs, 10)
        ended = counts["succeeded"] + counts["failed"]
        return {
            "enabled": config["enabled"],
            "interval_minutes": config["interval_minutes"],
            "episodes_per_run": config["episodes_per_run"],
            "total_runs": counts["total"],
            # Of the runs that ended; 0.0 before any has, as the original design has it.
            "success_rate": round(counts["succeeded"] / ended, 4) if ended else 0.0,
            "last_run_at": recent[0]["timestamp"] if recent else None,
            "last_error": await self.service.store.read(last_error),
            "recent_runs": recent,
            "successful_runs": counts["succeeded"],
            "failed_runs": counts["failed"],
            "last_run_time": recent[0]["started_at"] if recent else None,
            "daemon": await self._status(config, counts),
        }

    async def put_config(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Store these changes (Redis first: when it refuses, DaemonRedisError and nothing changed); the
        configuration as it now reads."""
        if self.redis is not None:
            await self.redis.write(changes)
        await self.service.store.write(PutConfig(changes, self.default_enabled))
        self.reconfigured()
        return await self.read_config()


def _log(run_id: str, episode: int | None, episodes: int, message: str) -> None:
    where = f"[episode={episode}/{episodes}]" if episode is not None else ""
    logger.info("[RLv3][TRAINING][RUN_ID=%s]%s %s", run_id, where, message, extra={"run_id": run_id})
