"""What the SDK's system metrics cost a training loop (#27.11: target under 1 %).

    python bench/system_metrics.py [--episodes 150] [--rounds 6]

The target is judged on the cost of one sample as a run pays it (psutil's reads, then the point built and
queued by Run._log_system), times the default rate (one every 5 s): a share of one core, the loop's own.

A check that nothing else costs more, measured beside it: the same seeded CartPole run of the reference
trainer, pushing to a live server, with system metrics off and on (sampled every 0.1 s, 50 times the
default cadence), in rounds whose order alternates; each round's cost is 1 - (on / off) in episodes per
second of training time. The rounds' spread is the noise: a median cost inside it says the sampling is
not seen at all, even at 50 times its rate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import server_process
from bot.sdk import MetricsClient
from bot.sdk.system import DEFAULT_INTERVAL

FAST_INTERVAL = 0.1  # seconds: 50 times the default cadence


def sample_cost(url: str, samples: int = 2000) -> dict[str, float]:
    """One sample as a run takes it: read by the sampler, then logged by the Run (built and queued on this
    thread; sending is the SDK's own thread's)."""
    with tempfile.TemporaryDirectory() as spool:
        client = MetricsClient(url, spool_dir=spool, max_pending=10 * samples)
        with client, client.session(name="bench-sample", system_metrics=3600.0) as run:  # a sampler never due
            sampler = run._sampler
            assert sampler is not None
            costs = []
            for _ in range(samples):
                start = time.perf_counter()
                run._log_system(sampler.sample())
                costs.append(time.perf_counter() - start)
    median = statistics.median(costs)
    return {"sample_us": median * 1e6, "core_share_at_default": median / DEFAULT_INTERVAL}


def training(url: str, episodes: int, rounds: int) -> list[float]:
    import gymnasium as gym
    import torch

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

    costs = []
    run(url, False)  # warm up: imports and the first plot are paid once, outside the rounds
    for round_ in range(rounds):
        order = (False, FAST_INTERVAL) if round_ % 2 == 0 else (FAST_INTERVAL, False)
        rates = {bool(setting): run(url, setting) for setting in order}
        costs.append(1 - rates[True] / rates[False])
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    with server_process() as server:
        one = sample_cost(server.url)
        costs = training(server.url, args.episodes, args.rounds)
    share = one["core_share_at_default"] * 100
    print(
        f"one system sample, read and logged: {one['sample_us']:.0f} µs; at one every {DEFAULT_INTERVAL:g} s, "
        f"{share:.4f} % of the training thread's time (target < 1 %: {'met' if share < 1 else 'NOT met'})"
    )
    print(
        f"check, CartPole over {args.episodes} episodes pushing to a live server, {args.rounds} rounds of "
        f"alternating order, sampling every {FAST_INTERVAL:g} s (50x the default): cost per round "
        f"{', '.join(f'{c * 100:+.1f}' for c in costs)} %; median {statistics.median(costs) * 100:+.1f} %, "
        f"the rounds' spread {(max(costs) - min(costs)) * 100:.1f} points"
    )


if __name__ == "__main__":
    main()
