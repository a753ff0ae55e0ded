"""Does the reference trainer learn? CartPole-v1 with the shipped config, against Stable-Baselines3's DQN
with the RL Baselines3 Zoo CartPole hyper-parameters, same seeds, same run; then what pushing to a live
local server costs in episodes per second.

    python bench/train.py [SEEDS]          # default 3 seeds: 0 1 2
    python bench/train.py --push-only

Printed per seed and as medians: environment steps until the greedy evaluation mean over 20 episodes
first reaches 475, and wall time (evaluations included, both sides). Ours evaluates every 10 episodes
(the shipped config); SB3 every 1,000 steps, its usual EvalCallback cadence. Targets: ours solves every
seed, within 1.5x SB3's median steps, in no more wall time than SB3; pushing costs under 3 %.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import server_process
from bot.training import DQNAgent, Trainer, TrainingConfig
from bot.training.cli import SHIPPED

BUDGET = 100_000  # environment steps each side may take
SOLVED = 475.0
EVAL_EPISODES = 20


def ours(seed: int) -> dict[str, Any]:
    config = TrainingConfig.from_yaml(SHIPPED / "cartpole.yaml").replace(
        seed=seed, verbose=False, max_episodes=100_000, max_steps=BUDGET
    )
    env = gym.make(config.env_id)
    agent = DQNAgent(env.observation_space.shape[0], int(env.action_space.n), config, seed=seed)
    trainer = Trainer(agent, env, config, tempfile.mkdtemp(prefix="bench-train-"))
    start = time.perf_counter()
    trainer.train()  # stops at the first evaluation of 475 or more (the shipped target_reward)
    solved = [e for e in trainer.history["eval"] if e["mean"] >= SOLVED]
    return {"steps": solved[0]["steps"] if solved else None, "seconds": time.perf_counter() - start}


def sb3(seed: int) -> dict[str, Any]:
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    env = gym.make("CartPole-v1")
    evaluation_env = gym.make("CartPole-v1")
    model = DQN(  # the RL Baselines3 Zoo's CartPole-v1 settings
        "MlpPolicy",
        env,
        learning_rate=2.3e-3,
        batch_size=64,
        buffer_size=100_000,
        learning_starts=1000,
        gamma=0.99,
        target_update_interval=10,
        train_freq=256,
        gradient_steps=128,
        exploration_fraction=0.16,
        exploration_final_eps=0.04,
        policy_kwargs={"net_arch": [256, 256]},
        seed=seed,
        verbose=0,
    )

    class Solved(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.at: int | None = None

        def _on_step(self) -> bool:
            if self.num_timesteps % 1000:
                return True
            rewards = []
            for episode in range(EVAL_EPISODES):
                state, _ = evaluation_env.reset(seed=1_000_000 + seed * 1000 + episode)
                total, done = 0.0, False
                while not done:
                    action, _ = model.predict(state, deterministic=True)
                    state, reward, terminated, truncated, _ = evaluation_env.step(int(action))
                    total += float(reward)
                    done = terminated or truncated
                rewards.append(total)
            if np.mean(rewards) >= SOLVED:
                self.at = self.num_timesteps
                return False
            return True

    callback = Solved()
    start = time.perf_counter()
    model.learn(total_timesteps=BUDGET, callback=callback)
    return {"steps": callback.at, "seconds": time.perf_counter() - start}


def learning(seeds: list[int]) -> dict[str, Any]:
    rows = []
    for seed in seeds:
        mine, theirs = ours(seed), sb3(seed)
        rows.append((seed, mine, theirs))
        print(
            f"seed {seed}: ours solved at {mine['steps']} steps in {mine['seconds']:.1f} s; "
            f"SB3 at {theirs['steps']} steps in {theirs['seconds']:.1f} s",
            flush=True,
        )

    def median(side: int, key: str) -> float:
        values = [row[side][key] for row in rows if row[side]["steps"] is not None]
        return statistics.median(values) if values else float("nan")

    all_solved = all(row[1]["steps"] is not None for row in rows)
    steps_ratio = median(1, "steps") / median(2, "steps")
    time_ratio = median(1, "seconds") / median(2, "seconds")
    print(
        f"medians over {len(seeds)} seeds: ours {median(1, 'steps'):,.0f} steps / {median(1, 'seconds'):.1f} s, "
        f"SB3 {median(2, 'steps'):,.0f} steps / {median(2, 'seconds'):.1f} s; steps ratio {steps_ratio:.2f} "
        f"(target <= 1.5), wall time ratio {time_ratio:.2f} (target <= 1); every seed solved: {all_solved}"
    )
    return {"steps_ratio": steps_ratio, "time_ratio": time_ratio, "all_solved": all_solved}


def pushing(episodes: int = 200, rounds: int = 5) -> dict[str, float]:
    """Episodes/s of the same seeded CartPole run with and without pushing to a live server (alternating)."""
    from bot.sdk import MetricsClient

    def run(url: str | None) -> float:
        config = TrainingConfig.from_yaml(SHIPPED / "cartpole.yaml").replace(
            seed=7, verbose=False, max_episodes=episodes, target_reward=None, early_stopping=False
        )
        env = gym.make(config.env_id)
        agent = DQNAgent(env.observation_space.shape[0], int(env.action_space.n), config, seed=7)
        output = tempfile.mkdtemp(prefix="bench-push-")
        if url is None:
            statistics_ = Trainer(agent, env, config, output).train()
        else:
            client = MetricsClient(url, spool_dir=output, flush_interval=0.5)  # as `bot train --server` does
            with client, client.session(name="bench") as session:
                statistics_ = Trainer(agent, env, config, output, session).train()
        # The training's own time: opening the client and the final flush are once per run, not per episode.
        return episodes / float(statistics_["elapsed_seconds"])

    with server_process() as server:
        without, with_push = [], []
        for _ in range(rounds):
            without.append(run(None))
            with_push.append(run(server.url))
    cost = 1 - statistics.median(with_push) / statistics.median(without)
    print(
        f"episodes/s over {episodes} CartPole episodes (medians of {rounds} alternating runs): "
        f"{statistics.median(without):.1f} without pushing, {statistics.median(with_push):.1f} pushing to a live "
        f"server; cost {cost * 100:.1f} % (target < 3 %)"
    )
    return {"without": statistics.median(without), "with": statistics.median(with_push), "cost": cost}


def main() -> None:
    if sys.argv[1:] == ["--push-only"]:
        pushing()
        return
    seeds = list(range(int(sys.argv[1]))) if len(sys.argv) > 1 else [0, 1, 2]
    learning(seeds)
    pushing()


if __name__ == "__main__":
    main()
