"""`bot train` and `bot demo`: the reference trainer from the command line, with a live progress bar.

`bot train -c config/cartpole.yaml --server http://localhost:8000` trains, pushes into a new session and
says where to watch it. `--resume CKPT` and `--eval-only --checkpoint CKPT` take the configuration stored in
the checkpoint (a `-c` file, when given, instead), and the command line's options over it. A bad environment
id, setting or checkpoint (missing, corrupt, foreign, or for another network) is one line on stderr and exit
code 2, before anything is written. Ctrl-C and SIGTERM save an emergency checkpoint and say how to resume.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym

from bot.training.agent import DQNAgent
from bot.training.checkpoints import CheckpointError, config_from_checkpoint, read_checkpoint
from bot.training.config import TrainingConfig, TrainingConfigError
from bot.training.envs import register
from bot.training.threads import DEFAULT_THREADS, limit_threads
from bot.training.trainer import Trainer

SHIPPED = Path(__file__).resolve().parent / "configs"  # tuned settings by name: `-c cartpole` (config/ links them)


class UsageError(Exception):
    """Said in one line, exit code 2, nothing written."""


def train_command(args: argparse.Namespace) -> int:
    try:
        threads = getattr(args, "threads", DEFAULT_THREADS)
        if threads < 1:
            raise UsageError(f"--threads must be at least 1, got {threads}")
        checkpoint = _checkpoint(args)
        state = read_checkpoint(checkpoint) if checkpoint is not None else None
        config = _config(args, state, checkpoint)
        env = _environment(config.env_id)
        if args.wandb and importlib.util.find_spec("wandb") is None:
            raise UsageError("--wandb needs the `wandb` package: pip install 'training-metrics-server[wandb]'")
        limit_threads(threads)
        trainer = _trainer(config, env, Path(args.output), None)
        if state is not None and checkpoint is not None:
            trainer.restore(state, checkpoint)
    except (UsageError, TrainingConfigError, CheckpointError) as exc:
        print(f"bot train: {exc}", file=sys.stderr)
        return 2
    try:
        with _session(args.server, config) as run:  # a stop goes through it: the run is `stopped`
            trainer.run = run
            if args.eval_only:
                evaluation = trainer.evaluate_only()
                print(f"bot train: greedy evaluation over {config.eval_episodes} episodes: {evaluation}")
                return 0
            with _progress(trainer):
                statistics = trainer.train()
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (a TrainingInterrupted)
        code = 128 + getattr(exc, "signum", signal.SIGINT)
        if args.eval_only:
            return code
        emergency = trainer.checkpoint_path("emergency")
        if emergency.exists():
            print(f"bot train: interrupted at episode {trainer.episode}; resume with --resume {emergency}")
        else:
            print("bot train: interrupted before training began; nothing to resume")
        return code
    print(f"bot train: {statistics}")
    return 0


def _config(args: argparse.Namespace, state: dict[str, Any] | None, checkpoint: Path | None) -> TrainingConfig:
    """`-c FILE`, else the configuration a checkpoint was trained with, else the defaults; then the options."""
    if args.config:
        config = TrainingConfig.from_yaml(_config_path(args.config))
    elif state is not None and checkpoint is not None:
        config = config_from_checkpoint(state, checkpoint)
    else:
        config = TrainingConfig()
    return config.replace(
        max_episodes=args.episodes,
        seed=args.seed,
        agent_type=args.agent_type,
        eval_episodes=args.eval_episodes,
        env_id=args.env,
        use_wandb=args.wandb or None,
    )


def _config_path(name: str) -> Path:
    """A YAML file, or the name of a shipped one (`cartpole`)."""
    path = Path(name)
    shipped = SHIPPED / f"{name}.yaml"
    return shipped if not path.exists() and shipped.exists() else path


def _environment(env_id: str) -> Any:
    register()
    try:
        env = gym.make(env_id)
    except gym.error.Error as exc:
        raise UsageError(f"unknown environment {env_id!r}: {exc}") from None
    if not isinstance(env.action_space, gym.spaces.Discrete) or len(env.observation_space.shape or ()) != 1:
        raise UsageError(f"environment {env_id!r}: DQN needs discrete actions and a flat observation vector")
    return env


def _checkpoint(args: argparse.Namespace) -> Path | None:
    if args.eval_only and not args.checkpoint:
        raise UsageError("--eval-only needs --checkpoint PATH")
    path = args.checkpoint if args.eval_only else args.resume
    return Path(path) if path is not None else None


def _trainer(config: TrainingConfig, env: Any, output: Path, run: Any) -> Trainer:
    agent = DQNAgent(env.observation_space.shape[0], int(env.action_space.n), config, seed=config.seed)
    return Trainer(agent, env, config, output, run)


@contextlib.contextmanager
def _session(server: str | None, config: TrainingConfig) -> Iterator[Any]:
    """A session on the server (its live URL said as it starts), or None without --server: named so that runs
    tell apart, with its total episodes and its whole configuration."""
    if server is None:
        yield None
        return
    from bot.sdk import MetricsClient

    # Twice a second is live enough for a chart of episodes, and half the requests of the SDK's default.
    client = MetricsClient(server, flush_interval=0.5)
    metadata = dataclasses.asdict(config)
    total = config.max_episodes
    # system_metrics: what the run costs the machine, beside its own figures
    run = client.session(
        run_name(config), algorithm="DQN", total_episodes=total, metadata=metadata, system_metrics=True
    )
    with client, run:
        yield run


def run_name(config: TrainingConfig) -> str:
    """`dqn CartPole-v1 seed 3 · 7f3a`: the seed, where there is one, and a short id of its own."""
    seed = "" if config.seed is None else f" seed {config.seed}"
    return f"{config.agent_type} {config.env_id}{seed} · {secrets.token_hex(2)}"


@contextlib.contextmanager
def _progress(trainer: Trainer) -> Iterator[None]:
    """A live bar: episode, reward, epsilon, elapsed and ETA (when the config is verbose)."""
    if not trainer.config.verbose:
        yield
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, TimeRemainingColumn()) as progress:
        task = progress.add_task("training", total=trainer.config.max_episodes, completed=trainer.episode)

        def show(metrics: dict[str, Any]) -> None:
            description = f"reward {metrics['reward']:8.2f}  epsilon {metrics['epsilon']:.3f}"
            progress.update(task, completed=metrics["episode"], description=description)

        trainer.listeners.append(show)
        yield


def demo_command(args: argparse.Namespace) -> int:
    """`bot serve` on its defaults, a short CartPole run pushing into it, and the URL of its live page."""
    url = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--port", str(args.port)])
    try:
        if not _wait_for(url):
            print(f"bot demo: the server did not answer at {url}", file=sys.stderr)
            return 2
        print(f"bot demo: the server runs at {url}; every session is listed at {url}/")
        config = TrainingConfig.from_yaml(SHIPPED / "cartpole.yaml").replace(max_episodes=args.episodes, seed=args.seed)
        with _session(url, config) as run:
            trainer = _trainer(config, _environment(config.env_id), Path(args.output), run)
            with _progress(trainer):
                trainer.train()
            print(f"bot demo: the run is at {run.url}")
        if args.keep_serving:
            print("bot demo: the server keeps running; Ctrl-C stops it")
            server.wait()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        server.terminate()
        server.wait(30)


def _wait_for(url: str, seconds: float = 30.0) -> bool:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return True
        time.sleep(0.2)
    return False
