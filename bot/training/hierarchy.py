"""Hierarchical training for the household-finance scenario (`agent_type: hierarchical`, bot/training/finance.py).

Two torch DQN agents of the reference trainer (bot/training/agent.py: replay buffer, target network, epsilon
schedule) play at two time scales:

- the **Strategist** picks a savings goal (an index into `finance.GOALS`) every `goal_interval` months, from the
  household's state; its reward is the environment's reward summed over those months;
- the **Executor** picks each month's transfer toward the goal in force (the goal is in its observation); its
  reward is intrinsic, the month's adherence to the goal, plus `extrinsic_weight` times the month's reward.

The loop mirrors the reference Trainer's (episodes, greedy evaluations on seeds of their own, checkpoints,
listeners, pushes to an SDK run); it is its own class because the Trainer drives one agent. A checkpoint is a
folder holding both networks (`high_agent.pt`, `low_agent.pt`: each a whole DQNAgent state, loadable with
`DQNAgent.load`) and `model.json` (the episode, the evaluation score, the history and the settings).

A scenario file has the run's settings at the top, the household's numbers under `environment:` and each
agent's TrainingConfig settings under `strategist:` and `executor:`; a bad one is a TrainingConfigError naming
the key.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from pydantic import TypeAdapter, ValidationError

from bot.training.agent import DQNAgent
from bot.training.config import TrainingConfig, TrainingConfigError, read_mapping, validate
from bot.training.envs import register
from bot.training.finance import GOALS, SHARES, EpisodeFigures, HouseholdFinanceEnv, household
from bot.training.trainer import ended_by

logger = logging.getLogger("bot.training")

AGENT_TYPE: Literal["hierarchical"] = "hierarchical"
EVAL_SEED_OFFSET = 1_000_000  # evaluation episodes use seeds no training episode does (as the Trainer's)
DECISION_INTERVAL = 1.0  # seconds between the Strategist's decisions sampled to the server
HIGH, LOW = "high_agent.pt", "low_agent.pt"
FIGURES = ("reward", "length", "loss", "epsilon", "cash", "invested", "stability", "goal_adherence")


@dataclass
class HierarchyConfig:
    """A hierarchical scenario's settings (see the module docstring)."""

    agent_type: Literal["hierarchical"] = AGENT_TYPE
    env_id: str = "HouseholdFinance-v0"
    max_episodes: int = 1000
    goal_interval: int = 6  # months between the Strategist's decisions
    extrinsic_weight: float = 0.25  # the Executor's reward: adherence + this x the month's reward
    eval_frequency: int = 50
    eval_episodes: int = 20
    checkpoint_frequency: int = 100
    save_best_only: bool = False
    log_frequency: int = 50
    seed: int | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    strategist: TrainingConfig = field(default_factory=TrainingConfig)
    executor: TrainingConfig = field(default_factory=TrainingConfig)

    def replace(self, **changes: Any) -> HierarchyConfig:
        """A copy with `changes` applied and checked (None values are left out: an unset option)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return _validate({**values, **{k: v for k, v in changes.items() if v is not None}}, "settings")

    @classmethod
    def from_yaml(cls, path: str | Path) -> HierarchyConfig:
        return _validate(read_mapping(path), str(path))


def is_hierarchical(path: str | Path) -> bool:
    """Whether a scenario file asks for this trainer (`agent_type: hierarchical`); unreadable files are not."""
    try:
        raw = read_mapping(path)
    except TrainingConfigError:
        return False
    return raw.get("agent_type") == AGENT_TYPE


_ADAPTER = TypeAdapter(HierarchyConfig)
FIELDS = {f.name for f in dataclasses.fields(HierarchyConfig)}


def _validate(values: dict[str, Any], source: str) -> HierarchyConfig:
    unknown = sorted(set(values) - FIELDS)
    if unknown:
        raise TrainingConfigError(
            f"{source}: unknown setting {unknown[0]!r}; expected one of {', '.join(sorted(FIELDS))}"
        )
    agents = {}
    for name in ("strategist", "executor"):
        settings = values.get(name, {})
        if isinstance(settings, TrainingConfig):
            settings = dataclasses.asdict(settings)
        if not isinstance(settings, dict):
            raise TrainingConfigError(f"{source}: {name} must be a mapping of agent settings, got {settings!r}")
        agents[name] = validate(settings, source=f"{source}: {name}")
    try:
        config = _ADAPTER.validate_python({**values, **agents})
    except ValidationError as exc:
        error = exc.errors()[0]
        name = ".".join(str(part) for part in error["loc"])
        raise TrainingConfigError(f"{source}: {name}: {error['msg']}, got {error.get('input')!r}") from None
    for name in ("max_episodes", "goal_interval", "eval_frequency", "eval_episodes", "checkpoint_frequency"):
        if getattr(config, name) <= 0:
            raise TrainingConfigError(f"{source}: {name} must be > 0, got {getattr(config, name)!r}")
    if config.log_frequency <= 0 or config.extrinsic_weight < 0:
        raise TrainingConfigError(f"{source}: log_frequency must be > 0 and extrinsic_weight >= 0")
    try:
        household(config.environment)
    except (TypeError, ValueError) as exc:
        raise TrainingConfigError(f"{source}: {exc}") from None
    return config


def make_env(config: HierarchyConfig) -> Any:
    """The scenario's environment through Gymnasium (with its checks), its household from `environment:`."""
    register()
    return gym.make(config.env_id, household=household(config.environment))


class HierarchicalTrainer:
    """Trains the Strategist and the Executor together (see the module docstring)."""

    def __init__(
        self,
        config: HierarchyConfig,
        run: Any = None,
        checkpoint_path: Callable[[str], Path] | None = None,
        output_dir: str | Path = "runs/hierarchical",
    ) -> None:
        self.config, self.run = config, run
        self.env = make_env(config)
        self.household: HouseholdFinanceEnv = self.env.unwrapped
        observations = self.env.observation_space.shape[0]
        seed = config.seed
        self.strategist = DQNAgent(observations, len(GOALS), config.strategist, seed=seed)
        self.executor = DQNAgent(observations, len(SHARES), config.executor, seed=None if seed is None else seed + 1)
        # Where checkpoint `name` (best, latest, emergency, episode_N) goes: the folder of this path. A training
        # job lays them out as the original design does (bot/training/job.py).
        default = Path(output_dir) / "checkpoints"
        self.checkpoint_path = checkpoint_path or (lambda name: default / name / "model.pt")
        self.episode = 0
        self.history: dict[str, list[Any]] = {key: [] for key in (*FIGURES, "strategist_loss", "eval")}
        self.best_eval = -math.inf
        self.started = time.monotonic()
        self.listeners: list[Callable[[dict[str, Any]], Any]] = []
        self._next_decision = 0.0

    # -- the loop ------------------------------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        """Train for max_episodes, evaluating greedily every eval_frequency; returns the final statistics."""
        config = self.config
        self.started = time.monotonic()
        self._status("running", f"training {config.env_id} hierarchically from episode {self.episode + 1}")
        try:
            while self.episode < config.max_episodes:
                self.episode += 1
                figures, losses = self._run_episode(evaluate=False, seed=self._seed(self.episode))
                self._record(figures, losses)
                if self.episode % config.eval_frequency == 0:
                    self._evaluate()
                if not config.save_best_only and self.episode % config.checkpoint_frequency == 0:
                    self._save_checkpoint(f"episode_{self.episode}")
        except BaseException as exc:
            self._save_checkpoint("emergency")
            interrupted = isinstance(exc, KeyboardInterrupt)
            self._status("stopped" if interrupted else "failed", ended_by(exc, self.episode))
            raise
        self._save_checkpoint("latest")
        self._status("completed", f"completed after {self.episode} episodes")
        return self.statistics("completed")

    def _run_episode(self, evaluate: bool, seed: int | None) -> tuple[EpisodeFigures, dict[str, list[float]]]:
        """One episode of both agents; learning unless `evaluate`. Returns its figures and each agent's losses."""
        env, interval, weight = self.env, self.config.goal_interval, self.config.extrinsic_weight
        state, _ = env.reset(seed=seed)
        figures = EpisodeFigures()
        losses: dict[str, list[float]] = {"high": [], "low": []}
        planned: tuple[np.ndarray, int] | None = None  # the Strategist's state and goal in force
        collected = 0.0  # the environment's reward since the Strategist last chose
        done = False
        month = 0
        while not done:
            if month % interval == 0:
                if planned is not None and not evaluate:
                    self._learn(self.strategist, (*planned, collected, state, False), losses["high"])
                goal = self.strategist.select_action(state, evaluate=evaluate)
                if not evaluate:
                    self._push_decision(state, goal)
                state = self.household.set_goal(goal)
                planned, collected = (state, goal), 0.0
            action = self.executor.select_action(state, evaluate=evaluate)
            next_state, reward, terminated, truncated, info = env.step(action)
            figures.add(float(reward), info)
            collected += float(reward)
            if not evaluate:
                intrinsic = float(info["adherence"]) + weight * float(reward)
                self._learn(self.executor, (state, action, intrinsic, next_state, terminated), losses["low"])
            state, month, done = next_state, month + 1, terminated or truncated
        if planned is not None and not evaluate:
            self._learn(self.strategist, (*planned, collected, state, terminated), losses["high"])
        return figures, losses

    @staticmethod
    def _learn(agent: DQNAgent, transition: tuple[Any, int, float, Any, bool], losses: list[float]) -> None:
        agent.store_transition(*transition)
        stats = agent.train_step()  # None while the agent learns nothing yet
        if stats is not None and not math.isnan(stats["loss"]):
            losses.append(stats["loss"])

    def evaluate(self, episodes: int | None = None, seed: int | None = None) -> dict[str, float]:
        """Greedy episodes of both agents, nothing learnt: means of the episodes' figures, and the reward's
        spread. Seeds are `seed`, `seed + 1`, ... (default: the evaluation seeds of this point of the run)."""
        count = episodes or self.config.eval_episodes
        if seed is None:
            seed = self._seed(EVAL_SEED_OFFSET + self.episode * count)
        runs = [
            self._run_episode(evaluate=True, seed=None if seed is None else seed + i)[0].as_dict() for i in range(count)
        ]
        rewards = [r["reward"] for r in runs]
        summary = {key: float(np.mean([r[key] for r in runs])) for key in runs[0]}
        return {**summary, "mean": summary["reward"], "std": float(np.std(rewards)), "min": min(rewards)}

    def _evaluate(self) -> None:
        evaluation = {"episode": self.episode, "steps": self.executor.steps, **self.evaluate()}
        self.history["eval"].append(evaluation)
        if evaluation["mean"] > self.best_eval:
            self.best_eval = evaluation["mean"]
            self._save_checkpoint("best", evaluation)
        if self.run is not None:
            self.run.log_graph(
                "evaluation",
                title="Greedy evaluation",
                y_label="reward",
                step=self.executor.steps,
                episode=self.episode,
                eval_mean_reward=evaluation["mean"],
                eval_goal_adherence=evaluation["goal_adherence"],
            )
        message = (
            f"evaluated at episode {self.episode}: reward {evaluation['mean']:.2f}, "
            f"goal adherence {evaluation['goal_adherence']:.3f}, stability {evaluation['stability']:.3f}"
        )
        logger.info(message)  # the run has the evaluation as its graph, not as a status

    # -- checkpoints ----------------------------------------------------------------------------------

    def _save_checkpoint(self, name: str, evaluation: dict[str, float] | None = None) -> Path:
        """Both networks and the run's metadata into the folder of checkpoint `name`, each file replaced whole."""
        folder = self.checkpoint_path(name).parent
        folder.mkdir(parents=True, exist_ok=True)
        best = self.best_eval if self.best_eval > -math.inf else None
        for file, agent in ((HIGH, self.strategist), (LOW, self.executor)):
            temporary = folder / f".{file}.tmp"
            torch.save(agent.state_dict(), temporary)
            temporary.replace(folder / file)
        metadata = {
            "episode": self.episode,
            "steps": self.executor.steps,
            "eval_score": evaluation["mean"] if evaluation else best,
            "best_eval": best,
            "history": _clean(self.history),
            "config": dataclasses.asdict(self.config),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "elapsed_seconds": round(self._elapsed(), 3),
        }
        temporary = folder / ".model.json.tmp"
        temporary.write_text(json.dumps(metadata))
        temporary.replace(folder / "model.json")
        return folder

    def load_checkpoint(self, folder: str | Path) -> None:
        """Both agents and the run's counters from a checkpoint folder: the next train() goes on from there."""
        folder = Path(folder)
        self.strategist.load(folder / HIGH)
        self.executor.load(folder / LOW)
        metadata = json.loads((folder / "model.json").read_text())
        self.episode, self.history = metadata["episode"], metadata["history"]
        self.best_eval = metadata["best_eval"] if metadata["best_eval"] is not None else -math.inf

    # -- reporting -------------------------------------------------------------------------------------

    def _record(self, episode: EpisodeFigures, losses: dict[str, list[float]]) -> None:
        figures: dict[str, Any] = {
            "episode": self.episode,
            **episode.as_dict(),
            "loss": float(np.mean(losses["low"])) if losses["low"] else math.nan,
            "epsilon": self.executor.epsilon,
            "strategist_loss": float(np.mean(losses["high"])) if losses["high"] else math.nan,
            "strategist_epsilon": self.strategist.epsilon,
        }
        for key in (*FIGURES, "strategist_loss"):
            self.history[key].append(figures[key])
        for listener in self.listeners:
            listener(figures)
        if self.episode % self.config.log_frequency == 0:
            recent = self.history["reward"][-self.config.log_frequency :]
            logger.info("episode %d/%d: reward %.2f (mean)", self.episode, self.config.max_episodes, np.mean(recent))
        if self.run is not None:
            elapsed = self._elapsed()
            self.run.log_metrics(
                episode=self.episode,
                step=self.executor.steps,
                total_episodes=self.config.max_episodes,
                current_reward=figures["reward"],
                average_reward=float(np.mean(self.history["reward"][-100:])),
                best_reward=float(max(self.history["reward"])),
                episode_length=int(figures["length"]),
                loss_value=figures["loss"],
                epsilon=figures["epsilon"],
                learning_rate=self.config.executor.learning_rate,
                training_time_elapsed=elapsed,
                actions_per_second=self.executor.steps / elapsed if elapsed > 0 else 0.0,
                cash=figures["cash"],
                invested=figures["invested"],
                stability=figures["stability"],
                goal_adherence=figures["goal_adherence"],
                strategist_loss=figures["strategist_loss"],
                strategist_epsilon=figures["strategist_epsilon"],
            )

    def _push_decision(self, state: Any, goal: int) -> None:
        """The Strategist's goal choice, at most one per DECISION_INTERVAL, its Q-values by goal."""
        now = time.monotonic()
        if self.run is None or now < self._next_decision:
            return
        self._next_decision = now + DECISION_INTERVAL
        q = self.strategist.q_values(state)
        shifted = np.exp(q - q.max())
        probabilities = shifted / shifted.sum()
        self.run.log_decision(
            q_values=q,
            action_probabilities={g.label: float(p) for g, p in zip(GOALS, probabilities, strict=True)},
            selected_action=GOALS[goal].label,
            confidence_score=float(probabilities[goal]),
            episode=self.episode,
            step=self.household.month,
        )

    def _status(self, status: str, message: str) -> None:
        if self.run is not None:
            self.run.set_status(status, message)

    def statistics(self, outcome: str = "completed") -> dict[str, Any]:
        rewards = self.history["reward"]
        return {
            "outcome": outcome,
            "episodes": self.episode,
            "steps": self.executor.steps,
            "strategist_decisions": self.strategist.steps,
            "best_eval": self.best_eval if self.best_eval > -math.inf else None,
            "final_average_reward": float(np.mean(rewards[-100:])) if rewards else None,
            "elapsed_seconds": round(self._elapsed(), 3),
        }

    def _seed(self, offset: int) -> int | None:
        return None if self.config.seed is None else self.config.seed + offset

    def _elapsed(self) -> float:
        return time.monotonic() - self.started


def _clean(history: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """NaN (no loss yet) as null: the history is JSON."""
    return {
        key: [None if isinstance(v, float) and not math.isfinite(v) else v for v in values]
        for key, values in history.items()
    }
