"""MockCacheEnvironment: the original design's stand-in environment for fast checks. A 60-dimensional
state and 7 actions (which cache slot to use); the reward rewards the action the state points at, so a
learner can find the signal in a few thousand steps. Registered as the Gymnasium id `MockCache-v0`."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

ENV_ID = "MockCache-v0"
FINANCE_ENV_ID = "HouseholdFinance-v0"
STATE_SIZE = 60
ACTIONS = 7


class MockCacheEnvironment(gym.Env[np.ndarray, int]):
    """Each state's first 7 values score the actions (plus noise elsewhere); the best action earns 1, the
    others -0.1. An episode lasts `length` steps."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, length: int = 50) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(STATE_SIZE,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(ACTIONS)  # type: ignore[assignment]
        self.length = length
        self._t = 0
        self._state = np.zeros(STATE_SIZE, dtype=np.float32)

    def _observe(self) -> np.ndarray:
        self._state = self.np_random.uniform(-1.0, 1.0, STATE_SIZE).astype(np.float32)
        return self._state

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        return self._observe(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        best = int(np.argmax(self._state[:ACTIONS]))
        reward = 1.0 if int(action) == best else -0.1
        self._t += 1
        return self._observe(), reward, False, self._t >= self.length, {"best_action": best}


def register() -> None:
    """Make `gym.make("MockCache-v0")` and `gym.make("HouseholdFinance-v0")` work (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point=MockCacheEnvironment)  # type: ignore[arg-type]
    if FINANCE_ENV_ID not in gym.registry:  # bot/training/finance.py, imported when made
        gym.register(id=FINANCE_ENV_ID, entry_point="bot.training.finance:HouseholdFinanceEnv")
