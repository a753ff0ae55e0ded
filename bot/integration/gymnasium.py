"""A Gymnasium wrapper that logs each finished episode: reward, length, moving average and best."""

from __future__ import annotations

import time
from collections import deque
from typing import Any, SupportsFloat

import gymnasium

from bot.sdk import Run


class MetricsWrapper(gymnasium.Wrapper):
    """`env = MetricsWrapper(gymnasium.make("CartPole-v1"), run)`: every episode end becomes a metrics point."""

    def __init__(self, env: gymnasium.Env, run: Run, window: int = 100) -> None:
        super().__init__(env)
        self.run = run
        self.episode = 0
        self.steps = 0  # environment steps over every episode: the run's step
        self._reward = 0.0
        self._length = 0
        self._recent: deque[float] = deque(maxlen=window)
        self._best: float | None = None
        self._started = time.monotonic()
        if env.spec is not None:
            run.update_metadata({"env_id": env.spec.id})

    def reset(self, **kwargs: Any) -> Any:
        self._reward, self._length = 0.0, 0
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._reward += float(reward)
        self._length += 1
        self.steps += 1
        if terminated or truncated:
            self._recent.append(self._reward)
            self._best = self._reward if self._best is None else max(self._best, self._reward)
            self.run.log_metrics(
                episode=self.episode,
                step=self.steps,
                current_reward=self._reward,
                average_reward=sum(self._recent) / len(self._recent),
                best_reward=self._best,
                episode_length=self._length,
                training_time_elapsed=time.monotonic() - self._started,
            )
            self.episode += 1
        return observation, reward, terminated, truncated, info
