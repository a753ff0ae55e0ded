"""One training job, in a process of its own: `python -m bot.training.job ...` (started by bot/server/training/jobs.py).

It trains a scenario with the reference Trainer, pushes into its session through the SDK like any engine,
and tells its supervisor what happens on stdout, one `TMS-EVENT {json}` line per event (`config` once, the
configuration it trains with; `progress` every episode; then `completed` or `stopped`); every other line is
free. SIGINT (the supervisor's stop) saves a checkpoint and exits with code 130; any other end but 0 is a
failure the supervisor reports.

Each job writes into a folder of its own, `jobs/{job_id}/` under the models directory, so two jobs of one
scenario never overwrite each other: `{scenario}_final.pt`, `{scenario}_history.json` and
`checkpoints/{scenario}/checkpoint_episode_N/`, `checkpoint_best/`, `checkpoint_final/` (each a `model.pt` and
its `model.json`); a hierarchical scenario (bot/training/hierarchy.py) has `{scenario}_high_agent.pt` and
`{scenario}_low_agent.pt` instead of `{scenario}_final.pt`, and each checkpoint folder holds both networks
(`high_agent.pt`, `low_agent.pt`, `model.json`). When a job completes, the original design's layout at the top
of the models directory is pointed at it, each name replaced atomically: it shows the latest completed job,
whole (a stopped job has no final model, so it is not published: `training_stopped` names its checkpoint).

It pushes with the credential the server gave it (TMS_API_KEY: `write`, its own session only). A push the
server refuses (a revoked key, say) ends the job at once with exit status 3 and the reason on stderr: a job
whose data was not stored never reports `completed`.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import importlib
import json
import math
import os
import shutil
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.training.stops import stops_held

EVENT_PREFIX = "TMS-EVENT "
PR_SET_PDEATHSIG = 1
EXIT_STOPPED = 130
EXIT_REFUSED = 3
# The server died (the kernel's SIGINT, PR_SET_PDEATHSIG): the instance that finds the job fails it, saying so.
ORPHANED = "its server stopped or went away while the job was running"
PARENT_CHECKS, PARENT_CHECK_INTERVAL = 5, 0.05  # a dying server's threads are gone well within 0.25 s
RECENT = 10  # progress averages are over the last 10 episodes, as in the original design


def emit(event: str, **payload: Any) -> None:
    """One event line, written whole: a stop that arrives meanwhile waits until its newline is out (unbuffered,
    `print` writes the text and the newline in two calls, and a stop between them ran two events together)."""
    line = EVENT_PREFIX + json.dumps({"event": event, **payload}, allow_nan=False) + "\n"
    with stops_held():
        sys.stdout.write(line)
        sys.stdout.flush()


def _finite(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.training.job")
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--scenario-file", required=True)
    parser.add_argument("--episodes", type=int, required=True)
    parser.add_argument("--save-interval", type=int, required=True)
    parser.add_argument("--eval-episodes", type=int, required=True)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--server", required=True)
    parser.add_argument("--session", required=True)
    parser.add_argument("--models-dir", required=True)
    parser.add_argument("--job-id", required=True, help="the job's own folder is jobs/JOB_ID in the models dir")
    parser.add_argument("--threads", type=int, default=1, help="torch's threads (1: small networks, shared cores)")
    parser.add_argument("--parent-pid", type=int, help="stop (with a checkpoint) when this process ends")
    args = parser.parse_args(argv)
    stops = Stops(args.parent_pid)
    signal.signal(signal.SIGINT, stops)
    signal.signal(signal.SIGTERM, stops)  # a Ray job's stop, or a plain `kill`: saved like a Ctrl-C
    try:
        if args.parent_pid is not None:
            _stop_with_parent(args.parent_pid)
        _load_libraries()
        return _train(args)
    except KeyboardInterrupt:  # stopped before training began (while importing torch, say)
        emit("stopped", episodes_completed=0, checkpoint=None)
        return EXIT_STOPPED
    except PushRefusedError as exc:
        print(f"the server refused the job's data: {exc}", file=sys.stderr, flush=True)
        return EXIT_REFUSED


def _load_libraries() -> None:
    """torch, numpy, gymnasium and the trainer, imported with stop signals held: a stop that arrives meanwhile
    is raised once they are in. Inside a C extension's import (numpy's core) a KeyboardInterrupt became an
    ImportError, and the stopped job exited 1, recorded `failed`."""
    with stops_held():
        for module in ("bot.training.trainer", "bot.training.cli", "bot.training.hierarchy", "bot.sdk"):
            importlib.import_module(module)  # torch and numpy first, as `import bot.training` had them


class Stops:
    """The job's stop signals (SIGINT, SIGTERM): the supervisor's, a user's, or the kernel's when the server
    died. The first stops the job; later ones are ignored, as the job is stopping already (a second one cut
    the emergency checkpoint in two). The kernel sends SIGINT as each thread of the dead server exits
    (PR_SET_PDEATHSIG), the first while the server's other threads still are its parent: the parent is looked
    at a few times before the stop is taken for one the server asked for."""

    def __init__(self, parent: int | None) -> None:
        self.parent = parent
        self.stopping = False

    def __call__(self, signum: int, frame: Any) -> None:
        if self.stopping:
            return
        self.stopping = True
        if self.parent is not None and self._parent_gone():
            raise ServerGone(ORPHANED)
        raise KeyboardInterrupt(f"stopped ({signal.Signals(signum).name})")  # the status message: not a Ctrl-C

    def _parent_gone(self) -> bool:
        for _ in range(PARENT_CHECKS):
            if os.getppid() != self.parent:
                return True
            time.sleep(PARENT_CHECK_INTERVAL)
        return False


class ServerGone(KeyboardInterrupt):  # a KeyboardInterrupt, named as those are
    """The server died (the kernel's SIGINT): the job stops as on a stop, a checkpoint kept, but its run ends
    `failed` (the trainer reads `status`), as the instance that finds the job records it: nobody stopped it."""

    status = "failed"


class PushRefusedError(Exception):
    """The server refused a batch of this job's data (dead-lettered by the SDK), or the job's credential (a
    revoked key: the SDK keeps the batches in its spool)."""


def _check_refusals(client: Any) -> None:
    if client.credential_refused:
        raise PushRefusedError(client.credential_refused)
    if client.rejected:
        raise PushRefusedError(client.last_rejection or "a batch was refused")


def _refusals(client: Any) -> Any:
    """A trainer listener that ends the run at the first refused push: training on would store nothing."""

    def check(_figures: dict[str, Any]) -> None:
        _check_refusals(client)

    return check


def _stop_with_parent(parent: int) -> None:
    """A job never outlives its server: when the server dies (even by SIGKILL) the kernel sends this process
    SIGINT, which stops it as a stop request would (Linux; elsewhere the server's shutdown stops jobs)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGINT)
    if os.getppid() != parent:  # it died before the line above
        raise KeyboardInterrupt


def _train(args: argparse.Namespace) -> int:
    from bot.training.hierarchy import is_hierarchical

    if is_hierarchical(args.scenario_file):
        return _train_hierarchical(args)
    from bot.training.agent import DQNAgent
    from bot.training.cli import _environment
    from bot.training.config import TrainingConfig
    from bot.training.threads import limit_threads
    from bot.training.trainer import Trainer

    scenario = TrainingConfig.from_yaml(args.scenario_file)
    config = dataclasses.replace(scenario, target_reward=None)  # a job runs the episodes it was asked for
    config = config.replace(
        max_episodes=args.episodes,
        checkpoint_frequency=args.save_interval,
        eval_episodes=args.eval_episodes,
        eval_frequency=min(scenario.eval_frequency, args.episodes),
        seed=args.seed,
        early_stopping=False,
    )
    limit_threads(args.threads)
    emit("config", config=dataclasses.asdict(config))
    models = Path(args.models_dir)
    folder = models / "jobs" / args.job_id
    env = _environment(config.env_id)
    layout = CheckpointLayout(folder, args.scenario)

    def build(run: Any) -> Trainer:
        agent = DQNAgent(env.observation_space.shape[0], int(env.action_space.n), config, seed=config.seed)
        return Trainer(agent, env, config, folder / "run", run, layout.path)

    trained = _train_under_protocol(args, layout, build, Progress(config.max_episodes))
    if trained is None:
        return EXIT_STOPPED
    trainer, statistics = trained
    final = layout.finish()
    model_path = folder / f"{args.scenario}_final.pt"
    shutil.copyfile(final / "model.pt", model_path)
    return _complete(models, folder, args.scenario, trainer, statistics, model_path=str(model_path))


def _complete(models: Path, folder: Path, scenario: str, trainer: Any, statistics: dict[str, Any], **files: str) -> int:
    """A completed job: its history written, the design's names pointed at it, then `completed` told."""
    _write_history(folder, scenario, trainer, statistics["outcome"])
    publish_latest(models, folder, scenario)
    emit(
        "completed",
        episodes_completed=trainer.episode,
        final_avg_reward=statistics["final_average_reward"],
        best_eval=statistics["best_eval"],
        duration=statistics["elapsed_seconds"],
        **files,
        job_dir=str(folder),
    )
    return 0


def _train_under_protocol(
    args: argparse.Namespace, layout: CheckpointLayout, build: Callable[[Any], Any], progress: Progress
) -> tuple[Any, dict[str, Any]] | None:
    """Train in the job's session under the supervisor's protocol: a progress event every episode, the end at
    the first refused push (PushRefusedError), and on a stop (SIGINT, SIGTERM) the stop's checkpoint kept,
    the latest job published and `stopped` emitted (None is returned). Else (the trainer, its statistics)."""
    from bot.sdk import MetricsClient

    models = Path(args.models_dir)
    folder = models / "jobs" / args.job_id
    trainer = None
    with MetricsClient(args.server, flush_interval=0.5) as client:
        try:
            with client.session(training_id=args.session, system_metrics=True) as run:
                trainer = build(run)
                trainer.listeners += [progress.record, _refusals(client)]
                statistics: dict[str, Any] = trainer.train()
        except KeyboardInterrupt:
            if trainer is None:
                raise
            completed = len(trainer.history["reward"])  # the interrupted episode does not count
            checkpoint = layout.keep_stop(completed)
            _write_history(folder, args.scenario, trainer, "stopped")  # in its folder: only completed jobs publish
            emit("stopped", episodes_completed=completed, checkpoint=checkpoint and str(checkpoint))
            return None
        client.flush()
        _check_refusals(client)  # the last batches, or the session's own status
    return trainer, statistics


# -- hierarchical scenarios (`agent_type: hierarchical`: bot/training/hierarchy.py) ---------------------------

FINANCE_PROGRESS = {  # a hierarchical job's progress also carries these averages over the last 10 episodes
    "avg_cash": "cash",
    "avg_invested": "invested",
    "stability": "stability",
    "goal_adherence": "goal_adherence",
}


def _train_hierarchical(args: argparse.Namespace) -> int:
    """The Strategist and the Executor trained together, under the same protocol as `_train`: progress every
    episode, a checkpoint on a stop, `completed` with both networks' files, and the latest job published."""
    from bot.training.hierarchy import HIGH, LOW, HierarchicalTrainer, HierarchyConfig
    from bot.training.threads import limit_threads

    scenario = HierarchyConfig.from_yaml(args.scenario_file)
    config = scenario.replace(
        max_episodes=args.episodes,
        checkpoint_frequency=args.save_interval,
        eval_episodes=args.eval_episodes,
        eval_frequency=min(scenario.eval_frequency, args.episodes),
        seed=args.seed,
    )
    limit_threads(args.threads)
    emit("config", config=dataclasses.asdict(config))
    models = Path(args.models_dir)
    folder = models / "jobs" / args.job_id
    layout = CheckpointLayout(folder, args.scenario)
    progress = Progress(config.max_episodes, FINANCE_PROGRESS)
    trained = _train_under_protocol(args, layout, lambda run: HierarchicalTrainer(config, run, layout.path), progress)
    if trained is None:
        return EXIT_STOPPED
    trainer, statistics = trained
    final = layout.finish()
    high, low = folder / f"{args.scenario}_{HIGH}", folder / f"{args.scenario}_{LOW}"
    shutil.copyfile(final / HIGH, high)
    shutil.copyfile(final / LOW, low)
    return _complete(models, folder, args.scenario, trainer, statistics, model_path=str(high), low_model_path=str(low))


def publish_latest(models: Path, folder: Path, scenario: str) -> None:
    """Point the original design's layout (`{scenario}_final.pt`, `{scenario}_history.json`,
    `checkpoints/{scenario}/`; `{scenario}_high_agent.pt` and `_low_agent.pt` for a hierarchical scenario) at
    this job's folder. Each name is replaced atomically (a copy renamed over the
    file; a symbolic link renamed over the folder's), so a reader sees one finished job or another, never a
    mix, and two jobs finishing at once leave the later one's."""
    names = ("final.pt", "history.json", "high_agent.pt", "low_agent.pt")  # the last two: hierarchical scenarios
    for name in (f"{scenario}_{suffix}" for suffix in names):
        if (folder / name).is_file():
            staged = models / f".{name}.{folder.name}"
            shutil.copyfile(folder / name, staged)
            os.replace(staged, models / name)
    target = folder / "checkpoints" / scenario
    if target.is_dir():
        link = models / "checkpoints" / scenario
        link.parent.mkdir(parents=True, exist_ok=True)
        staged = link.parent / f".{scenario}.{folder.name}"
        staged.unlink(missing_ok=True)
        staged.symlink_to(os.path.relpath(target, link.parent), target_is_directory=True)
        if link.is_dir() and not link.is_symlink():  # a folder an older version wrote
            shutil.rmtree(link)
        os.replace(staged, link)


class CheckpointLayout:
    """The Trainer's checkpoint names mapped to the original design's folders."""

    def __init__(self, models: Path, scenario: str) -> None:
        self.root = models / "checkpoints" / scenario

    def path(self, name: str) -> Path:
        folder = {"best": "checkpoint_best", "latest": "checkpoint_latest", "emergency": "checkpoint_stopped"}.get(
            name, f"checkpoint_{name}"
        )
        return self.root / folder / "model.pt"

    def keep_stop(self, episode: int) -> Path | None:
        """A stop's checkpoint is the episode's own, checkpoint_episode_N (None: the stop came before training
        or after its last checkpoint)."""
        stopped, kept = self.root / "checkpoint_stopped", self.root / f"checkpoint_episode_{episode}"
        if stopped.exists():
            shutil.rmtree(kept, ignore_errors=True)
            stopped.replace(kept)
        return kept if kept.exists() else None

    def finish(self) -> Path:
        latest, final = self.root / "checkpoint_latest", self.root / "checkpoint_final"
        shutil.rmtree(final, ignore_errors=True)
        latest.replace(final)
        return final


class Progress:
    """Each episode's training_progress: the episode's figures and averages over the last 10."""

    def __init__(self, total: int, extra: dict[str, str] | None = None) -> None:
        self.total = total
        self.extra = extra or {}  # more averages: progress key -> the episode figure it averages
        self.started = self.last = time.monotonic()
        self.recent: deque[dict[str, float]] = deque(maxlen=RECENT)

    def record(self, figures: dict[str, Any]) -> None:
        now = time.monotonic()
        self.recent.append({**figures, "duration": now - self.last})
        self.last = now
        losses = [r["loss"] for r in self.recent if math.isfinite(r["loss"])]

        def mean(key: str) -> float:
            return sum(r[key] for r in self.recent) / len(self.recent)

        emit(
            "progress",
            episode=figures["episode"],
            total_episodes=self.total,
            reward=_finite(figures["reward"]),
            avg_reward=_finite(mean("reward")),
            avg_duration=_finite(mean("duration")),
            avg_length=_finite(mean("length")),
            avg_loss=_finite(sum(losses) / len(losses)) if losses else None,
            epsilon=_finite(figures["epsilon"]),
            elapsed_time=round(now - self.started, 3),
            **{key: _finite(mean(name)) for key, name in self.extra.items()},
        )


def _write_history(folder: Path, scenario: str, trainer: Any, outcome: str) -> None:
    clean = {
        key: [None if isinstance(v, float) and not math.isfinite(v) else v for v in values]
        for key, values in trainer.history.items()
    }
    document = {"scenario": scenario, "history": clean, "statistics": trainer.statistics(outcome)}
    (folder / f"{scenario}_history.json").write_text(json.dumps(document))


if __name__ == "__main__":
    sys.exit(main())
