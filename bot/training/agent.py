"""A DQN agent in torch: Q-network, target network, replay buffer, linear epsilon schedule, and Double DQN
(`agent_type="double_dqn"`: the online network picks the next action, the target network values it).

Its whole state (networks, optimizer, replay buffer, step counters, random generators) goes into a
checkpoint, so a resumed run continues exactly where it stopped rather than starting over.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bot.training.config import TrainingConfig


def q_network(observations: int, actions: int, hidden: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    size = observations
    for width in hidden:
        layers += [nn.Linear(size, width), nn.ReLU()]
        size = width
    layers.append(nn.Linear(size, actions))
    return nn.Sequential(*layers)


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


class DQNAgent:
    def __init__(self, observations: int, actions: int, config: TrainingConfig, seed: int | None = None) -> None:
        self.config = config
        self.actions = actions
        self.double = config.agent_type == "double_dqn"
        self.rng = np.random.default_rng(seed)
        self.torch_rng = torch.Generator().manual_seed(seed if seed is not None else int(self.rng.integers(2**31)))
        with torch.random.fork_rng():
            torch.manual_seed(int(torch.randint(2**31, (1,), generator=self.torch_rng)))
            self.online = q_network(observations, actions, config.hidden_sizes)
        self.target = q_network(observations, actions, config.hidden_sizes)
        self.target.load_state_dict(self.online.state_dict())
        self.target.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.online.parameters(), lr=config.learning_rate)
        self.buffer = ReplayBuffer(config.buffer_size, observations)
        self.steps = 0  # environment steps taken (transitions stored)
        self.updates = 0  # gradient steps taken

    @property
    def epsilon(self) -> float:
        c = self.config
        progress = min(1.0, self.steps / c.exploration_steps)
        return c.epsilon_start + progress * (c.epsilon_end - c.epsilon_start)

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
        c = self.config
        return self.buffer.size >= max(c.batch_size, c.learning_starts) and self.steps % c.train_frequency == 0

    def train_step(self) -> dict[str, float]:
        """`gradient_steps` updates on sampled batches (when enough is stored); returns loss, mean Q, epsilon."""
        c = self.config
        stats = {"loss": float("nan"), "mean_q": float("nan"), "epsilon": self.epsilon, "updates": float(self.updates)}
        if not self.ready():
            return stats
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
            nn.utils.clip_grad_norm_(self.online.parameters(), c.max_grad_norm)
            self.optimizer.step()
            self.updates += 1
            if self.updates % c.target_update_interval == 0:
                self.target.load_state_dict(self.online.state_dict())
            stats["loss"], stats["mean_q"] = float(loss.item()), float(q.mean().item())
        stats["updates"] = float(self.updates)
        return stats

    def state_dict(self) -> dict[str, Any]:
        return {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "buffer": self.buffer.state_dict(),
            "steps": self.steps,
            "updates": self.updates,
            "rng": self.rng.bit_generator.state,
            "torch_rng": self.torch_rng.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.online.load_state_dict(state["online"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        self.steps, self.updates = state["steps"], state["updates"]
        self.rng.bit_generator.state = state["rng"]
        self.torch_rng.set_state(state["torch_rng"])

    def save(self, path: str | Path) -> None:
        torch.save(self.state_dict(), path)

    def load(self, path: str | Path) -> None:
        self.load_state_dict(torch.load(path, weights_only=False))
