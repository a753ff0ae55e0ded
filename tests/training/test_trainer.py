"""The reference trainer on the mock environment: files, exact resume, early stopping, emergency checkpoints,
bad settings, and pushing a run to a real server."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import torch

from bot.sdk import MetricsClient
from bot.training import DQNAgent, Trainer, TrainingConfig, TrainingConfigError, register
from bot.training.hierarchy import HierarchyConfig
from tests.conftest import LiveServer
from tests.sdk.test_client import history

register()


def config(**changes: Any) -> TrainingConfig:
    base = TrainingConfig(
        env_id="MockCache-v0",
        max_episodes=20,
        eval_frequency=10,
        eval_episodes=2,
        log_frequency=5,
        seed=3,
        learning_starts=100,
        min_episodes=0,
        target_update_interval=50,
        exploration_steps=500,
        batch_size=32,
        hidden_sizes=[32],
    )
    return base.replace(**changes)


def trainer(cfg: TrainingConfig, output: Path, run: Any = None) -> Trainer:
    env = gym.make(cfg.env_id)
    agent = DQNAgent(env.observation_space.shape[0], int(env.action_space.n), cfg, seed=cfg.seed)
    return Trainer(agent, env, cfg, output, run)


def test_training_writes_checkpoints_metrics_log_and_curves(tmp_path: Path) -> None:
    """A short run leaves best and latest checkpoints with metadata, metrics.json, the log and the plot."""
    stats = trainer(config(), tmp_path).train()
    assert stats["episodes"] == 20 and stats["steps"] == 20 * 50 and stats["best_eval"] is not None
    for name in ("best", "latest"):
        assert (tmp_path / "checkpoints" / f"{name}.pt").exists()
        metadata = json.loads((tmp_path / "checkpoints" / f"{name}.json").read_text())
        assert metadata["config"]["env_id"] == "MockCache-v0" and metadata["episode"] > 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(metrics["history"]["reward"]) == 20 and len(metrics["history"]["eval"]) == 2
    assert "evaluation at episode 10" in (tmp_path / "logs" / "training.log").read_text()
    assert (tmp_path / "training_curves.png").stat().st_size > 1000


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path: Path) -> None:
    """Stopped after 10 episodes and resumed from its checkpoint, a seeded run ends with the same rewards
    and the same weights, to the bit, as the run that never stopped."""
    whole = trainer(config(), tmp_path / "whole")
    whole.train()
    first = trainer(config(max_episodes=10), tmp_path / "split")
    first.train()
    second = trainer(config(), tmp_path / "split")
    second.load_checkpoint(tmp_path / "split" / "checkpoints" / "latest.pt")
    second.train()
    assert second.history["reward"] == whole.history["reward"]
    for name, tensor in whole.agent.online.state_dict().items():
        assert torch.equal(tensor, second.agent.online.state_dict()[name]), name


def test_early_stopping_waits_for_patience_and_min_episodes(tmp_path: Path) -> None:
    """`patience` episodes without a better evaluation (here 2 evaluations of every 10 episodes) stop the run,
    never before min_episodes."""
    run = trainer(config(patience=20, min_episodes=30), tmp_path)
    decisions = []
    for episode, mean in [(10, 5.0), (20, 4.0), (30, 3.0), (40, 6.0), (50, 6.0), (60, 5.0)]:
        run.episode = episode
        decisions.append(run._should_stop_early({"mean": mean, "std": 0.0, "min": mean, "max": mean}))
    assert decisions == [False, False, True, False, False, True]


class Exploding(gym.Wrapper[Any, Any, Any, Any]):
    def __init__(self, env: Any, at_episode: int) -> None:
        super().__init__(env)
        self.resets, self.at_episode = 0, at_episode

    def reset(self, **kwargs: Any) -> Any:
        self.resets += 1
        if self.resets == self.at_episode:
            raise RuntimeError("the environment crashed")
        return self.env.reset(**kwargs)


def test_an_exception_mid_run_leaves_an_emergency_checkpoint(tmp_path: Path) -> None:
    """A crash in episode 7 saves `emergency.pt` holding the 6 finished episodes, then re-raises."""
    cfg = config()
    run = trainer(cfg, tmp_path)
    run.env = Exploding(run.env, at_episode=7)
    with pytest.raises(RuntimeError, match="crashed"):
        run.train()
    state = torch.load(tmp_path / "checkpoints" / "emergency.pt", weights_only=False)
    assert len(state["history"]["reward"]) == 6
    assert json.loads((tmp_path / "checkpoints" / "emergency.json").read_text())["episode"] == 7


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("max_episodes: 10\nlearning_rat: 0.1\n", "learning_rat"),
        ("max_episodes: ten\n", "max_episodes"),
        ("agent_type: ppo\n", "agent_type"),
        ("gamma: 1.5\n", "gamma"),
        ("- a list\n", "mapping"),
        ("max_episodes: [\n", "YAML"),
    ],
)
def test_a_bad_setting_is_named(tmp_path: Path, content: str, needle: str) -> None:
    """A bad YAML key or value is a TrainingConfigError naming it."""
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(TrainingConfigError, match=needle):
        TrainingConfig.from_yaml(path)


@pytest.mark.parametrize("reader", [TrainingConfig.from_yaml, HierarchyConfig.from_yaml])
def test_broken_yaml_is_one_line_naming_where(tmp_path: Path, reader: Any) -> None:
    """A job's error shows its last line: YAML's own message ends with a caret under the fault, on a line
    of its own, which is all a user saw. The message is one line naming the line and column."""
    path = tmp_path / "bad.yaml"
    path.write_text("env: [CartPole\n  lr: 0.1\n")
    with pytest.raises(TrainingConfigError) as caught:
        reader(path)
    message = str(caught.value)
    assert "\n" not in message and "line 2, column 5" in message and "not valid YAML" in message, message


async def test_a_run_pushes_every_episode_decisions_and_status(live: LiveServer, tmp_path: Path) -> None:
    """With an SDK run: every episode's metrics in order, decisions sampled (at most one a second), the
    evaluation curve and the status changes reach the server."""

    def train() -> None:
        with MetricsClient(live.url, spool_dir=tmp_path / "spool") as client:
            with client.session(training_id="dqn-mock", algorithm="DQN") as run:
                trainer(config(), tmp_path / "out", run).train()

    await asyncio.to_thread(train)
    metrics = [m["data"] for m in await history(live.url, "dqn-mock")]
    assert [m["episode"] for m in metrics] == list(range(1, 21))
    assert all(math.isfinite(m["current_reward"]) and 0.0 <= m["epsilon"] <= 1.0 for m in metrics)
    decisions = [m["data"] for m in await history(live.url, "dqn-mock", "bot_decision")]
    assert decisions and len(decisions[0]["q_values"]) == 7
    steps = [m["step"] for m in metrics]  # the agent's steps, on metrics and decisions alike
    assert steps == sorted(steps) and steps[-1] > 0 and all(0 < d["step"] <= steps[-1] for d in decisions[1:])
    assert abs(sum(decisions[0]["action_probabilities"].values()) - 1.0) < 1e-3
    statuses = [m["data"] for m in await history(live.url, "dqn-mock", "training_status")]
    assert statuses[0]["status"] == "running" and statuses[-1]["status"] == "completed"
    assert not [s for s in statuses if "evaluat" in (s["message"] or "")], statuses  # evaluations: a graph only
    assert [s["status"] for s in statuses].count("completed") == 1, statuses  # said once, by the trainer
    graphs = [m["data"] for m in await history(live.url, "dqn-mock", "graph_update")]
    assert len(graphs) == 2 and graphs[0]["graph_id"] == "evaluation"


def test_the_server_and_the_sdk_never_import_torch() -> None:
    """torch belongs to the training extra: the server, the SDK and the CLI's serve path load without it."""
    import subprocess
    import sys

    script = "import sys; import bot.server, bot.sdk, bot.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", script], timeout=60).returncode == 0


def test_periodic_checkpoints_unless_save_best_only(tmp_path: Path) -> None:
    """With save_best_only off, `checkpoint_ep{N}.pt` (and its metadata) every checkpoint_frequency episodes, as
    the original design names them; `latest.pt` is each of them in turn, not only the last."""
    run = trainer(config(save_best_only=False, checkpoint_frequency=5), tmp_path)
    latest = tmp_path / "checkpoints" / "latest.json"
    seen: list[int | None] = []
    run.listeners.append(lambda _: seen.append(json.loads(latest.read_text())["episode"] if latest.exists() else None))
    run.train()
    names = sorted(p.name for p in (tmp_path / "checkpoints").glob("checkpoint_ep*.pt"))
    assert names == ["checkpoint_ep10.pt", "checkpoint_ep15.pt", "checkpoint_ep20.pt", "checkpoint_ep5.pt"]
    assert json.loads((tmp_path / "checkpoints" / "checkpoint_ep15.json").read_text())["episode"] == 15
    # latest as each episode began: the 5th episode's checkpoint from the 6th on, the best (10th) from the 11th
    assert seen[:6] == [None] * 5 + [5] and seen[10] == 10 and seen[15] == 15


def test_a_stopped_run_says_how_it_ended() -> None:
    """Ctrl-C's KeyboardInterrupt has no text: the status message said "KeyboardInterrupt: "."""
    from bot.training.trainer import TrainingInterrupted, ended_by

    assert ended_by(KeyboardInterrupt(), 12) == "interrupted (Ctrl-C) at episode 12"
    assert ended_by(TrainingInterrupted(15), 3) == "stopped by SIGTERM at episode 3"
    assert ended_by(ValueError("bad shape"), 7) == "ValueError: bad shape"
