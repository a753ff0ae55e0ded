"""The reference trainer: a torch DQN (and Double DQN) agent, its Trainer, and the mock environment.

Only this package (and the adapters) import torch; the server never does. Its names load on first use, so
`python -m bot.training.job` starts without torch and imports it with stop signals held (bot/training/job.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.training.agent import DoubleDQNAgent, DQNAgent, ReplayBuffer
    from bot.training.checkpoints import CheckpointError
    from bot.training.config import DQNConfig, TrainingConfig, TrainingConfigError
    from bot.training.envs import MockCacheEnvironment, register
    from bot.training.trainer import Trainer, TrainingInterrupted

_HOMES = {
    "CheckpointError": "checkpoints",
    "DQNAgent": "agent",
    "DQNConfig": "config",
    "DoubleDQNAgent": "agent",
    "MockCacheEnvironment": "envs",
    "ReplayBuffer": "agent",
    "Trainer": "trainer",
    "TrainingConfig": "config",
    "TrainingConfigError": "config",
    "TrainingInterrupted": "trainer",
    "register": "envs",
}

__all__ = [
    "CheckpointError",
    "DQNAgent",
    "DQNConfig",
    "DoubleDQNAgent",
    "MockCacheEnvironment",
    "ReplayBuffer",
    "Trainer",
    "TrainingConfig",
    "TrainingConfigError",
    "TrainingInterrupted",
    "register",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"bot.training.{_HOMES[name]}"), name)
