"""The Trainer of the original design: episodes, greedy evaluations, checkpoints, early stopping, curves.

    agent = DQNAgent(DQNConfig(state_dim=60, action_dim=7, seed=42))
    trainer = Trainer(agent, env, TrainingConfig(max_episodes=10000), output_dir="results/run1")
    stats = trainer.train()

`env` speaks Gymnasium's API or the original design's 4-tuple one (bot/training/envs.py). Files under
`output_dir`: `checkpoints/` (`best.pt` on each better evaluation; `checkpoint_ep{N}.pt` every
checkpoint_frequency episodes unless save_best_only; `emergency.pt` on an exception, Ctrl-C or SIGTERM;
`latest.pt` at every one of these and at the end; each with a `.json` of metadata), `metrics.json`,
`logs/training.log` and `training_curves.png`. A checkpoint holds everything a run is (networks, optimizer,
replay buffer, counters, random generators, history), so `load_checkpoint()` then `train()` ends where the
uninterrupted run would have. Gymnasium environments are reset with `seed + episode`, so a seeded run is
reproducible episode by episode.

With `verbose`, progress and evaluations are printed to the console (stderr) as well as the log file; with
`use_wandb`, every episode goes to Weights & Biases (offline unless WANDB_MODE says otherwise). Pushing to
the server is optional: pass an SDK `Run` and every episode's metrics, sampled decisions, the evaluation
curve and status changes go to it (the SDK never makes training wait).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bot.training.agent import DQNAgent
from bot.training.checkpoints import (
    CheckpointError,
    describe,
    link_checkpoint,
    network_of,
    read_checkpoint,
    write_checkpoint,
)
from bot.training.config import AGENT_FIELDS, TrainingConfig, TrainingConfigError, validate
from bot.training.envs import reset_env, step_env
from bot.training.stops import stops_held

logger = logging.getLogger("bot.training")

EVAL_SEED_OFFSET = 1_000_000  # evaluation episodes use seeds no training episode does
DECISION_INTERVAL = 1.0  # seconds between the decisions sampled to the server (an episode's first step's)
WANDB_PROJECT = "training-metrics"


class TrainingInterrupted(KeyboardInterrupt):
    """SIGTERM (a service manager's or a container's stop) during train(): handled as Ctrl-C is, with an
    emergency checkpoint; `signum` says which signal, so a command can exit with 128 + signum."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def ended_by(exc: BaseException, episode: int) -> str:
    """A stopped or failed run's status message: "interrupted (Ctrl-C) at episode 12", "stopped by SIGTERM at
    episode 12", or the error (Ctrl-C's KeyboardInterrupt has no text: it read "KeyboardInterrupt: ")."""
    if isinstance(exc, KeyboardInterrupt):
        return f"{str(exc) or 'interrupted (Ctrl-C)'} at episode {episode}"
    return f"{type(exc).__name__}: {exc}"[:1000]


class Trainer:
    def __init__(
        self,
        agent: DQNAgent,
        env: Any,
        config: TrainingConfig,
        output_dir: str | Path | None = None,
        run: Any = None,
        checkpoint_path: Callable[[str], Path] | None = None,
    ):
        """Nothing is written yet (train() writes). A bad setting, or use_wandb without the `wandb` package, is
        a TrainingConfigError here."""
        validate(dataclasses.asdict(config), source="TrainingConfig")
        _check_fit(agent, env)
        self.agent, self.env, self.config, self.run = agent, env, config, run
        # The original design's default: a folder of the run's own in the working directory.
        self.output_dir = Path(output_dir if output_dir is not None else f"training_run_{int(time.time())}")
        self.checkpoint_dir = self.output_dir / config.checkpoint_dir
        # Where checkpoint `name` (best, latest, emergency, episode_N) goes; by default checkpoint_dir/name.pt,
        # and episode_N as the design names it, checkpoint_dir/checkpoint_ep{N}.pt. A training job lays them
        # out as the original design's jobs do (bot/training/job.py).
        self.checkpoint_path = checkpoint_path or self._default_checkpoint_path
        self.episode = 0
        self.history: dict[str, list[Any]] = {"reward": [], "length": [], "loss": [], "epsilon": [], "eval": []}
        self.best_eval = -math.inf
        self.evals_without_improvement = 0
        self.episodes_without_improvement = 0  # what `patience` counts, as in the original design
        self.started = time.monotonic()
        self.elapsed_before = 0.0  # training time of the run before a resume
        self._handlers: list[logging.Handler] = []
        # Called with each episode's figures (the CLI's progress bar, a job's progress events).
        self.listeners: list[Callable[[dict[str, Any]], Any]] = []
        self._next_decision = 0.0
        self._wandb: Any = self._import_wandb() if config.use_wandb else None
        self._wandb_run: Any = None

    def _default_checkpoint_path(self, name: str) -> Path:
        if name.startswith("episode_"):
            return self.checkpoint_dir / f"checkpoint_ep{name.removeprefix('episode_')}.pt"
        return self.checkpoint_dir / f"{name}.pt"

    @staticmethod
    def _import_wandb() -> Any:
        try:
            return importlib.import_module("wandb")
        except ImportError as exc:
            raise TrainingConfigError(
                f"use_wandb needs the `wandb` package: pip install 'training-metrics-server[wandb]' ({exc})"
            ) from None

    # The original design's names.
    @property
    def current_episode(self) -> int:
        return self.episode

    @property
    def best_eval_reward(self) -> float:
        return self.best_eval

    @property
    def log_dir(self) -> Path:
        return self.output_dir / "logs"

    # -- the loop ------------------------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """Train until max_episodes, early stopping or the target reward; returns the final statistics.

        An exception, Ctrl-C or SIGTERM saves `emergency` (and `latest`), then propagates: SIGTERM as a
        TrainingInterrupted, which is a KeyboardInterrupt."""
        with _sigterm_interrupts():  # before anything is written: a stop that sees the log finds it in place
            return self._train()

    def _train(self) -> dict[str, Any]:
        self.started = time.monotonic()
        outcome = "completed"
        try:  # from the first line written: a stop that sees the log finds a checkpoint to resume from
            self._open_log()
            self._status("running", f"training {self._env_name()} from episode {self.episode + 1}")
            logger.info(
                "training %s from episode %d to %d", self._env_name(), self.episode + 1, self.config.max_episodes
            )
            self._start_wandb()
            while self.episode < self.config.max_episodes:
                if self.config.max_steps is not None and self.agent.steps >= self.config.max_steps:
                    outcome = "step budget reached"
                    break
                stop = self._train_episode()
                if stop is not None:
                    outcome = stop
                    break
            return self._finish(outcome)
        except BaseException as exc:
            self._save_checkpoint("emergency")
            interrupted = isinstance(exc, KeyboardInterrupt)
            # A stop ends the run `stopped`, unless the interruption says otherwise (a job whose server died)
            ending = getattr(exc, "status", "stopped") if interrupted else "failed"
            self._status(ending, ended_by(exc, self.episode))
            logger.error(
                "training %s at episode %d; emergency checkpoint saved",
                "interrupted" if interrupted else "failed",
                self.episode,
            )
            raise
        finally:
            self._write_metrics()
            self._finish_wandb()
            self._close_log()

    def _finish(self, outcome: str) -> dict[str, Any]:
        self._save_checkpoint("latest")
        self.plot_training_curves()
        self._status("completed", f"{outcome} after {self.episode} episodes")
        statistics = self.statistics(outcome)
        best = statistics["best_eval_reward"]
        logger.info(
            "training %s after %d episodes: best evaluation %s, %.1f s",
            outcome,
            self.episode,
            "none" if best is None else f"{best:.2f}",
            statistics["elapsed_seconds"],
        )
        return statistics

    def _train_episode(self) -> str | None:
        """One training episode and what follows it; the outcome when training should stop."""
        self.episode += 1
        reward, length, loss = self._run_episode()
        figures = self._record(reward, length, loss)
        if self.episode % self.config.log_frequency == 0:
            self._log_progress()
        evaluation, stop = None, None
        if self.episode % self.config.eval_frequency == 0:
            evaluation = self._evaluate()
            self._log_evaluation(evaluation)
            stop = self._should_stop_early(evaluation)
        self._log_wandb(figures, evaluation)
        if stop:
            return "stopped early"
        if self.episode % self.config.checkpoint_frequency == 0:
            # latest.pt at every checkpoint; checkpoint_ep{N}.pt too unless save_best_only
            self._save_checkpoint("latest" if self.config.save_best_only else f"episode_{self.episode}")
        if self.episode % self.config.plot_frequency == 0:
            self.plot_training_curves()
        return None

    def _run_episode(self, evaluate: bool = False, seed: int | None = None) -> tuple[float, int, float]:
        """One episode: (total reward, steps, mean loss of its updates; NaN while not learning yet)."""
        state = reset_env(self.env, seed if seed is not None else self._seed(self.episode))
        total, losses = 0.0, []
        for step in range(self.config.max_steps_per_episode):
            action = self.agent.select_action(state, evaluate=evaluate)
            if step == 0 and not evaluate:
                self._push_decision(state, action)
            next_state, reward, terminated, truncated = step_env(self.env, action)
            total += reward
            if not evaluate:
                self.agent.store_transition(state, action, reward, next_state, terminated)
                stats = self.agent.train_step()
                if stats is not None:
                    losses.append(stats["loss"])
            state = next_state
            if terminated or truncated:
                break
        return total, step + 1, float(np.mean(losses)) if losses else math.nan

    def _evaluate(self) -> dict[str, float]:
        """Greedy episodes on seeds of their own: mean, std, min and max reward (kept in the history); the
        answer adds the original design's names (mean_reward, std_reward, min_reward, max_reward, mean_length)."""
        base = self._seed(EVAL_SEED_OFFSET + self.episode * self.config.eval_episodes)
        episodes = [
            self._run_episode(evaluate=True, seed=None if base is None else base + i)
            for i in range(self.config.eval_episodes)
        ]
        rewards = [reward for reward, _, _ in episodes]
        evaluation = {
            "episode": self.episode,
            "steps": self.agent.steps,
            "mean": float(np.mean(rewards)),
            "std": float(np.std(rewards)),
            "min": float(np.min(rewards)),
            "max": float(np.max(rewards)),
        }
        self.history["eval"].append(evaluation)
        if self.run is not None:
            self.run.log_graph(
                "evaluation",
                title="Greedy evaluation",
                y_label="reward",
                step=self.agent.steps,
                episode=self.episode,
                eval_mean_reward=evaluation["mean"],
            )
        return {
            **evaluation,
            "mean_reward": evaluation["mean"],
            "std_reward": evaluation["std"],
            "min_reward": evaluation["min"],
            "max_reward": evaluation["max"],
            "mean_length": float(np.mean([length for _, length, _ in episodes])),
        }

    def _should_stop_early(self, evaluation: dict[str, float]) -> bool:
        """Saves `best` on improvement; stops once `patience` episodes have passed without one, as the original
        design counts them (each evaluation without improvement adds eval_frequency; never before
        min_episodes), or once the evaluation reaches target_reward."""
        if evaluation["mean"] > self.best_eval:
            self.best_eval = evaluation["mean"]
            self.evals_without_improvement = self.episodes_without_improvement = 0
            self._save_checkpoint("best", evaluation)
        else:
            self.evals_without_improvement += 1
            self.episodes_without_improvement += self.config.eval_frequency
        target = self.config.target_reward
        if target is not None and evaluation["mean"] >= target:
            return True
        stop = (
            self.config.early_stopping
            and self.episode >= self.config.min_episodes
            and self.episodes_without_improvement >= self.config.patience
        )
        if stop:
            logger.info("early stopping: %d episodes without improvement", self.episodes_without_improvement)
        return stop

    def evaluate_only(
        self, checkpoint_path: str | Path | None = None, num_episodes: int | None = None
    ) -> dict[str, float]:
        """Greedy evaluation, nothing trained or written: of `checkpoint_path` when given (loaded first, as the
        original design does), else of the agent as it is; over `num_episodes` (default eval_episodes)."""
        if checkpoint_path is not None:
            self.load_checkpoint(checkpoint_path)
        if num_episodes is None:
            return self._evaluate()
        if num_episodes <= 0:
            raise ValueError(f"num_episodes must be > 0, got {num_episodes}")
        configured = self.config.eval_episodes
        self.config.eval_episodes = num_episodes
        try:
            return self._evaluate()
        finally:
            self.config.eval_episodes = configured

    # -- checkpoints ----------------------------------------------------------------------------------

    def _save_checkpoint(self, name: str, evaluation: dict[str, float] | None = None) -> Path:
        """Checkpoint `name` and its metadata; `latest` becomes the same checkpoint (a hard link, no copy)."""
        path = self.checkpoint_path(name)
        state = {
            "agent": self.agent.state_dict(),
            "episode": self.episode,
            "history": self.history,
            "best_eval": self.best_eval,
            "evals_without_improvement": self.evals_without_improvement,
            "episodes_without_improvement": self.episodes_without_improvement,
            "elapsed": self._elapsed(),
            "config": dataclasses.asdict(self.config),
            "agent_config": dataclasses.asdict(self.agent.settings),
            "network": self.agent.network(),
        }
        best = self.best_eval if self.best_eval > -math.inf else None
        metadata = {
            "episode": self.episode,
            "steps": self.agent.steps,
            "eval_score": evaluation["mean"] if evaluation else best,
            "best_eval_reward": best,
            "epsilon": self.agent.epsilon,
            "config": dataclasses.asdict(self.config),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "timestamp": time.time(),
            "elapsed_seconds": round(self._elapsed(), 3),
        }
        write_checkpoint(path, state, metadata)
        if name != "latest":
            link_checkpoint(path, self.checkpoint_path("latest"))
        return path

    def load_checkpoint(self, path: str | Path) -> int:
        """Continue from a checkpoint: the next train() goes on from its episode, with its exact state. Returns
        that episode. A file that is missing, corrupt, foreign or made for another network is a
        CheckpointError (one line, naming it), raised before anything is loaded."""
        return self.restore(read_checkpoint(path), path)

    def restore(self, state: dict[str, Any], path: str | Path = "checkpoint") -> int:
        """load_checkpoint() for a checkpoint already read (bot.training.checkpoints.read_checkpoint)."""
        network, mine = network_of(state), self.agent.network()
        if network is not None and (
            any(network[key] != mine[key] for key in ("observations", "actions", "hidden_sizes"))
            or bool(network.get("dueling")) != mine["dueling"]
        ):
            raise CheckpointError(
                f"checkpoint {str(path)!r} holds another network ({describe(network)}) than this agent's "
                f"({describe(mine)})"
            )
        try:
            self.agent.load_state_dict(state["agent"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            raise CheckpointError(f"checkpoint {str(path)!r} does not fit this agent: {reason}") from None
        self.episode = state["episode"]
        self.history = state["history"]
        self.best_eval = state["best_eval"]
        self.evals_without_improvement = state["evals_without_improvement"]
        self.episodes_without_improvement = state.get(
            "episodes_without_improvement", self.evals_without_improvement * self.config.eval_frequency
        )
        self.elapsed_before = state["elapsed"]
        return self.episode

    # -- reporting -------------------------------------------------------------------------------------

    def _record(self, reward: float, length: int, loss: float) -> dict[str, Any]:
        h = self.history
        h["reward"].append(reward)
        h["length"].append(length)
        h["loss"].append(loss)
        h["epsilon"].append(self.agent.epsilon)
        figures = {
            "episode": self.episode,
            "reward": reward,
            "length": length,
            "loss": loss,
            "epsilon": self.agent.epsilon,
        }
        for listener in self.listeners:
            listener(figures)
        if self.run is not None:
            recent = h["reward"][-100:]
            elapsed = self._elapsed()
            self.run.log_metrics(
                episode=self.episode,
                step=self.agent.steps,
                total_episodes=self.config.max_episodes,
                current_reward=reward,
                average_reward=float(np.mean(recent)),
                best_reward=float(max(h["reward"])),
                episode_length=length,
                loss_value=loss,
                epsilon=self.agent.epsilon,
                learning_rate=self.agent.settings.learning_rate,
                training_time_elapsed=elapsed,
                actions_per_second=self.agent.steps / elapsed if elapsed > 0 else 0.0,
            )
        return figures

    def _push_decision(self, state: Any, action: int) -> None:
        """A sample of the bot's decisions, at most one per DECISION_INTERVAL: spectators see how it decides
        without the run paying a Q-network pass and a record for every step."""
        now = time.monotonic()
        if self.run is None or now < self._next_decision:
            return
        self._next_decision = now + DECISION_INTERVAL
        q = self.agent.q_values(state)
        shifted = np.exp(q - q.max())
        probabilities = shifted / shifted.sum()
        self.run.log_decision(
            q_values=q,
            action_probabilities=probabilities,
            selected_action=int(action),
            confidence_score=float(probabilities[action]),
            episode=self.episode,
            step=self.agent.steps,  # the run's step, as its metrics'
        )

    def _status(self, status: str, message: str) -> None:
        if self.run is not None:
            self.run.set_status(status, message)

    def _log_progress(self) -> None:
        recent = self.history["reward"][-self.config.log_frequency :]
        elapsed = self._elapsed()
        rate = self.episode / elapsed if elapsed > 0 else 0.0
        eta = (self.config.max_episodes - self.episode) / rate if rate > 0 else math.inf
        logger.info(
            "episode %d/%d: reward %.2f (mean of last %d), epsilon %.3f, loss %.4f, steps %d, "
            "elapsed %.0f s, ETA %.0f s",
            self.episode,
            self.config.max_episodes,
            float(np.mean(recent)),
            len(recent),
            self.agent.epsilon,
            self.history["loss"][-1],
            self.agent.steps,
            elapsed,
            eta,
        )

    def _log_evaluation(self, evaluation: dict[str, float]) -> None:
        """The log only: the run has the evaluation as its graph (a status per evaluation flooded the history)."""
        logger.info(
            "evaluation at episode %d: mean %.2f ± %.2f (min %.2f, max %.2f) over %d greedy episodes",
            self.episode,
            evaluation["mean"],
            evaluation["std"],
            evaluation["min"],
            evaluation["max"],
            self.config.eval_episodes,
        )

    def statistics(self, outcome: str = "completed") -> dict[str, Any]:
        """The run's figures, in this project's names and the original design's (total_episodes,
        best_eval_reward, total_time, ...); None where there is nothing to say (no evaluation yet)."""
        rewards = self.history["reward"][-100:]
        best = self.best_eval if self.best_eval > -math.inf else None
        elapsed = round(self._elapsed(), 3)
        evaluations = self.history["eval"]
        return {
            "outcome": outcome,
            "episodes": self.episode,
            "steps": self.agent.steps,
            "best_eval": best,
            "final_average_reward": float(np.mean(rewards)) if rewards else None,
            "elapsed_seconds": elapsed,
            "total_episodes": self.episode,
            "best_eval_reward": best,
            "total_time": elapsed,
            "avg_episode_time": elapsed / self.episode if self.episode else 0.0,
            "final_epsilon": self.agent.epsilon,
            "final_train_reward_mean": float(np.mean(rewards)) if rewards else None,
            "final_train_reward_std": float(np.std(rewards)) if rewards else None,
            "final_eval_reward": evaluations[-1]["mean"] if evaluations else None,
        }

    def _write_metrics(self) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        clean = {
            key: [None if isinstance(v, float) and math.isnan(v) else v for v in values]
            for key, values in self.history.items()
        }
        (self.output_dir / "metrics.json").write_text(json.dumps({"history": clean, "statistics": self.statistics()}))

    def plot_training_curves(self, output_path: str | Path | None = None) -> Path:
        """training_curves.png (or `output_path`): raw and smoothed reward, evaluation reward, loss, epsilon."""
        with stops_held():  # a Ctrl-C inside matplotlib's C extensions' import would be an ImportError
            import matplotlib

            matplotlib.use("Agg")
            from matplotlib import pyplot as plt

        h = self.history
        figure, axes = plt.subplots(2, 2, figsize=(12, 8))
        episodes = np.arange(1, len(h["reward"]) + 1)
        axes[0][0].plot(episodes, h["reward"], alpha=0.3, label="reward")
        if len(h["reward"]) >= 2:
            window = max(1, min(50, len(h["reward"]) // 5))
            smooth = np.convolve(h["reward"], np.ones(window) / window, mode="valid")
            axes[0][0].plot(episodes[window - 1 :], smooth, label=f"mean of {window}")
        axes[0][0].set_title("episode reward")
        axes[0][0].legend()
        axes[0][1].plot([e["episode"] for e in h["eval"]], [e["mean"] for e in h["eval"]], marker="o")
        axes[0][1].set_title("greedy evaluation (mean reward)")
        axes[1][0].plot(episodes, h["loss"])
        axes[1][0].set_title("loss")
        axes[1][1].plot(episodes, h["epsilon"])
        axes[1][1].set_title("epsilon")
        for axis in axes.flat:
            axis.set_xlabel("episode")
        figure.tight_layout()
        path = Path(output_path) if output_path is not None else self.output_dir / "training_curves.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path)
        plt.close(figure)
        return path

    # -- helpers -----------------------------------------------------------------------------------------

    def _seed(self, offset: int) -> int | None:
        return None if self.config.seed is None else self.config.seed + offset

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self.started)

    def _env_name(self) -> str:
        spec = getattr(self.env, "spec", None)
        return str(getattr(spec, "id", None) or type(self.env).__name__)

    def _open_log(self) -> None:
        """logs/training.log; with `verbose`, the console (stderr) too, unless logging already reaches it."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        file = logging.FileHandler(self.log_dir / "training.log")
        file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self._handlers = [file]
        if self.config.verbose and not _reaches_console(logger):
            console = logging.StreamHandler(sys.stderr)  # the stream of this moment: a progress bar's, under one
            console.setFormatter(logging.Formatter("%(message)s"))
            self._handlers.append(console)
        for handler in self._handlers:
            logger.addHandler(handler)
        logger.setLevel(logging.INFO)

    def _close_log(self) -> None:
        for handler in self._handlers:
            logger.removeHandler(handler)
            handler.close()
        self._handlers = []

    # -- Weights & Biases --------------------------------------------------------------------------------

    def _start_wandb(self) -> None:
        """A W&B run for this train() call, its files under output_dir; offline unless WANDB_MODE says."""
        if self._wandb is None:
            return
        settings = {name: getattr(self.agent.settings, name) for name in AGENT_FIELDS}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._wandb_run = self._wandb.init(
            project=WANDB_PROJECT,
            config={**dataclasses.asdict(self.config), **settings},
            dir=str(self.output_dir),
            mode=os.environ.get("WANDB_MODE", "offline"),
        )

    def _log_wandb(self, figures: dict[str, Any], evaluation: dict[str, float] | None) -> None:
        """One W&B record per episode: its figures, and the evaluation's when there was one."""
        if self._wandb_run is None:
            return
        record = dict(figures)
        if evaluation is not None:
            record.update(
                {
                    "eval/mean_reward": evaluation["mean"],
                    "eval/std_reward": evaluation["std"],
                    "eval/min_reward": evaluation["min"],
                    "eval/max_reward": evaluation["max"],
                    "eval/best_reward": self.best_eval,
                }
            )
        self._wandb_run.log(record)

    def _finish_wandb(self) -> None:
        if self._wandb_run is not None:
            run, self._wandb_run = self._wandb_run, None
            run.finish()


def _check_fit(agent: DQNAgent, env: Any) -> None:
    """An environment that declares its spaces (Gymnasium's do) must fit the agent's network."""
    shape = getattr(getattr(env, "observation_space", None), "shape", None)
    actions = getattr(getattr(env, "action_space", None), "n", None)
    if shape is None or actions is None or len(shape) != 1:
        return
    if (int(shape[0]), int(actions)) != (agent.observations, agent.actions):
        raise TrainingConfigError(
            f"the agent takes {agent.observations} observations and {agent.actions} actions; the environment "
            f"has {int(shape[0])} and {int(actions)} (DQNConfig's state_dim and action_dim must match it)"
        )


def _reaches_console(start: logging.Logger) -> bool:
    """Whether a handler of `start` or an ancestor it propagates to already writes to stdout or stderr (so
    the console is not given every line twice after logging.basicConfig())."""
    consoles = {id(sys.stdout), id(sys.stderr), id(sys.__stdout__), id(sys.__stderr__)}
    current: logging.Logger | None = start
    while current is not None:
        for handler in current.handlers:
            if isinstance(handler, logging.StreamHandler) and id(getattr(handler, "stream", None)) in consoles:
                return True
        current = current.parent if current.propagate else None
    return False


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises TrainingInterrupted while training (in the main thread, where Python takes signals), so
    a service manager's or a container's stop leaves an emergency checkpoint as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, previous)  # once: a second SIGTERM (during the emergency save) is as before
        raise TrainingInterrupted(signum)

    previous = signal.signal(signal.SIGTERM, interrupt)
    if previous is None:  # a handler installed outside Python: the default is the nearest we can restore
        previous = signal.SIG_DFL
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
