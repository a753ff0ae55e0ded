"""The `bologna_coppia` scenario (#26.2): the household-finance environment under Gymnasium's checks, its goals
and figures, a short hierarchical run and its files, bad scenario settings, and a job of the scenario started
through the API of a real server. Whether it learns is bench/finance.py's question, not a test's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import httpx
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from bot.config import Settings
from bot.training import register
from bot.training.agent import DQNAgent
from bot.training.config import TrainingConfigError
from bot.training.finance import (
    FIXED_RULE_ACTION,
    GOALS,
    SHARES,
    EpisodeFigures,
    HouseholdFinanceEnv,
)
from bot.training.hierarchy import HierarchicalTrainer, HierarchyConfig, is_hierarchical
from bot.training.job import CheckpointLayout
from tests.conftest import TIMEOUT
from tests.training.test_jobs import EventWatcher, ended, start

SCENARIO = Path(__file__).resolve().parents[2] / "bot" / "training" / "scenarios" / "bologna_coppia.yaml"
FINANCE_KEYS = {"avg_cash", "avg_invested", "stability", "goal_adherence"}
COMMON_KEYS = {"episode", "total_episodes", "reward", "avg_reward", "avg_duration", "elapsed_time"}


def short(**changes: Any) -> HierarchyConfig:
    config = HierarchyConfig.from_yaml(SCENARIO)
    small = {"learning_starts": 50, "batch_size": 16, "hidden_sizes": [16]}
    settings = {"max_episodes": 4, "eval_frequency": 2, "eval_episodes": 1, "checkpoint_frequency": 2, "seed": 7}
    return config.replace(
        strategist={**vars(config.strategist), **small, "learning_starts": 5},
        executor={**vars(config.executor), **small},
        **{**settings, **changes},
    )


def test_the_environment_passes_gymnasium_checks() -> None:
    """`HouseholdFinance-v0` is registered and passes Gymnasium's environment checker (spaces, seeding,
    determinism); a bad action or goal is refused naming the range."""
    register()
    env = gym.make("HouseholdFinance-v0")
    check_env(env.unwrapped, skip_render_check=True)
    finance = env.unwrapped
    assert isinstance(finance, HouseholdFinanceEnv)
    env.reset(seed=1)
    with pytest.raises(ValueError, match=r"action must be within 0\.\.6, got 7"):
        env.step(7)
    with pytest.raises(ValueError, match=r"goal must be an index within 0\.\.5, got 6"):
        finance.set_goal(6)
    first = [env.step(FIXED_RULE_ACTION)[1] for _ in range(3)]
    env.reset(seed=1)
    assert [env.step(FIXED_RULE_ACTION)[1] for _ in range(3)] == first  # a seed replays the same months


def test_an_episode_lasts_the_horizon_and_its_figures_follow_their_definitions() -> None:
    """60 months then terminated; stability is the share of months ending without overdraft, goal adherence the
    mean of the months' adherence, which is 1 on the goal's target and 0 a band of expenses away."""
    env = HouseholdFinanceEnv()
    state, _ = env.reset(seed=3, options={"goal": 3})
    assert env.goal == GOALS[3] and state[5] == pytest.approx(GOALS[3].buffer / 6) and state[6] == GOALS[3].share
    figures, solvent, adherence = EpisodeFigures(), 0, []
    terminated = False
    while not terminated:
        _, reward, terminated, truncated, info = env.step(int(env.np_random.integers(len(SHARES))))
        assert not truncated
        figures.add(reward, info)
        solvent += info["cash"] >= 0
        adherence.append(info["adherence"])
    assert figures.months == env.household.horizon == 60
    assert figures.stability == solvent / 60 and figures.goal_adherence == pytest.approx(np.mean(adherence))
    assert (figures.cash, figures.invested) == (env.cash, env.invested)
    expenses = env.household.expenses
    assert GOALS[3] == (3.0, 1.0)  # three months of expenses in cash, everything above invested
    env.cash = 3 * expenses
    assert env.target_invested() == env.invested and env.adherence() == 1.0
    env.cash += env.household.adherence_band * expenses / 2
    assert env.adherence() == pytest.approx(0.5)
    env.cash += env.household.adherence_band * expenses
    assert env.adherence() == 0.0


def test_a_short_hierarchical_run_writes_both_networks_in_each_checkpoint(tmp_path: Path) -> None:
    """Four episodes: the listeners get every episode's finance figures; checkpoint_episode_2, _4, best and latest
    each hold the Strategist's and the Executor's networks, loadable by DQNAgent, and the run's metadata."""
    layout = CheckpointLayout(tmp_path, "bologna_coppia")
    trainer = HierarchicalTrainer(short(), checkpoint_path=layout.path)
    seen: list[dict[str, Any]] = []
    trainer.listeners.append(seen.append)
    statistics = trainer.train()
    assert statistics["episodes"] == 4 and statistics["steps"] == 240 and statistics["strategist_decisions"] == 40
    assert [figures["episode"] for figures in seen] == [1, 2, 3, 4]
    assert {"reward", "cash", "invested", "stability", "goal_adherence", "loss", "epsilon"} <= set(seen[0])
    assert all(0 <= f["stability"] <= 1 and 0 <= f["goal_adherence"] <= 1 for f in seen)
    for name in ("checkpoint_episode_2", "checkpoint_episode_4", "checkpoint_best", "checkpoint_latest"):
        folder = tmp_path / "checkpoints" / "bologna_coppia" / name
        assert {p.name for p in folder.iterdir()} == {"high_agent.pt", "low_agent.pt", "model.json"}, name
    latest = tmp_path / "checkpoints" / "bologna_coppia" / "checkpoint_latest"
    metadata = json.loads((latest / "model.json").read_text())
    assert metadata["episode"] == 4 and len(metadata["history"]["goal_adherence"]) == 4
    assert len(metadata["history"]["eval"]) == 2
    executor = DQNAgent(9, len(SHARES), trainer.config.executor)
    executor.load(latest / "low_agent.pt")
    state = np.zeros(9, dtype=np.float32)
    assert executor.select_action(state, evaluate=True) == trainer.executor.select_action(state, evaluate=True)
    resumed = HierarchicalTrainer(short(max_episodes=5), checkpoint_path=layout.path)
    resumed.load_checkpoint(latest)
    assert resumed.train()["episodes"] == 5 and len(resumed.history["reward"]) == 5


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("agent_type: hierarchical\nepisodes: 3\n", "unknown setting 'episodes'"),
        ("agent_type: hierarchical\nstrategist: {learning_rat: 0.1}\n", "strategist: unknown setting 'learning_rat'"),
        ("agent_type: hierarchical\nexecutor: {gamma: 2}\n", "executor: gamma must be within 0..1"),
        ("agent_type: hierarchical\nenvironment: {salary: 3000}\n", "environment: unknown setting 'salary'"),
        ("agent_type: hierarchical\nenvironment: {income: 1000}\n", "must exceed the expenses"),
        ("agent_type: hierarchical\ngoal_interval: 0\n", "goal_interval must be > 0"),
    ],
)
def test_a_bad_scenario_setting_is_named(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_text(content)
    assert is_hierarchical(path)
    with pytest.raises(TrainingConfigError, match=needle):
        HierarchyConfig.from_yaml(path)


def test_only_hierarchical_scenarios_take_the_hierarchical_trainer() -> None:
    scenarios = SCENARIO.parent
    assert is_hierarchical(SCENARIO)
    assert not is_hierarchical(scenarios / "mock_cache.yaml") and not is_hierarchical(scenarios / "missing.yaml")


@pytest.mark.slow  # the job's process imports torch and gymnasium afresh
async def test_a_bologna_coppia_job_trains_both_agents_and_publishes_them(
    server_factory: Any, settings: Settings, tmp_path: Path
) -> None:
    """POST /api/training/start {"scenario_name": "bologna_coppia", "num_episodes": 3} → 202; every progress
    carries the common keys and the finance ones; completed names both networks' files; the job's folder and the
    published layout hold them, the history and checkpoints with both networks. A stop saves both."""
    models = tmp_path / "models"
    live = await server_factory(settings.model_copy(update={"models_dir": models}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        job = await start(client, "bologna_coppia", num_episodes=3, save_interval=2, seed=1)
        assert job["num_episodes"] == 3
        async with EventWatcher(live, job["session_id"]) as watcher:
            completed = (await watcher.until("training_completed"))["data"]
        assert watcher.kinds() == ["training_started", *["training_progress"] * 3, "training_completed"]
        progress = [event["data"] for event in watcher.events[1:-1]]
        assert [p["episode"] for p in progress] == [1, 2, 3]
        for p in progress:
            assert COMMON_KEYS | FINANCE_KEYS <= set(p), sorted(p)
            assert 0 <= p["stability"] <= 1 and 0 <= p["goal_adherence"] <= 1 and p["avg_invested"] >= 0
        folder = models / "jobs" / job["job_id"]
        assert completed["episodes_completed"] == 3 and completed["job_dir"] == str(folder)
        assert completed["model_path"] == str(folder / "bologna_coppia_high_agent.pt")
        assert completed["low_model_path"] == str(folder / "bologna_coppia_low_agent.pt")
        assert (await ended(client, job["job_id"]))["status"] == "completed"
        history = (await client.get(f"/api/training/sessions/{job['session_id']}/history")).json()
        pushed = [m["data"] for m in history["messages"] if m["type"] == "training_metrics"]
        assert {"goal_adherence", "stability", "cash", "invested"} <= set(pushed[-1]["custom"])
        assert any(m["type"] == "bot_decision" for m in history["messages"])  # the Strategist's goal choice

        for root in (folder, models):  # the job's own files, and the published latest
            for name in ("bologna_coppia_high_agent.pt", "bologna_coppia_low_agent.pt", "bologna_coppia_history.json"):
                assert (root / name).is_file(), root / name
            for checkpoint in ("checkpoint_episode_2", "checkpoint_best", "checkpoint_final"):
                for network in ("high_agent.pt", "low_agent.pt"):
                    assert (root / "checkpoints" / "bologna_coppia" / checkpoint / network).is_file()
        saved = json.loads((models / "bologna_coppia_history.json").read_text())
        assert len(saved["history"]["goal_adherence"]) == 3 and saved["statistics"]["outcome"] == "completed"

        stopping = await start(client, "bologna_coppia", num_episodes=100_000, save_interval=100_000)
        async with EventWatcher(live, stopping["session_id"]) as watcher:
            await watcher.until("training_progress")
            answer = (await client.post("/api/training/stop", json={"job_id": stopping["job_id"]})).json()
            stopped = (await watcher.until("training_stopped"))["data"]
        # The answer waits 4 s for the two networks' checkpoint; a loaded machine may take longer, so say nothing
        # of time here: either answer is right, and the row ends `stopped` either way.
        assert answer["data"]["status"] in ("stopped", "stopping"), answer
        assert (await ended(client, stopping["job_id"]))["status"] == "stopped"
    kept = Path(stopped["checkpoint"])
    assert kept.name.startswith("checkpoint_episode_")
    assert {"high_agent.pt", "low_agent.pt", "model.json"} <= {p.name for p in kept.iterdir()}
