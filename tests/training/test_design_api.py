"""The reference trainer as the original "DQN orchestration" design writes it (issue #26): its snippets run as
they are written there (DQNAgent(DQNConfig(...)), Trainer(..., output_dir=...), trainer.train(), the
4-tuple environments, the sectioned YAML), and its promises on console output, Weights & Biases, patience,
checkpoint names and signals hold."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bot.training import (
    CheckpointError,
    DoubleDQNAgent,
    DQNAgent,
    DQNConfig,
    MockCacheEnvironment,
    Trainer,
    TrainingConfig,
    TrainingConfigError,
)


class DesignCacheEnvironment:
    """An environment in the original design's shape: built with (state_dim, action_dim, seed), `reset() ->
    state`, `step(action) -> (state, reward, done, info)`, done after max_steps. Its reward favours action 1."""

    def __init__(self, state_dim: int = 60, action_dim: int = 7, seed: int | None = None) -> None:
        self.state_dim, self.action_dim = state_dim, action_dim
        self.rng = np.random.default_rng(seed)
        self.step_count, self.max_steps = 0, 10

    def reset(self) -> np.ndarray:
        self.step_count = 0
        return self.rng.standard_normal(self.state_dim).astype(np.float32)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
        self.step_count += 1
        reward = 1.0 if action == 1 else 0.0
        state = self.rng.standard_normal(self.state_dim).astype(np.float32)
        return state, reward, self.step_count >= self.max_steps, {"step": self.step_count}


class Constant(DesignCacheEnvironment):
    """Every action earns 0: evaluations never improve on the first one."""

    def step(self, action: int) -> tuple[np.ndarray, float, bool, dict[str, Any]]:
        state, _, done, info = super().step(action)
        return state, 0.0, done, info


def quiet(**changes: Any) -> TrainingConfig:
    """A short run: no console, no intermediate plots."""
    return TrainingConfig(**{"verbose": False, "plot_frequency": 10_000, "eval_episodes": 1, **changes})


# -- (9) the design's Python API --------------------------------------------------------------------------


@pytest.mark.slow  # the design's default network and batch, with its first plot
def test_the_design_snippet_trains_on_a_4_tuple_environment(tmp_path: Path) -> None:
    """`agent = DQNAgent(DQNConfig(state_dim=60, action_dim=7, seed=42))`, `Trainer(agent, env, config,
    output_dir=...)`, `stats = trainer.train()`, `agent.get_metrics()`: as written in the design, on an
    environment with its `reset() -> state` and 4-tuple `step()`."""
    env = DesignCacheEnvironment(state_dim=60, action_dim=7, seed=42)
    agent = DQNAgent(DQNConfig(state_dim=60, action_dim=7, seed=42))
    config = TrainingConfig(max_episodes=8, eval_frequency=4, eval_episodes=2, verbose=False)
    trainer = Trainer(agent, env, config, output_dir=str(tmp_path / "results" / "run1"))
    stats = trainer.train()

    assert stats["total_episodes"] == 8 and isinstance(stats["best_eval_reward"], float)
    assert stats["total_time"] > 0 and stats["final_eval_reward"] is not None
    assert f"{stats['best_eval_reward']:.2f}" and stats["episodes"] == 8  # the design prints it so; ours too
    metrics = agent.get_metrics()
    assert metrics["buffer_size"] == 80 and metrics["device"] == "cpu"
    assert metrics["steps"] == 80 - 64 + 1  # an update per step once a batch (64) is stored, as designed
    assert metrics["epsilon"] == pytest.approx(0.995 ** metrics["steps"])  # decayed per update, as designed
    assert math.isfinite(metrics["last_loss"])
    assert (tmp_path / "results" / "run1" / "checkpoints" / "best.pt").is_file()
    assert (tmp_path / "results" / "run1" / "checkpoints" / "latest.pt").is_file()


def test_train_step_returns_metrics_once_it_learns() -> None:
    """The design's loop: `metrics = agent.train_step()` is None until a batch is stored, then the update's
    `loss`, `q_mean` and `epsilon`."""
    config = DQNConfig(state_dim=60, action_dim=7, hidden_dims=[32], batch_size=8, seed=42)
    agent = DQNAgent(config, seed=42)
    env = DesignCacheEnvironment(seed=1)
    state, answers = env.reset(), []
    for _ in range(10):
        action = agent.select_action(state)
        next_state, reward, done, _ = env.step(action)
        agent.store_transition(state, action, reward, next_state, done)
        answers.append(agent.train_step())
        state = next_state
    assert answers[:7] == [None] * 7
    learned = [a for a in answers[7:] if a is not None]
    assert len(learned) == 3 and all(math.isfinite(a["loss"]) and math.isfinite(a["q_mean"]) for a in learned)
    assert learned[-1]["epsilon"] == pytest.approx(0.995**3)
    assert agent.get_metrics()["steps"] == 3 and agent.get_metrics()["buffer_size"] == 10


@pytest.mark.slow  # two runs of 150 steps, an update at most of them
def test_the_design_mock_environment_and_double_dqn(tmp_path: Path) -> None:
    """`MockCacheEnvironment(state_dim=60, action_dim=7, seed=42)` as the design builds it trains a
    DoubleDQNAgent; its seed makes two runs equal."""
    rewards = []
    for run in ("a", "b"):
        env = MockCacheEnvironment(state_dim=60, action_dim=7, seed=42)
        agent = DoubleDQNAgent(DQNConfig(state_dim=60, action_dim=7, hidden_dims=[16], batch_size=16), seed=42)
        trainer = Trainer(agent, env, quiet(max_episodes=3, eval_frequency=3), output_dir=tmp_path / run)
        trainer.train()
        rewards.append(trainer.history["reward"])
        assert agent.double and env.max_steps == 50 and env.state_dim == 60
    assert rewards[0] == rewards[1]


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"prioritized_replay": True}, "prioritized_replay"),
        ({"device": "cuda"}, "device"),
        ({"hidden_dims": []}, "hidden_dims"),
        ({"target_update_freq": 0}, "target_update_freq"),
        ({"epsilon_decay": 1.5}, "epsilon_decay"),
    ],
)
def test_a_bad_agent_setting_is_named(changes: dict[str, Any], needle: str) -> None:
    """What the agent cannot do, or a bad value, is a TrainingConfigError naming the design's field."""
    with pytest.raises(TrainingConfigError, match=needle):
        DQNAgent(DQNConfig(state_dim=60, action_dim=7, **changes))


def test_an_environment_that_does_not_fit_the_agent_is_named(tmp_path: Path) -> None:
    agent = DQNAgent(DQNConfig(state_dim=60, action_dim=7))
    with pytest.raises(TrainingConfigError, match="takes 60 observations and 7 actions; the environment has 30 and 7"):
        Trainer(agent, MockCacheEnvironment(state_dim=30, action_dim=7), quiet(), output_dir=tmp_path)


DESIGN_YAML = """\
# Default configuration for markov-rl-api-cache
paths:
  data_dir: "data"
  models_dir: "models"
  logs_dir: "logs"
markov:
  order: 1
  context_aware: true
  smoothing: 1e-6
  min_count: 5
rl:
  algorithm: "double_dqn"
  network:
    hidden_sizes: [32, 16]
  learning_rate: 0.0001
  discount: 0.98
  exploration:
    initial_epsilon: 1.0
    final_epsilon: 0.01
    decay_steps: 100000
  replay_buffer_size: 50000
  batch_size: 32
  target_update_freq: 1000
cache:
  redis:
    host: "localhost"
    port: 6379
training:
  max_episodes: 5000
  max_steps_per_episode: 1000
  eval_frequency: 100
  checkpoint_frequency: 500
simulator:
  num_services: 5
"""


def test_the_design_sectioned_yaml_loads(tmp_path: Path) -> None:
    """The design's configs/default.yaml: `training:` and `rl:` (by the design's names) are read, the other
    sections belong to other parts of that system and are skipped."""
    path = tmp_path / "default.yaml"
    path.write_text(DESIGN_YAML)
    config = TrainingConfig.from_yaml(path)
    assert (config.max_episodes, config.max_steps_per_episode, config.eval_frequency) == (5000, 1000, 100)
    assert config.checkpoint_frequency == 500 and config.agent_type == "double_dqn"
    assert config.hidden_sizes == [32, 16] and config.learning_rate == 0.0001 and config.gamma == 0.98
    assert (config.epsilon_start, config.epsilon_end, config.exploration_steps) == (1.0, 0.01, 100000)
    assert (config.buffer_size, config.batch_size, config.target_update_interval) == (50000, 32, 1000)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("rl:\n  discount: 0.9\n  gamma: 0.8\n", "gamma is given twice"),
        ("rl:\n  network:\n    hiden_sizes: [3]\n", "rl.network.hiden_sizes"),
        ("training:\n  max_episodes: 0\n", "max_episodes must be > 0"),
        ("training: [1]\nrl: {}\n", "section 'training' must be a mapping"),
    ],
)
def test_a_bad_sectioned_yaml_is_named(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(TrainingConfigError, match=needle):
        TrainingConfig.from_yaml(path)


# -- (10) console and Weights & Biases from Python ------------------------------------------------------------


def test_verbose_prints_progress_to_the_console(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """With `verbose` (the default) the Python API prints progress and evaluations; without, nothing."""
    env = DesignCacheEnvironment(seed=1)
    agent = DQNAgent(DQNConfig(state_dim=60, action_dim=7, hidden_dims=[16], seed=42))
    config = TrainingConfig(max_episodes=4, eval_frequency=4, eval_episodes=1, log_frequency=2, plot_frequency=99)
    Trainer(agent, env, config, output_dir=tmp_path / "loud").train()
    printed = capfd.readouterr()
    assert "episode 2/4" in printed.err and "episode 4/4" in printed.err
    assert "evaluation at episode 4" in printed.err

    config = TrainingConfig(max_episodes=2, eval_frequency=2, eval_episodes=1, log_frequency=1, verbose=False)
    Trainer(agent, env, config, output_dir=tmp_path / "quiet").train()
    assert capfd.readouterr() == ("", "")


class FakeWandb(types.ModuleType):
    """A stand-in for the `wandb` module: W&B is an outside service this machine cannot reach, so the test
    records what the Trainer hands to it (tests/training/test_cli.py runs the real package offline)."""

    def __init__(self) -> None:
        super().__init__("wandb")
        self.calls: list[tuple[str, Any]] = []

    def init(self, **kwargs: Any) -> Any:
        self.calls.append(("init", kwargs))
        return types.SimpleNamespace(
            log=lambda record: self.calls.append(("log", record)), finish=lambda: self.calls.append(("finish", None))
        )


def test_use_wandb_logs_every_episode_and_evaluation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`use_wandb=True` from Python: one W&B run per train(), a record per episode (evaluations merged in),
    offline unless WANDB_MODE says otherwise, its files in the run's folder."""
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    agent = DQNAgent(DQNConfig(state_dim=60, action_dim=7, hidden_dims=[16], seed=42))
    config = quiet(max_episodes=4, eval_frequency=2, use_wandb=True)
    Trainer(agent, DesignCacheEnvironment(seed=1), config, output_dir=tmp_path).train()

    (kind, init), *logs, (last, _) = fake.calls
    assert kind == "init" and last == "finish"
    assert init["mode"] == "offline" and init["dir"] == str(tmp_path) and init["config"]["hidden_sizes"] == [16]
    records = [record for _, record in logs]
    assert [r["episode"] for r in records] == [1, 2, 3, 4]
    assert [("eval/mean_reward" in r) for r in records] == [False, True, False, True]


def test_use_wandb_without_the_package_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    agent = DQNAgent(DQNConfig(state_dim=60, action_dim=7, hidden_dims=[16]))
    with pytest.raises(TrainingConfigError, match=r"use_wandb needs the `wandb` package.*\[wandb\]"):
        Trainer(agent, DesignCacheEnvironment(), quiet(use_wandb=True), output_dir=tmp_path / "never")
    assert not (tmp_path / "never").exists()


# -- (11) patience, checkpoint names, signals ------------------------------------------------------------------


def test_patience_counts_episodes(tmp_path: Path) -> None:
    """patience=4 with an evaluation every 2 episodes: the run stops 4 episodes after its best evaluation (the
    first, at episode 2, as nothing ever improves on it), at episode 6, not after 4 more evaluations."""
    agent = DQNAgent(DQNConfig(state_dim=60, action_dim=7, hidden_dims=[16], seed=1))
    config = quiet(max_episodes=40, eval_frequency=2, patience=4, min_episodes=0, early_stopping=True)
    stats = Trainer(agent, Constant(seed=1), config, output_dir=tmp_path).train()
    assert stats["outcome"] == "stopped early" and stats["total_episodes"] == 6


def test_latest_is_written_at_every_checkpoint_even_with_save_best_only(tmp_path: Path) -> None:
    """save_best_only keeps checkpoint_ep{N}.pt away, not latest.pt: it follows every checkpoint_frequency."""
    agent = DQNAgent(DQNConfig(state_dim=60, action_dim=7, hidden_dims=[16], seed=1))
    config = quiet(max_episodes=5, eval_frequency=100, checkpoint_frequency=2, save_best_only=True)
    trainer = Trainer(agent, DesignCacheEnvironment(seed=1), config, output_dir=tmp_path)
    latest = tmp_path / "checkpoints" / "latest.json"
    seen: list[int | None] = []
    trainer.listeners.append(
        lambda _: seen.append(json.loads(latest.read_text())["episode"] if latest.exists() else None)
    )
    trainer.train()
    assert seen == [None, None, 2, 2, 4]
    assert not list((tmp_path / "checkpoints").glob("checkpoint_ep*"))


def test_a_ctrl_c_as_training_begins_still_leaves_an_emergency_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C right after the log opened (where `bot train`'s Ctrl-C test sends it, on a slow machine) is
    a stop like any other: train() raises KeyboardInterrupt with emergency.pt saved, which the resume line
    names. The Ctrl-C is raised from the first status report, the moment the log exists."""
    agent = DQNAgent(DQNConfig(state_dim=60, action_dim=7, hidden_dims=[16], seed=1))
    trainer = Trainer(agent, Constant(seed=1), quiet(max_episodes=5), output_dir=tmp_path)
    reports: list[str] = []

    def status(state: str, message: str) -> None:
        reports.append(state)
        if len(reports) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "_status", status)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert (tmp_path / "logs" / "training.log").exists()
    assert (tmp_path / "checkpoints" / "emergency.pt").exists() and reports == ["running", "stopped"]


SIGTERM_SCRIPT = """\
import sys
from bot.training import DQNAgent, DQNConfig, MockCacheEnvironment, Trainer, TrainingConfig

agent = DQNAgent(DQNConfig(state_dim=60, action_dim=7, hidden_dims=[16], seed=42))
config = TrainingConfig(max_episodes=1_000_000, verbose=False, plot_frequency=1_000_000)
trainer = Trainer(agent, MockCacheEnvironment(seed=42), config, output_dir=sys.argv[1])
try:
    trainer.train()
except KeyboardInterrupt as exc:
    print("interrupted", type(exc).__name__, getattr(exc, "signum", None), trainer.episode, flush=True)
    sys.exit(3)
"""


@pytest.mark.slow  # a Python process of its own, with torch
def test_sigterm_saves_an_emergency_checkpoint_like_ctrl_c(tmp_path: Path) -> None:
    """SIGTERM (what a service manager or `docker stop` sends) during Trainer.train(): emergency.pt and
    latest.pt are saved, and train() raises a KeyboardInterrupt that says it was SIGTERM."""
    script = tmp_path / "train.py"
    script.write_text(SIGTERM_SCRIPT)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, str(script), str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "logs" / "training.log").exists():  # training has begun
            assert process.poll() is None and time.monotonic() < deadline, process.stderr and process.stderr.read()
            time.sleep(0.1)
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 3, stderr
    assert stdout.startswith(f"interrupted TrainingInterrupted {int(signal.SIGTERM)} ")
    episode = json.loads((out / "checkpoints" / "emergency.json").read_text())["episode"]
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["episode"] == episode
    assert torch.load(out / "checkpoints" / "emergency.pt", weights_only=False)["episode"] == episode


# -- (12) checkpoints that cannot be used ------------------------------------------------------------------------


class Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch pwned",))


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"not a checkpoint at all", "is corrupt or truncated"),
        ({"weights": torch.zeros(3)}, "is not a checkpoint of this trainer (foreign; no 'agent')"),
        ({"agent": Evil()}, "refused unread"),
    ],
)
def test_a_corrupt_or_foreign_checkpoint_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: Any, needle: str
) -> None:
    """load_checkpoint() of garbage, of someone else's file, or of a pickle that would run code: one line
    naming the file, nothing run, the trainer unchanged."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "bad.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    agent = DQNAgent(DQNConfig(state_dim=60, action_dim=7, hidden_dims=[16]))
    trainer = Trainer(agent, DesignCacheEnvironment(), quiet(), output_dir=tmp_path / "out")
    with pytest.raises(CheckpointError, match="bad.pt") as raised:
        trainer.load_checkpoint(path)
    assert needle in str(raised.value) and "\n" not in str(raised.value)
    assert trainer.episode == 0 and not (tmp_path / "pwned").exists()


def test_a_checkpoint_of_another_network_is_named(tmp_path: Path) -> None:
    """A checkpoint made for another network says which, in one line; a truncated one says so; the matching
    agent loads it."""
    agent = DQNAgent(DQNConfig(state_dim=60, action_dim=7, hidden_dims=[16], dueling=False))
    trainer = Trainer(agent, DesignCacheEnvironment(), quiet(max_episodes=1, eval_frequency=1), output_dir=tmp_path)
    trainer.train()
    other = Trainer(
        DQNAgent(DQNConfig(state_dim=60, action_dim=7, hidden_dims=[32])), DesignCacheEnvironment(), quiet(), tmp_path
    )
    with pytest.raises(CheckpointError, match=r"60 inputs, hidden \[16\], 7 actions\).*hidden \[32\], 7 actions, duel"):
        other.load_checkpoint(tmp_path / "checkpoints" / "latest.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((tmp_path / "checkpoints" / "latest.pt").read_bytes()[:5000])
    with pytest.raises(CheckpointError, match=r"truncated.pt' is corrupt or truncated: \S"):
        other.load_checkpoint(truncated)
    # the matching agent loads it and says where it resumes, as the design's load_checkpoint() does
    assert (
        Trainer(DQNAgent(agent.config), DesignCacheEnvironment(), quiet(), tmp_path).load_checkpoint(
            tmp_path / "checkpoints" / "latest.pt"
        )
        == 1
    )
