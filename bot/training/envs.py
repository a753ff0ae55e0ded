"""Environments: the two APIs the Trainer speaks, and MockCacheEnvironment.

The Trainer takes Gymnasium's API (`reset(seed=) -> (state, info)`, `step(a) -> (state, reward, terminated,
truncated, info)`) and the original design's (`reset() -> state`, `step(a) -> (state, reward, done, info)`);
`reset_env` and `step_env` hide the difference.

MockCacheEnvironment: the original design's stand-in environment for fast checks. A 60-dimensional state and
7 actions (which cache slot to use) by default, `MockCacheEnvironment(state_dim=60, action_dim=7, seed=42)`
as the design builds it; the reward rewards the action the state points at, so a learner can find the signal
in a few thousand steps. Registered as the Gymnasium id `MockCache-v0`."""

from __future__ import annotations

import inspect
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import seeding

ENV_ID = "MockCache-v0"
FINANCE_ENV_ID = "HouseholdFinance-v0"
STATE_SIZE = 60
ACTIONS = 7


class MockCacheEnvironment(gym.Env[np.ndarray, int]):
    """Each state's first `action_dim` values score the actions (plus noise elsewhere); the best action earns 1,
    the others -0.1. An episode lasts `length` steps (the design's `max_steps`). A `seed` given here seeds the
    environment once, as the design's does; `reset(seed=...)` reseeds it as any Gymnasium environment."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self, length: int = 50, state_dim: int = STATE_SIZE, action_dim: int = ACTIONS, seed: int | None = None
    ) -> None:
        if not 0 < action_dim <= state_dim:
            raise ValueError(
                f"MockCacheEnvironment: action_dim must be within 1..state_dim ({state_dim}), got {action_dim}"
            )
        if length <= 0:
            raise ValueError(f"MockCacheEnvironment: length must be > 0, got {length}")
        self.state_dim, self.action_dim = state_dim, action_dim
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(state_dim,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(action_dim)  # type: ignore[assignment]
        self.length = length
        self._t = 0
        self._state = np.zeros(state_dim, dtype=np.float32)
        if seed is not None:
            self._np_random, _ = seeding.np_random(seed)

    @property
    def max_steps(self) -> int:
        """The original design's name for `length`."""
        return self.length

    def _observe(self) -> np.ndarray:
        self._state = self.np_random.uniform(-1.0, 1.0, self.state_dim).astype(np.float32)
        return self._state

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        return self._observe(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        best = int(np.argmax(self._state[: self.action_dim]))
        reward = 1.0 if int(action) == best else -0.1
        self._t += 1
        return self._observe(), reward, False, self._t >= self.length, {"best_action": best}


def register() -> None:
    """Make `gym.make("MockCache-v0")` and `gym.make("HouseholdFinance-v0")` work (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point=MockCacheEnvironment)  # type: ignore[arg-type]
    if FINANCE_ENV_ID not in gym.registry:  # bot/training/finance.py, imported when made
        gym.register(id=FINANCE_ENV_ID, entry_point="bot.training.finance:HouseholdFinanceEnv")


def reset_env(env: Any, seed: int | None) -> Any:
    """The first state of an episode. The seed goes to an environment whose reset() takes one (Gymnasium's);
    one with the original design's `reset() -> state` seeds itself."""
    takes_seed = any(
        p.name == "seed" or p.kind is inspect.Parameter.VAR_KEYWORD
        for p in inspect.signature(env.reset).parameters.values()
    )
    result = env.reset(seed=seed) if takes_seed else env.reset()
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict):
        return result[0]  # Gymnasium's (state, info)
    return result


def step_env(env: Any, action: int) -> tuple[Any, float, bool, bool]:
    """(state, reward, terminated, truncated) from Gymnasium's 5-tuple or the design's (state, reward, done,
    info), whose `done` counts as terminated."""
    result = env.step(action)
    if len(result) == 5:
        state, reward, terminated, truncated, _ = result
        return state, float(reward), bool(terminated), bool(truncated)
    if len(result) == 4:
        state, reward, done, _ = result
        return state, float(reward), bool(done), False
    raise TypeError(
        f"{type(env).__name__}.step() returned {len(result)} values; expected Gymnasium's 5 "
        "(state, reward, terminated, truncated, info) or 4 (state, reward, done, info)"
    )
