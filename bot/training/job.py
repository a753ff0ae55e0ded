"""One training job, in a process of its own: `python -m bot.training.job ...` (started by bot/server/jobs.py).

It trains a scenario with the reference Trainer, pushes into its session through the SDK like any engine,
and tells its supervisor what happens on stdout, one `TMS-EVENT {json}` line per event (`progress` every
episode, then `completed` or `stopped`); every other line is free. SIGINT (the supervisor's stop) saves a
checkpoint and exits with code 130; any other end but 0 is a failure the supervisor reports.

Files, as the original design lays them out under the models directory: `{scenario}_final.pt` and
`{scenario}_history.json`, and `checkpoints/{scenario}/checkpoint_episode_N/`, `checkpoint_best/`,
`checkpoint_final/` (each a `model.pt` and its `model.json`).
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

EVENT_PREFIX = "TMS-EVENT "
PR_SET_PDEATHSIG = 1
EXIT_STOPPED = 130
RECENT = 10  # progress averages are over the last 10 episodes, as in the original design


def emit(event: str, **payload: Any) -> None:
    print(EVENT_PREFIX + json.dumps({"event": event, **payload}, allow_nan=False), flush=True)


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
    parser.add_argument("--parent-pid", type=int, help="stop (with a checkpoint) when this process ends")
    args = parser.parse_args(argv)
    try:
        if args.parent_pid is not None:
            _stop_with_parent(args.parent_pid)
        return _train(args)
    except KeyboardInterrupt:  # stopped before training began (while importing torch, say)
        emit("stopped", episodes_completed=0, checkpoint=None)
        return EXIT_STOPPED


def _stop_with_parent(parent: int) -> None:
    """A job never outlives its server: when the server dies (even by SIGKILL) the kernel sends this process
    SIGINT, which stops it as a stop request would (Linux; elsewhere the server's shutdown stops jobs)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGINT)
    if os.getppid() != parent:  # it died before the line above
        raise KeyboardInterrupt


def _train(args: argparse.Namespace) -> int:
    from bot.sdk import MetricsClient
    from bot.training.agent import DQNAgent
    from bot.training.cli import _environment
    from bot.training.config import TrainingConfig
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
    models = Path(args.models_dir)
    env = _environment(config.env_id)
    layout = CheckpointLayout(models, args.scenario)
    with MetricsClient(args.server, flush_interval=0.5) as client:
        with client.session(training_id=args.session) as run:
            agent = DQNAgent(env.observation_space.shape[0], int(env.action_space.n), config, seed=config.seed)
            trainer = Trainer(agent, env, config, models / "runs" / args.session, run, layout.path)
            trainer.listeners.append(Progress(config.max_episodes).record)
            try:
                statistics = trainer.train()
            except KeyboardInterrupt:
                completed = len(trainer.history["reward"])  # the interrupted episode does not count
                checkpoint = layout.keep_stop(completed)
                _write_history(models, args.scenario, trainer, "stopped")
                emit("stopped", episodes_completed=completed, checkpoint=checkpoint and str(checkpoint))
                return EXIT_STOPPED
    final = layout.finish()
    shutil.copyfile(final / "model.pt", models / f"{args.scenario}_final.pt")
    _write_history(models, args.scenario, trainer, statistics["outcome"])
    emit(
        "completed",
        episodes_completed=trainer.episode,
        final_avg_reward=statistics["final_average_reward"],
        best_eval=statistics["best_eval"],
        duration=statistics["elapsed_seconds"],
        model_path=str(models / f"{args.scenario}_final.pt"),
    )
    return 0


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

    def __init__(self, total: int) -> None:
        self.total = total
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
        )


def _write_history(models: Path, scenario: str, trainer: Any, outcome: str) -> None:
    clean = {
        key: [None if isinstance(v, float) and not math.isfinite(v) else v for v in values]
        for key, values in trainer.history.items()
    }
    document = {"scenario": scenario, "history": clean, "statistics": trainer.statistics(outcome)}
    (models / f"{scenario}_history.json").write_text(json.dumps(document))


if __name__ == "__main__":
    sys.exit(main())
