"""TrainingConfig: the reference trainer's settings, the original design's fields and defaults plus the
agent's hyper-parameters. Loaded from YAML (config/cartpole.yaml holds the tuned CartPole settings);
every field can be overridden by name. A bad key or value is a TrainingConfigError that names it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml  # type: ignore[import-untyped]
from pydantic import TypeAdapter, ValidationError


class TrainingConfigError(ValueError):
    """A training setting is unknown or has a bad value; the message names it."""


@dataclass
class TrainingConfig:
    # The original design's fields and defaults.
    max_episodes: int = 50000
    max_steps_per_episode: int = 1000
    eval_frequency: int = 100
    eval_episodes: int = 10
    checkpoint_frequency: int = 500
    checkpoint_dir: str = "checkpoints"
    early_stopping: bool = True
    patience: int = 50
    min_episodes: int = 1000
    seed: int | None = None
    log_frequency: int = 10
    use_wandb: bool = False
    save_best_only: bool = True
    verbose: bool = True
    plot_frequency: int = 1000
    # The environment and the agent.
    env_id: str = "CartPole-v1"
    agent_type: Literal["dqn", "double_dqn"] = "dqn"
    learning_rate: float = 1e-3
    gamma: float = 0.99
    batch_size: int = 64
    buffer_size: int = 100_000
    learning_starts: int = 1000
    train_frequency: int = 1
    gradient_steps: int = 1
    target_update_interval: int = 500
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    exploration_steps: int = 10_000  # steps over which epsilon falls linearly from start to end
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    max_grad_norm: float = 10.0
    target_reward: float | None = None  # stop once the greedy evaluation mean reaches it (None: never)
    max_steps: int | None = None  # stop after this many environment steps (None: no limit)

    def replace(self, **changes: Any) -> TrainingConfig:
        """A copy with `changes` applied and checked (None values are left out: an unset CLI option)."""
        return validate({**dataclasses.asdict(self), **{k: v for k, v in changes.items() if v is not None}})

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainingConfig:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise TrainingConfigError(f"config {str(path)!r} cannot be read: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise TrainingConfigError(f"config {str(path)!r} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise TrainingConfigError(f"config {str(path)!r} must be a mapping of settings, got {type(raw).__name__}")
        return validate(raw, source=str(path))


_ADAPTER = TypeAdapter(TrainingConfig)
FIELDS = {f.name for f in dataclasses.fields(TrainingConfig)}


def validate(values: dict[str, Any], source: str = "settings") -> TrainingConfig:
    """Check names and values; the first problem is raised, naming the key, the value and what is valid."""
    unknown = sorted(set(values) - FIELDS)
    if unknown:
        raise TrainingConfigError(
            f"{source}: unknown setting {unknown[0]!r}; expected one of {', '.join(sorted(FIELDS))}"
        )
    try:
        config = _ADAPTER.validate_python(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = ".".join(str(part) for part in error["loc"])
        raise TrainingConfigError(f"{source}: {name}: {error['msg']}, got {error.get('input')!r}") from None
    _check_ranges(config, source)
    return config


def _check_ranges(config: TrainingConfig, source: str) -> None:
    positive = (
        "max_episodes",
        "max_steps_per_episode",
        "eval_frequency",
        "eval_episodes",
        "checkpoint_frequency",
        "patience",
        "log_frequency",
        "plot_frequency",
        "batch_size",
        "buffer_size",
        "train_frequency",
        "gradient_steps",
        "target_update_interval",
        "exploration_steps",
    )
    for name in positive:
        if getattr(config, name) <= 0:
            raise TrainingConfigError(f"{source}: {name} must be > 0, got {getattr(config, name)!r}")
    for name in ("epsilon_start", "epsilon_end", "gamma"):
        if not 0.0 <= getattr(config, name) <= 1.0:
            raise TrainingConfigError(f"{source}: {name} must be within 0..1, got {getattr(config, name)!r}")
    if config.learning_rate <= 0:
        raise TrainingConfigError(f"{source}: learning_rate must be > 0, got {config.learning_rate!r}")
    if config.min_episodes < 0 or config.learning_starts < 0:
        raise TrainingConfigError(f"{source}: min_episodes and learning_starts must be >= 0")
    if not config.hidden_sizes or any(size <= 0 for size in config.hidden_sizes):
        raise TrainingConfigError(f"{source}: hidden_sizes must be positive layer sizes, got {config.hidden_sizes!r}")
