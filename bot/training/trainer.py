"""The Trainer of the original design: episodes, greedy evaluations, checkpoints, early stopping, curves.

Files under `output_dir`: `checkpoints/` (`best.pt`, `latest.pt`, `episode_N.pt` unless save_best_only,
`emergency.pt` on an exception or Ctrl-C; each with a `.json` of metadata), `metrics.json`,
`logs/training.log` and `training_curves.png`. A checkpoint holds everything a run is (networks,
optimizer, replay buffer, counters, random generators, history), so `load_checkpoint()` then
`train()` ends where the uninterrupted run would have. Environments are reset with `seed + episode`,
so a seeded run is reproducible episode by episode.

Pushing to the server is optional: pass an SDK `Run` and every episode's metrics, sampled decisions,
the evaluation curve and status changes go to it (the SDK never makes training wait).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bot.training.agent import DQNAgent
from bot.training.config import TrainingConfig

logger = logging.getLogger("bot.training")

EVAL_SEED_OFFSET = 1_000_000  # evaluation episodes use seeds no training episode does
DECISION_INTERVAL = 1.0  # seconds between the decisions sampled to the server (an episode's first step's)


class Trainer:
    def __init__(
        self,
        agent: DQNAgent,
        env: Any,
        config: TrainingConfig,
        output_dir: str | Path,
        run: Any = None,
        checkpoint_path: Callable[[str], Path] | None = None,
    ):
        self.agent, self.env, self.config, self.run = agent, env, config, run
        self.output_dir = Path(output_dir)
        self.checkpoint_dir = self.output_dir / config.checkpoint_dir
        # Where checkpoint `name` (best, latest, emergency, episode_N) goes; by default checkpoint_dir/name.pt.
        # A training job lays them out as the original design does (bot/training/job.py).
        self.checkpoint_path = checkpoint_path or (lambda name: self.checkpoint_dir / f"{name}.pt")
        self.episode = 0
        self.history: dict[str, list[Any]] = {"reward": [], "length": [], "loss": [], "epsilon": [], "eval": []}
        self.best_eval = -math.inf
        self.evals_without_improvement = 0
        self.started = time.monotonic()
        self.elapsed_before = 0.0  # training time of the run before a resume
        self._handler: logging.Handler | None = None
        # Called with each episode's figures (the CLI's progress bar, Weights & Biases).
        self.listeners: list[Callable[[dict[str, Any]], Any]] = []
        self._next_decision = 0.0

    # -- the loop ------------------------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """Train until max_episodes, early stopping or the target reward; returns the final statistics."""
        self._open_log()
        self.started = time.monotonic()
        outcome = "completed"
        self._status("running", f"training {self.config.env_id} from episode {self.episode + 1}")
        try:
            while self.episode < self.config.max_episodes:
                if self.config.max_steps is not None and self.agent.steps >= self.config.max_steps:
                    outcome = "step budget reached"
                    break
                self.episode += 1
                reward, length, loss = self._run_episode()
                self._record(reward, length, loss)
                if self.episode % self.config.log_frequency == 0:
                    self._log_progress()
                if self.episode % self.config.eval_frequency == 0:
                    evaluation = self._evaluate()
                    self._log_evaluation(evaluation)
                    if self._should_stop_early(evaluation):
                        outcome = "stopped early"
                        break
                if not self.config.save_best_only and self.episode % self.config.checkpoint_frequency == 0:
                    self._save_checkpoint(f"episode_{self.episode}")
                if self.episode % self.config.plot_frequency == 0:
                    self.plot_training_curves()
        except BaseException as exc:
            self._save_checkpoint("emergency")
            interrupted = isinstance(exc, KeyboardInterrupt)
            self._status("stopped" if interrupted else "failed", f"{type(exc).__name__}: {exc}"[:1000])
            logger.error(
                "training %s at episode %d; emergency checkpoint saved",
                "interrupted" if interrupted else "failed",
                self.episode,
            )
            raise
        finally:
            self._write_metrics()
            self._close_log()
        self._save_checkpoint("latest")
        self.plot_training_curves()
        self._status("completed", f"{outcome} after {self.episode} episodes")
        return self.statistics(outcome)

    def _run_episode(self, evaluate: bool = False, seed: int | None = None) -> tuple[float, int, float]:
        """One episode: (total reward, steps, mean loss of its updates; NaN while not learning yet)."""
        state, _ = self.env.reset(seed=seed if seed is not None else self._seed(self.episode))
        total, losses = 0.0, []
        for step in range(self.config.max_steps_per_episode):
            action = self.agent.select_action(state, evaluate=evaluate)
            if step == 0 and not evaluate:
                self._push_decision(state, action)
            next_state, reward, terminated, truncated, _ = self.env.step(action)
            total += float(reward)
            if not evaluate:
                self.agent.store_transition(state, action, float(reward), next_state, terminated)
                stats = self.agent.train_step()
                if not math.isnan(stats["loss"]):
                    losses.append(stats["loss"])
            state = next_state
            if terminated or truncated:
                break
        return total, step + 1, float(np.mean(losses)) if losses else math.nan

    def _evaluate(self) -> dict[str, float]:
        """Greedy episodes on seeds of their own: mean, std, min and max reward."""
        base = self._seed(EVAL_SEED_OFFSET + self.episode * self.config.eval_episodes)
        rewards = [
            self._run_episode(evaluate=True, seed=None if base is None else base + i)[0]
            for i in range(self.config.eval_episodes)
        ]
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
                "evaluation", title="Greedy evaluation", y_label="reward", eval_mean_reward=evaluation["mean"]
            )
        return evaluation

    def _should_stop_early(self, evaluation: dict[str, float]) -> bool:
        """Saves `best` on improvement; stops after `patience` evaluations without one (never before
        min_episodes), or once the evaluation reaches target_reward."""
        if evaluation["mean"] > self.best_eval:
            self.best_eval = evaluation["mean"]
            self.evals_without_improvement = 0
            self._save_checkpoint("best", evaluation)
        else:
            self.evals_without_improvement += 1
        target = self.config.target_reward
        if target is not None and evaluation["mean"] >= target:
            return True
        return (
            self.config.early_stopping
            and self.episode >= self.config.min_episodes
            and self.evals_without_improvement >= self.config.patience
        )

    def evaluate_only(self) -> dict[str, float]:
        """Greedy evaluation of the loaded agent, nothing trained or written."""
        return self._evaluate()

    # -- checkpoints ----------------------------------------------------------------------------------

    def _save_checkpoint(self, name: str, evaluation: dict[str, float] | None = None) -> Path:
        path = self.checkpoint_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "agent": self.agent.state_dict(),
            "episode": self.episode,
            "history": self.history,
            "best_eval": self.best_eval,
            "evals_without_improvement": self.evals_without_improvement,
            "elapsed": self._elapsed(),
            "config": dataclasses.asdict(self.config),
        }
        temporary = path.with_suffix(".tmp")
        torch.save(state, temporary)
        temporary.replace(path)  # a crash mid-save never leaves a torn checkpoint
        metadata = {
            "episode": self.episode,
            "steps": self.agent.steps,
            "eval_score": evaluation["mean"]
            if evaluation
            else (self.best_eval if self.best_eval > -math.inf else None),
            "config": dataclasses.asdict(self.config),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "elapsed_seconds": round(self._elapsed(), 3),
        }
        path.with_suffix(".json").write_text(json.dumps(metadata, indent=1))
        return path

    def load_checkpoint(self, path: str | Path) -> None:
        """Continue from a checkpoint: the next train() goes on from its episode, with its exact state."""
        state = torch.load(path, weights_only=False)
        self.agent.load_state_dict(state["agent"])
        self.episode = state["episode"]
        self.history = state["history"]
        self.best_eval = state["best_eval"]
        self.evals_without_improvement = state["evals_without_improvement"]
        self.elapsed_before = state["elapsed"]

    # -- reporting -------------------------------------------------------------------------------------

    def _record(self, reward: float, length: int, loss: float) -> None:
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
                total_episodes=self.config.max_episodes,
                current_reward=reward,
                average_reward=float(np.mean(recent)),
                best_reward=float(max(h["reward"])),
                episode_length=length,
                loss_value=loss,
                epsilon=self.agent.epsilon,
                learning_rate=self.config.learning_rate,
                training_time_elapsed=elapsed,
                actions_per_second=self.agent.steps / elapsed if elapsed > 0 else 0.0,
            )

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
            step=0,
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
        self._status("running", f"evaluated at episode {self.episode}: mean reward {evaluation['mean']:.2f}")
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
        rewards = self.history["reward"]
        return {
            "outcome": outcome,
            "episodes": self.episode,
            "steps": self.agent.steps,
            "best_eval": self.best_eval if self.best_eval > -math.inf else None,
            "final_average_reward": float(np.mean(rewards[-100:])) if rewards else None,
            "elapsed_seconds": round(self._elapsed(), 3),
        }

    def _write_metrics(self) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        clean = {
            key: [None if isinstance(v, float) and math.isnan(v) else v for v in values]
            for key, values in self.history.items()
        }
        (self.output_dir / "metrics.json").write_text(json.dumps({"history": clean, "statistics": self.statistics()}))

    def plot_training_curves(self) -> Path:
        """training_curves.png: raw and smoothed reward, evaluation reward, loss and epsilon."""
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
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / "training_curves.png"
        figure.savefig(path)
        plt.close(figure)
        return path

    # -- helpers -----------------------------------------------------------------------------------------

    def _seed(self, offset: int) -> int | None:
        return None if self.config.seed is None else self.config.seed + offset

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.monotonic() - self.started)

    def _open_log(self) -> None:
        (self.output_dir / "logs").mkdir(parents=True, exist_ok=True)
        self._handler = logging.FileHandler(self.output_dir / "logs" / "training.log")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(self._handler)
        logger.setLevel(logging.INFO)

    def _close_log(self) -> None:
        if self._handler is not None:
            logger.removeHandler(self._handler)
            self._handler.close()
            self._handler = None
