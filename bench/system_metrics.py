"""What the SDK's system metrics cost a training loop (#27.11: target under 1 %).

    python bench/system_metrics.py [--episodes 150] [--rounds 5]

Two figures, each against a baseline measured in this run:
- one sample's cost (CPU %, memory, threads of this process, psutil) in µs, and the share of one core it
  takes at the default cadence (a sample every 5 s);
- the same seeded CartPole run of the reference trainer, pushing to a live server, with system metrics off
  and on, alternating rounds; on, they are sampled every 0.1 s (50 times the default), so that their cost
  stands out of the noise. Throughput is episodes per second of training time (`elapsed_seconds`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.sdk.system import DEFAULT_INTERVAL, SystemSampler

FAST_INTERVAL = 0.1  # seconds: 50 times the default cadence


def sample_cost(samples: int = 2000) -> dict[str, float]:
    sampler = SystemSampler(lambda figures: None)
    costs = []
    for _ in range(samples):
        start = time.perf_counter()
        sampler.sample()
        costs.append(time.perf_counter() - start)
    median = statistics.median(costs)
    return {"sample_us": median * 1e6, "core_share_at_default": median / DEFAULT_INTERVAL}


def training(episodes: int, rounds: int) -> dict[str, float]:
    import gymnasium as gym
    import torch

    from bench.common import server_process
    from bot.sdk import MetricsClient
    from bot.training import DQNAgent, Trainer, TrainingConfig
    from bot.training.cli import SHIPPED

    torch.set_num_threads(1)

    def run(url: str, system_metrics: float | bool) -> float:
        config = TrainingConfig.from_yaml(SHIPPED / "cartpole.yaml").replace(
            seed=7, verbose=False, max_episodes=episodes, target_reward=None, early_stopping=False
        )
        env = gym.make(config.env_id)
        agent = DQNAgent(env.observation_space.shape[0], int(env.action_space.n), config, seed=7)
        output = tempfile.mkdtemp(prefix="bench-system-")
        client = MetricsClient(url, spool_dir=output, flush_interval=0.5)  # as `bot train --server` does
        with client, client.session(name="bench-system", system_metrics=system_metrics) as session:
            figures = Trainer(agent, env, config, output, session).train()
        return episodes / float(figures["elapsed_seconds"])

    with server_process() as server:
        off, on = [], []
        for _ in range(rounds):
            off.append(run(server.url, False))
            on.append(run(server.url, FAST_INTERVAL))
    return {
        "off": statistics.median(off),
        "on": statistics.median(on),
        "cost": 1 - statistics.median(on) / statistics.median(off),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    one = sample_cost()
    print(
        f"one system sample: {one['sample_us']:.0f} µs; at one every {DEFAULT_INTERVAL:g} s, "
        f"{one['core_share_at_default'] * 100:.4f} % of one core (target < 1 %)"
    )
    loop = training(args.episodes, args.rounds)
    print(
        f"CartPole episodes/s over {args.episodes} episodes (medians of {args.rounds} alternating runs, pushing to a "
        f"live server): {loop['off']:.1f} without system metrics, {loop['on']:.1f} sampling every {FAST_INTERVAL:g} s; "
        f"cost {loop['cost'] * 100:.2f} % at 50x the default cadence, so about {loop['cost'] * 2:.3f} % at the default "
        "(target < 1 %)"
    )


if __name__ == "__main__":
    main()
