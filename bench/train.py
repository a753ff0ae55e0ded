"""Does the reference trainer learn as fast as Stable-Baselines3? A race under one protocol, then what pushing
to a live local server costs.

    python bench/train.py [--seeds N] [--env CartPole-v1|Acrobot-v1|all] [--jobs J]
    python bench/train.py --push-only

Both sides train on the RL Baselines3 Zoo's budget: SB3's DQN with the Zoo's hyper-parameters exactly, through
`learn(n_timesteps)` so its epsilon schedule is the Zoo's; ours with its shipped config for the environment
(bot/training/configs/). One protocol judges both, from outside: every 1,000 environment steps, 20 greedy
episodes on a separate environment, on evaluation seeds that are the same for both sides; "solved" is the first
evaluation whose mean reaches the threshold (CartPole-v1 475, Acrobot-v1 -100). Both run with one torch
thread; the time spent evaluating is not counted on either side. Printed per seed and as median with spread:
steps to solve and training seconds to solve (a seed that never solves counts as infinite). Targets: ours
solves every seed, median steps <= 1.5x SB3's, median wall time <= SB3's; pushing costs under 3 %.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

EVAL_EVERY = 1000
EVAL_EPISODES = 20


@dataclass(frozen=True)
class Race:
    env_id: str
    threshold: float
    config: str  # ours: a shipped config's name
    zoo: dict[str, Any]  # SB3: the Zoo's hyper-parameters (hyperparams/dqn.yml), n_timesteps included


RACES = {
    "CartPole-v1": Race(
        "CartPole-v1",
        475.0,
        "cartpole",
        {
            "n_timesteps": 50_000,
            "learning_rate": 2.3e-3,
            "batch_size": 64,
            "buffer_size": 100_000,
            "learning_starts": 1000,
            "gamma": 0.99,
            "target_update_interval": 10,
            "train_freq": 256,
            "gradient_steps": 128,
            "exploration_fraction": 0.16,
            "exploration_final_eps": 0.04,
            "policy_kwargs": {"net_arch": [256, 256]},
        },
    ),
    "Acrobot-v1": Race(
        "Acrobot-v1",
        -100.0,
        "acrobot",
        {
            "n_timesteps": 100_000,
            "learning_rate": 6.3e-4,
            "batch_size": 128,
            "buffer_size": 50_000,
            "learning_starts": 0,
            "gamma": 0.99,
            "target_update_interval": 250,
            "train_freq": 4,
            "gradient_steps": -1,
            "exploration_fraction": 0.12,
            "exploration_final_eps": 0.1,
            "policy_kwargs": {"net_arch": [256, 256]},
        },
    ),
}


class Judge:
    """The one protocol: called at every environment step of either side; every EVAL_EVERY steps it plays
    EVAL_EPISODES greedy episodes on its own environment and keeps the time it took apart."""

    def __init__(self, race: Race, seed: int, greedy: Callable[[Any], int]) -> None:
        self.race, self.seed, self.greedy = race, seed, greedy
        self.env = gym.make(race.env_id)
        self.started = time.perf_counter()
        self.judging = 0.0  # seconds spent evaluating, not counted
        self.solved_at: int | None = None
        self.solved_seconds: float | None = None

    def step(self, steps: int) -> bool:
        """True once solved (at this step or before)."""
        if self.solved_at is not None:
            return True
        if steps % EVAL_EVERY:
            return False
        now = time.perf_counter()
        trained = now - self.started - self.judging  # the training time so far, this evaluation not yet in it
        rewards = []
        for episode in range(EVAL_EPISODES):
            state, _ = self.env.reset(seed=1_000_000 + self.seed * 1000 + episode)
            total, done = 0.0, False
            while not done:
                state, reward, terminated, truncated, _ = self.env.step(self.greedy(state))
                total += float(reward)
                done = terminated or truncated
            rewards.append(total)
        self.judging += time.perf_counter() - now
        if float(np.mean(rewards)) >= self.race.threshold:
            self.solved_at, self.solved_seconds = steps, trained
            return True
        return False


def ours(race: Race, seed: int) -> dict[str, Any]:
    import torch

    from bot.training import DQNAgent, Trainer, TrainingConfig
    from bot.training.cli import SHIPPED

    torch.set_num_threads(1)
    budget = race.zoo["n_timesteps"]
    config = TrainingConfig.from_yaml(SHIPPED / f"{race.config}.yaml").replace(
        seed=seed, verbose=False, max_episodes=10**9, max_steps=budget, eval_frequency=10**9, early_stopping=False
    )
    env = gym.make(race.env_id)
    agent = DQNAgent(env.observation_space.shape[0], int(env.action_space.n), config, seed=seed)
    trainer = Trainer(agent, env, config, tempfile.mkdtemp(prefix="bench-train-"))
    judge = Judge(race, seed, lambda state: agent.select_action(state, evaluate=True))
    store = agent.store_transition

    def judged(*transition: Any) -> None:
        store(*transition)
        if judge.step(agent.steps):
            trainer.config.max_steps = agent.steps  # the trainer stops at this episode's end

    agent.store_transition = judged  # type: ignore[method-assign]
    trainer.train()
    return {"steps": judge.solved_at, "seconds": judge.solved_seconds}


def sb3(race: Race, seed: int) -> dict[str, Any]:
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(1)
    settings = dict(race.zoo)
    budget = settings.pop("n_timesteps")
    model = DQN("MlpPolicy", gym.make(race.env_id), seed=seed, verbose=0, **settings)
    judge = Judge(race, seed, lambda state: int(model.predict(state, deterministic=True)[0]))

    class Judged(BaseCallback):
        def _on_step(self) -> bool:
            return not judge.step(self.num_timesteps)

    model.learn(total_timesteps=budget, callback=Judged())
    return {"steps": judge.solved_at, "seconds": judge.solved_seconds}


def one(side: str, env_id: str, seed: int) -> tuple[str, str, int, dict[str, Any]]:
    result = (ours if side == "ours" else sb3)(RACES[env_id], seed)
    return side, env_id, seed, result


def spread(values: list[float]) -> str:
    """Median, quartiles and range; unsolved seeds are infinite."""
    ordered = sorted(values)
    median = statistics.median(ordered)
    q1, q3 = (float(np.percentile(ordered, p, method="nearest")) for p in (25, 75))

    def show(x: float) -> str:
        return "unsolved" if math.isinf(x) else f"{x:,.0f}" if x >= 100 else f"{x:.1f}"

    return f"median {show(median)} (quartiles {show(q1)}-{show(q3)}, range {show(ordered[0])}-{show(ordered[-1])})"


def race(env_ids: list[str], seeds: list[int], jobs: int) -> dict[str, dict[str, float]]:
    runs = [(side, env_id, seed) for env_id in env_ids for seed in seeds for side in ("ours", "sb3")]
    results: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    with ProcessPoolExecutor(jobs) as pool:
        for side, env_id, seed, result in pool.map(one, *zip(*runs, strict=True)):
            results.setdefault((env_id, side), {})[seed] = result
            print(f"{env_id} seed {seed} {side}: solved at {result['steps']} steps, {result['seconds']} s", flush=True)
    figures = {}
    for env_id in env_ids:
        print(f"\n{env_id}, {len(seeds)} seeds, Zoo budget {RACES[env_id].zoo['n_timesteps']:,} steps:")
        medians = {}
        for side in ("ours", "sb3"):
            rows = results[(env_id, side)].values()
            steps = [math.inf if r["steps"] is None else float(r["steps"]) for r in rows]
            seconds = [math.inf if r["seconds"] is None else float(r["seconds"]) for r in rows]
            solved = sum(r["steps"] is not None for r in rows)
            print(f"  {side:4}: solved {solved}/{len(rows)}; steps {spread(steps)}; seconds {spread(seconds)}")
            medians[side] = (statistics.median(steps), statistics.median(seconds), solved == len(rows))
        steps_ratio = medians["ours"][0] / medians["sb3"][0]
        time_ratio = medians["ours"][1] / medians["sb3"][1]
        print(
            f"  median steps ratio {steps_ratio:.2f} (target <= 1.5), median wall time ratio {time_ratio:.2f} "
            f"(target <= 1), ours solved every seed: {medians['ours'][2]}"
        )
        figures[env_id] = {"steps_ratio": steps_ratio, "time_ratio": time_ratio, "all_solved": medians["ours"][2]}
    return figures


def pushing(episodes: int = 200, rounds: int = 5) -> dict[str, float]:
    """Episodes/s of the same seeded CartPole run with and without pushing to a live server (alternating)."""
    import torch

    from bench.common import server_process
    from bot.sdk import MetricsClient
    from bot.training import DQNAgent, Trainer, TrainingConfig
    from bot.training.cli import SHIPPED

    torch.set_num_threads(1)

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
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--env", choices=[*RACES, "all"], default="all")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (one torch thread each)")
    parser.add_argument("--push-only", action="store_true")
    parser.add_argument("--no-push", action="store_true")
    args = parser.parse_args()
    if not args.push_only:
        race(list(RACES) if args.env == "all" else [args.env], list(range(args.seeds)), args.jobs)
    if not args.no_push:
        pushing()


if __name__ == "__main__":
    main()
