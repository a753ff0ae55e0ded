"""TrainingConfig: the reference trainer's settings, the original design's fields and defaults plus the
agent's hyper-parameters; DQNConfig: the original design's agent settings (`DQNAgent(DQNConfig(...))`).

TrainingConfig is loaded from YAML, flat (config/cartpole.yaml holds the tuned CartPole settings) or in the
original design's sections (`training:` and `rl:`, see SECTIONED); every field can be overridden by name.
A bad key or value is a TrainingConfigError that names it."""

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
    dueling: bool = False  # a dueling head: Q = V + A - mean(A)
    epsilon_decay: float | None = None  # epsilon *= this per update, as in the original design (None: linear)
    weight_decay: float = 0.0  # Adam's L2 penalty

    def replace(self, **changes: Any) -> TrainingConfig:
        """A copy with `changes` applied and checked (None values are left out: an unset CLI option)."""
        return validate({**dataclasses.asdict(self), **{k: v for k, v in changes.items() if v is not None}})

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainingConfig:
        """Flat settings, or the original design's sectioned file (`training:`, `rl:`; see SECTIONED)."""
        raw = read_mapping(path)
        if any(isinstance(raw.get(section), dict) for section in SECTIONS):
            raw = flatten_sections(raw, source=str(path))
        return validate(raw, source=str(path))


def read_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file of settings; every fault is one line (a job's error shows its last line) naming where."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as exc:
        raise TrainingConfigError(f"config {str(path)!r} cannot be read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise TrainingConfigError(f"config {str(path)!r} is not valid YAML: {_one_line(exc)}") from exc
    if not isinstance(raw, dict):
        raise TrainingConfigError(f"config {str(path)!r} must be a mapping of settings, got {type(raw).__name__}")
    return raw


def _one_line(exc: yaml.YAMLError) -> str:
    """YAML's fault without its quoted lines and caret: what is wrong, at which line and column (from 1)."""
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return " ".join(str(exc).split())
    mark = exc.problem_mark
    what = " ".join(part for part in (exc.context, exc.problem) if part)
    return f"{what} at line {mark.line + 1}, column {mark.column + 1}"


_ADAPTER = TypeAdapter(TrainingConfig)
FIELDS = {f.name for f in dataclasses.fields(TrainingConfig)}
# The settings that shape and drive the agent (the rest drive the Trainer): a checkpoint keeps the agent's own.
AGENT_FIELDS = (
    "agent_type",
    "learning_rate",
    "gamma",
    "batch_size",
    "buffer_size",
    "learning_starts",
    "train_frequency",
    "gradient_steps",
    "target_update_interval",
    "epsilon_start",
    "epsilon_end",
    "exploration_steps",
    "hidden_sizes",
    "max_grad_norm",
    "dueling",
    "epsilon_decay",
    "weight_decay",
)

# The original design's sectioned file (configs/default.yaml): `training:` holds TrainingConfig's fields by
# their own names; `rl:` holds the agent's, by the design's names (below) or ours. Any other section
# (`simulator:`, `cache:`, `markov:`, `paths:`, ...) configures another part of that system and is skipped.
SECTIONS = ("training", "rl")
SECTIONED = {
    "algorithm": "agent_type",
    "discount": "gamma",
    "replay_buffer_size": "buffer_size",
    "target_update_freq": "target_update_interval",
    "network.hidden_sizes": "hidden_sizes",
    "exploration.initial_epsilon": "epsilon_start",
    "exploration.final_epsilon": "epsilon_end",
    "exploration.decay_steps": "exploration_steps",  # linear decay over this many steps, as ours
}


def flatten_sections(raw: dict[str, Any], source: str) -> dict[str, Any]:
    """The design's sections as flat settings; a key no section knows, or one given twice, is named."""
    flat: dict[str, Any] = {}

    def put(key: str, name: str, value: Any) -> None:
        if name not in FIELDS:
            raise TrainingConfigError(f"{source}: unknown setting {key!r}; expected one of {', '.join(sorted(FIELDS))}")
        if name in flat:
            raise TrainingConfigError(f"{source}: {name} is given twice (as {key!r} too)")
        flat[name] = value

    for key, value in raw.items():
        if key not in SECTIONS:
            if not isinstance(value, dict):  # a flat setting beside the sections (`seed: 42`, `env_id: ...`)
                put(key, key, value)
            continue
        if value is None:  # an empty section
            continue
        if not isinstance(value, dict):
            raise TrainingConfigError(f"{source}: section {key!r} must be a mapping, got {type(value).__name__}")
        for name, item in _dotted(value):
            put(f"{key}.{name}", SECTIONED.get(name, name) if key == "rl" else name, item)
    return flat


def _dotted(section: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """`{network: {hidden_sizes: [..]}}` as `[("network.hidden_sizes", [..])]`."""
    items: list[tuple[str, Any]] = []
    for key, value in section.items():
        if isinstance(value, dict):
            items += _dotted(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


@dataclass
class DQNConfig:
    """The original design's agent settings: `DQNAgent(DQNConfig(state_dim=60, action_dim=7, seed=42))`.

    Its names and defaults are the design's (a dueling network of [128, 64], epsilon multiplied by 0.995 at
    each update, the target network copied every 1,000 updates); the last four fields are this agent's own.
    `prioritized_replay` and a CUDA `device` are not supported: asking for them is an error, not ignored.
    """

    state_dim: int
    action_dim: int
    hidden_dims: list[int] = field(default_factory=lambda: [128, 64])
    dueling: bool = True
    learning_rate: float = 0.001
    weight_decay: float = 0.0
    gamma: float = 0.99
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_decay: float | None = 0.995  # None: linear over exploration_steps environment steps
    buffer_size: int = 100_000
    batch_size: int = 64
    prioritized_replay: bool = False
    target_update_freq: int = 1000
    max_grad_norm: float = 10.0  # 0 or less: no clipping
    device: str = "auto"  # this agent runs on the CPU: "auto" and "cpu" are accepted
    seed: int | None = None
    agent_type: Literal["dqn", "double_dqn"] = "dqn"
    learning_starts: int = 0  # updates begin once the buffer holds max(batch_size, learning_starts)
    train_frequency: int = 1
    gradient_steps: int = 1
    exploration_steps: int = 10_000

    def settings(self) -> TrainingConfig:
        """The agent's settings in TrainingConfig's terms, checked; errors use the design's names."""
        if self.prioritized_replay:
            raise TrainingConfigError("DQNConfig: prioritized_replay is not supported by this agent; set it False")
        if self.device not in ("auto", "cpu"):
            raise TrainingConfigError(
                f"DQNConfig: device must be 'auto' or 'cpu' (the agent runs on the CPU), got {self.device!r}"
            )
        for name in ("state_dim", "action_dim"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                raise TrainingConfigError(f"DQNConfig: {name} must be a positive integer, got {getattr(self, name)!r}")
        values = {name: getattr(self, name) for name in AGENT_FIELDS if hasattr(self, name)}
        values.update(hidden_sizes=self.hidden_dims, target_update_interval=self.target_update_freq, seed=self.seed)
        return validate(
            values,
            source="DQNConfig",
            aliases={"hidden_sizes": "hidden_dims", "target_update_interval": "target_update_freq"},
        )


def validate(values: dict[str, Any], source: str = "settings", aliases: dict[str, str] | None = None) -> TrainingConfig:
    """Check names and values; the first problem is raised, naming the key, the value and what is valid.
    `aliases` names fields as the caller knows them (DQNConfig's `hidden_dims` for `hidden_sizes`)."""
    unknown = sorted(set(values) - FIELDS)
    if unknown:
        raise TrainingConfigError(
            f"{source}: unknown setting {unknown[0]!r}; expected one of {', '.join(sorted(FIELDS))}"
        )
    try:
        config = _ADAPTER.validate_python(values)
        _check_ranges(config, source)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = ".".join(str(part) for part in error["loc"])
        name = (aliases or {}).get(name, name)
        raise TrainingConfigError(f"{source}: {name}: {error['msg']}, got {error.get('input')!r}") from None
    except TrainingConfigError as exc:
        message = str(exc)
        for ours, theirs in (aliases or {}).items():
            message = message.replace(f": {ours} ", f": {theirs} ")
        raise TrainingConfigError(message) from None
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
    if config.epsilon_decay is not None and not 0.0 < config.epsilon_decay <= 1.0:
        raise TrainingConfigError(
            f"{source}: epsilon_decay must be within 0..1 (above 0), got {config.epsilon_decay!r}"
        )
    if config.weight_decay < 0:
        raise TrainingConfigError(f"{source}: weight_decay must be >= 0, got {config.weight_decay!r}")
