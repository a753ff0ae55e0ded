"""The reference trainer: a torch DQN (and Double DQN) agent, its Trainer, and the mock environment.

Only this package (and the adapters) import torch; the server never does.
"""

from bot.training.agent import DoubleDQNAgent, DQNAgent, ReplayBuffer
from bot.training.checkpoints import CheckpointError
from bot.training.config import DQNConfig, TrainingConfig, TrainingConfigError
from bot.training.envs import MockCacheEnvironment, register
from bot.training.trainer import Trainer, TrainingInterrupted

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
