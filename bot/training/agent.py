"""A DQN agent in torch: Q-network (optionally dueling), target network, replay buffer, epsilon schedule
(linear over steps, or the original design's decay per update), and Double DQN (`agent_type="double_dqn"`
or DoubleDQNAgent: the online network picks the next action, the target network values it).

Built either way: `DQNAgent(DQNConfig(state_dim=60, action_dim=7, seed=42))` as the original design has it, or
`DQNAgent(observations, actions, training_config, seed=...)`. Its whole state (networks, optimizer, replay
buffer, step counters, random generators) goes into a checkpoint, so a resumed run continues exactly where it
stopped rather than starting over.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any, overload

import numpy as np
import torch
from torch import nn

from bot.training.checkpoints import read_state
from bot.training.config import DQNConfig, TrainingConfig


def q_network(observations: int, actions: int, hidden: list[int], dueling: bool = False) -> nn.Module:
    layers: list[nn.Module] = []
    size = observations
    for width in hidden:
        layers += [nn.Linear(size, width), nn.ReLU()]
        size = width
    if dueling:
        return Dueling(nn.Sequential(*layers), size, actions)
    layers.append(nn.Linear(size, actions))
    return nn.Sequential(*layers)


class Dueling(nn.Module):
    """A state's value and each action's advantage, on one trunk: Q = V + A - mean(A) (the mean keeps V and A
    identifiable)."""

    def __init__(self, trunk: nn.Sequential, width: int, actions: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.value = nn.Linear(width, 1)
        self.advantage = nn.Linear(width, actions)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        features = self.trunk(states)
        advantage = self.advantage(features)
        q: torch.Tensor = self.value(features) + advantage - advantage.mean(dim=1, keepdim=True)
        return q


ARRAYS = ("states", "next_states", "actions", "rewards", "dones")


class ReplayBuffer:
    """A fixed-size ring of transitions in numpy arrays; sampled uniformly with the agent's generator."""

    def __init__(self, capacity: int, observations: int) -> None:
        self.capacity = capacity
        self.states = np.zeros((capacity, observations), dtype=np.float32)
        self.next_states = np.zeros((capacity, observations), dtype=np.float32)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.dones = np.zeros(capacity, dtype=np.float32)
        self.position = 0
        self.size = 0

    def add(self, state: Any, action: int, reward: float, next_state: Any, done: bool) -> None:
        i = self.position
        self.states[i], self.next_states[i] = state, next_state
        self.actions[i], self.rewards[i], self.dones[i] = action, reward, float(done)
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        index = rng.integers(0, self.size, size=batch)
        return (
            torch.from_numpy(self.states[index]),
            torch.from_numpy(self.actions[index]),
            torch.from_numpy(self.rewards[index]),
            torch.from_numpy(self.next_states[index]),
            torch.from_numpy(self.dones[index]),
        )

    def __len__(self) -> int:
        return self.size

    def state_dict(self) -> dict[str, Any]:
        n = self.size
        arrays = {
            name: getattr(self, name)[:n].copy() for name in ("states", "next_states", "actions", "rewards", "dones")
        }
        return {"position": self.position, "size": n, **arrays}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = state["size"]
        for name in ARRAYS:
            getattr(self, name)[:n] = state[name]
        self.position, self.size = state["position"], n


def _design(config: DQNConfig, seed: int | None = None) -> None:
    """The original design's signature: DQNAgent(DQNConfig(...), seed=None)."""


def _ours(observations: int, actions: int, config: TrainingConfig, seed: int | None = None) -> None:
    """This project's signature: DQNAgent(observations, actions, TrainingConfig(...), seed=None)."""


class DQNAgent:
    """A DQN agent. `config` is what it was built with (a DQNConfig or a TrainingConfig); `settings` is the
    same in TrainingConfig's terms, which is what the agent reads."""

    @overload
    def __init__(self, config: DQNConfig, seed: int | None = None) -> None: ...

    @overload
    def __init__(self, observations: int, actions: int, config: TrainingConfig, seed: int | None = None) -> None: ...

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        design = isinstance(args[0] if args else kwargs.get("config"), DQNConfig)
        bound = inspect.signature(_design if design else _ours).bind(*args, **kwargs)
        bound.apply_defaults()
        given = bound.arguments
        self.config: DQNConfig | TrainingConfig = given["config"]
        if isinstance(self.config, DQNConfig):
            self.settings = self.config.settings()
            observations, actions = self.config.state_dim, self.config.action_dim
            seed = given["seed"] if given["seed"] is not None else self.config.seed
        else:
            self.settings = self.config
            observations, actions, seed = int(given["observations"]), int(given["actions"]), given["seed"]
        self._build(observations, actions, seed)

    def _build(self, observations: int, actions: int, seed: int | None) -> None:
        c = self.settings
        self.observations = observations
        self.actions = actions
        self.double = c.agent_type == "double_dqn"
        self.device = torch.device("cpu")  # small networks: the CPU is the right place (bench/train.py)
        self.rng = np.random.default_rng(seed)
        self.torch_rng = torch.Generator().manual_seed(seed if seed is not None else int(self.rng.integers(2**31)))
        with torch.random.fork_rng():
            torch.manual_seed(int(torch.randint(2**31, (1,), generator=self.torch_rng)))
            self.online = q_network(observations, actions, c.hidden_sizes, c.dueling)
        self.target = q_network(observations, actions, c.hidden_sizes, c.dueling)
        self.target.load_state_dict(self.online.state_dict())
        self.target.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.online.parameters(), lr=c.learning_rate, weight_decay=c.weight_decay)
        self.buffer = ReplayBuffer(c.buffer_size, observations)
        self.steps = 0  # environment steps taken (transitions stored)
        self.updates = 0  # gradient steps taken
        self.last_loss = math.nan  # the loss of the latest update (NaN before the first)

    @property
    def online_net(self) -> nn.Module:
        """The original design's name for `online`."""
        return self.online

    @property
    def target_net(self) -> nn.Module:
        """The original design's name for `target`."""
        return self.target

    @property
    def steps_done(self) -> int:
        """The original design's count of training steps: gradient updates."""
        return self.updates

    @property
    def epsilon(self) -> float:
        c = self.settings
        if c.epsilon_decay is not None:  # the original design's schedule: multiplied by epsilon_decay per update
            return max(c.epsilon_end, c.epsilon_start * c.epsilon_decay**self.updates)
        progress = min(1.0, self.steps / c.exploration_steps)
        return c.epsilon_start + progress * (c.epsilon_end - c.epsilon_start)

    def network(self) -> dict[str, Any]:
        """The network's shape, as a checkpoint records it (to say why another agent cannot load it)."""
        c = self.settings
        return {
            "observations": self.observations,
            "actions": self.actions,
            "hidden_sizes": list(c.hidden_sizes),
            "dueling": c.dueling,
        }

    def q_values(self, state: Any) -> np.ndarray:
        with torch.no_grad():
            values: np.ndarray = self.online(torch.as_tensor(np.asarray(state, dtype=np.float32)).unsqueeze(0))[
                0
            ].numpy()
        return values

    def select_action(self, state: Any, evaluate: bool = False) -> int:
        """Greedy when evaluating; otherwise epsilon-greedy with the current epsilon."""
        if not evaluate and self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.actions))
        return int(np.argmax(self.q_values(state)))

    def store_transition(self, state: Any, action: int, reward: float, next_state: Any, done: bool) -> None:
        self.buffer.add(state, action, reward, next_state, done)
        self.steps += 1

    def ready(self) -> bool:
        c = self.settings
        return self.buffer.size >= max(c.batch_size, c.learning_starts) and self.steps % c.train_frequency == 0

    def train_step(self) -> dict[str, float] | None:
        """`gradient_steps` updates on sampled batches. Returns the last one's `loss`, `q_mean` (also as
        `mean_q`), `epsilon` and the `updates` so far; None when it learned nothing (too little stored yet, or
        between two of every `train_frequency` steps), as the original design's agent does."""
        c = self.settings
        if not self.ready():
            return None
        loss_value = q_mean = math.nan
        for _ in range(c.gradient_steps):
            states, actions, rewards, next_states, dones = self.buffer.sample(c.batch_size, self.rng)
            with torch.no_grad():
                if self.double:
                    best = self.online(next_states).argmax(dim=1, keepdim=True)
                    next_q = self.target(next_states).gather(1, best).squeeze(1)
                else:
                    next_q = self.target(next_states).max(dim=1).values
                targets = rewards + c.gamma * (1.0 - dones) * next_q
            q = self.online(states).gather(1, actions.unsqueeze(1)).squeeze(1)
            loss = nn.functional.smooth_l1_loss(q, targets)
            self.optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            if c.max_grad_norm > 0:
                nn.utils.clip_grad_norm_(self.online.parameters(), c.max_grad_norm)
            self.optimizer.step()
            self.updates += 1
            if self.updates % c.target_update_interval == 0:
                self.target.load_state_dict(self.online.state_dict())
            loss_value, q_mean = float(loss.item()), float(q.mean().item())
        self.last_loss = loss_value
        return {
            "loss": loss_value,
            "q_mean": q_mean,
            "mean_q": q_mean,
            "epsilon": self.epsilon,
            "updates": float(self.updates),
        }

    def get_metrics(self) -> dict[str, Any]:
        """The original design's figures: `steps` (gradient updates, its `steps_done`), `epsilon`, `last_loss`,
        `buffer_size` and `device`; plus `env_steps` (transitions stored) and `updates`."""
        return {
            "steps": self.updates,
            "epsilon": self.epsilon,
            "last_loss": self.last_loss,
            "buffer_size": len(self.buffer),
            "device": str(self.device),
            "env_steps": self.steps,
            "updates": self.updates,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "buffer": self.buffer.state_dict(),
            "steps": self.steps,
            "updates": self.updates,
            "last_loss": self.last_loss,
            "rng": self.rng.bit_generator.state,
            "torch_rng": self.torch_rng.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        self.steps, self.updates = state["steps"], state["updates"]
        self.last_loss = state.get("last_loss", math.nan)
        self.rng.bit_generator.state = state["rng"]
        self.torch_rng.set_state(state["torch_rng"])

    def save(self, path: str | Path) -> None:
        torch.save(self.state_dict(), path)

    def load(self, path: str | Path) -> None:
        """An agent saved with save(), or the agent of a Trainer's checkpoint. Read without running any code
        the file may hold (only tensors and arrays are accepted)."""
        state = read_state(path)
        self.load_state_dict(state["agent"] if "agent" in state else state)


class DoubleDQNAgent(DQNAgent):
    """The original design's Double DQN agent: DQNAgent with `agent_type="double_dqn"`."""

    def _build(self, observations: int, actions: int, seed: int | None) -> None:
        self.settings = self.settings.replace(agent_type="double_dqn")
        super()._build(observations, actions, seed)
