"""A Stable-Baselines3 callback: episodes, loss, learning rate, exploration, fps, and bot decisions.

    with client.session(name="cartpole-dqn", algorithm="DQN") as run:
        model.learn(20_000, callback=MetricsCallback(run, decision_every=1000))

Episode reward and length come from SB3's Monitor wrapper (added by SB3 itself unless disabled).
Every `decision_every` steps the callback logs a bot decision for the first environment: Q-values for
DQN, action probabilities for policy-gradient algorithms (PPO, A2C) on discrete action spaces.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import torch
from stable_baselines3.common.callbacks import BaseCallback

from bot.sdk import Run

# The algorithms' settings kept in the run's metadata, where the model has them (DQN, PPO, A2C, SAC, TD3, ...).
SETTINGS = (
    "learning_rate", "gamma", "batch_size", "buffer_size", "learning_starts", "train_freq", "gradient_steps",
    "target_update_interval", "exploration_fraction", "exploration_initial_eps", "exploration_final_eps",
    "n_steps", "n_epochs", "gae_lambda", "ent_coef", "vf_coef", "max_grad_norm", "clip_range", "tau", "seed",
)  # fmt: skip


class MetricsCallback(BaseCallback):
    def __init__(self, run: Run, decision_every: int = 1000, window: int = 100, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.run = run
        self.decision_every = decision_every
        self.episodes = 0
        self._recent: deque[float] = deque(maxlen=window)
        self._best: float | None = None
        self._started = time.monotonic()

    def _on_training_start(self) -> None:
        """The run's configuration: the algorithm's settings that SB3 has, and the steps it was asked for."""
        config: dict[str, Any] = {
            "algorithm": type(self.model).__name__,
            "policy": type(self.model.policy).__name__,
            "total_timesteps": self.locals.get("total_timesteps"),
        }
        env = self.training_env.envs[0] if hasattr(self.training_env, "envs") else None
        spec = getattr(getattr(env, "unwrapped", env), "spec", None)
        if spec is not None:
            config["env_id"] = spec.id
        for name in SETTINGS:
            value = getattr(self.model, name, None)
            if isinstance(value, bool | int | float | str):
                config[name] = value
        self.run.update_metadata({"sb3": config})

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", []):
            if "episode" in info:
                self._log_episode(float(info["episode"]["r"]), int(info["episode"]["l"]))
        if self.decision_every and self.num_timesteps % self.decision_every == 0:
            self._log_decision()
        return True

    def _log_episode(self, reward: float, length: int) -> None:
        self._recent.append(reward)
        self._best = reward if self._best is None else max(self._best, reward)
        elapsed = time.monotonic() - self._started
        fields: dict[str, Any] = {
            "episode": self.episodes,
            "step": self.num_timesteps,
            "current_reward": reward,
            "average_reward": sum(self._recent) / len(self._recent),
            "best_reward": self._best,
            "episode_length": length,
            "training_time_elapsed": elapsed,
            "frames_per_second": self.num_timesteps / elapsed if elapsed > 0 else None,
            "timesteps": self.num_timesteps,
        }
        loss = self.model.logger.name_to_value.get("train/loss")
        if loss is not None:
            fields["loss_value"] = float(loss)
        learning_rate = self.model.lr_schedule(self.model._current_progress_remaining)
        fields["learning_rate"] = float(learning_rate)
        exploration = getattr(self.model, "exploration_rate", None)
        if exploration is not None:
            fields["epsilon"] = float(exploration)
        self.run.log_metrics(**fields)
        self.episodes += 1

    @torch.no_grad()
    def _log_decision(self) -> None:
        observation = self.locals.get("new_obs")
        if observation is None:
            return
        policy: Any = self.model.policy
        tensor, _ = policy.obs_to_tensor(observation)
        q_net: Any = getattr(self.model, "q_net", None)
        if q_net is not None:  # DQN
            q_values = q_net(tensor)[0]
            action = int(q_values.argmax())
            self.run.log_decision(
                step=self.num_timesteps, q_values=q_values.tolist(), selected_action=action, episode=self.episodes
            )
            return
        distribution = policy.get_distribution(tensor).distribution
        probabilities = getattr(distribution, "probs", None)
        if probabilities is None:  # continuous actions: no probabilities to show
            return
        probs = probabilities[0].tolist()
        action = max(range(len(probs)), key=probs.__getitem__)
        self.run.log_decision(
            step=self.num_timesteps,
            episode=self.episodes,
            action_probabilities={str(i): p for i, p in enumerate(probs)},
            selected_action=action,
            confidence_score=probs[action],
        )
