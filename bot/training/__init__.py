"""The reference trainer: a torch DQN (and Double DQN) agent, its Trainer, and the mock environment.

Only this package (and the adapters) import torch; the server never does.
"""

from bot.training.agent import DQNAgent, ReplayBuffer
from bot.training.config import TrainingConfig, TrainingConfigError
from bot.training.envs import MockCacheEnvironment, register
from bot.training.trainer import Trainer

__all__ = [
    "DQNAgent",
    "MockCacheEnvironment",
    "ReplayBuffer",
    "Trainer",
    "TrainingConfig",
    "TrainingConfigError",
    "register",
]
