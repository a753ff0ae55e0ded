"""Does the bologna_coppia scenario learn? Its default run (the scenario's YAML: 1000 episodes, what
`POST /api/training/start {"scenario_name": "bologna_coppia"}` trains) on seeds 0, 1 and 2 with one torch
thread, then a greedy evaluation of both agents against a random policy and a fixed rule.

    python bench/finance.py [SEEDS] [--episodes N] [--scenario FILE]   # default seeds 0 1 2, N = 500

Every policy plays the same N fresh episodes (seeds 20,000,000 + i, which no training or evaluation of the run
used), so the households, their emergencies and their markets are the same for all: the margins are paired.
- trained: the Strategist picks a goal every goal_interval months, the Executor acts monthly, both greedy;
- random: a goal drawn at random every goal_interval months, a transfer drawn at random every month;
- fixed rule: the standing order, half the normal surplus invested every month whatever happens; it follows
  no goal, so its goal adherence is measured against each goal held for the whole episode and the best kept;
- 3-month rule, a reference and no baseline: a hand-written Executor that knows the environment's arithmetic,
  under the best single goal (three months of expenses in cash, the rest invested): the room left above.

Printed per seed: the training wall time, each policy's mean reward and goal adherence (plus stability), and
the trained policy's margins over the two others (mean of the paired per-episode differences ± their standard
error); then each margin's mean, spread (standard deviation) and minimum over the seeds, and how often the
trained Strategist chose each goal.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.training.finance import FIXED_RULE_ACTION, GOALS, SHARES, EpisodeFigures, HouseholdFinanceEnv
from bot.training.hierarchy import HierarchicalTrainer, HierarchyConfig
from bot.training.threads import limit_threads

SCENARIO = Path(__file__).resolve().parent.parent / "bot" / "training" / "scenarios" / "bologna_coppia.yaml"
EVAL_SEED = 20_000_000
RULE_GOAL = GOALS.index((3.0, 1.0))  # the reference: three months of expenses in cash, the rest invested

Choice = Callable[[HouseholdFinanceEnv, np.ndarray], int]


def play(env: Any, interval: int, goal: Choice, action: Choice, episodes: int) -> list[dict[str, float]]:
    """Each episode's figures for a policy: `goal` every `interval` months, `action` every month."""
    household: HouseholdFinanceEnv = env.unwrapped
    results = []
    for i in range(episodes):
        state, _ = env.reset(seed=EVAL_SEED + i)
        figures, month, done = EpisodeFigures(), 0, False
        while not done:
            if month % interval == 0:
                state = household.set_goal(goal(household, state))
            state, reward, terminated, truncated, info = env.step(action(household, state))
            figures.add(float(reward), info)
            month, done = month + 1, terminated or truncated
        results.append(figures.as_dict())
    return results


def toward_goal(household: HouseholdFinanceEnv, _: np.ndarray) -> int:
    """A hand-written Executor: the transfer that leaves the invested amount nearest the goal's target after an
    average month (the normal surplus added to cash)."""
    h = household.household

    def distance(action: int) -> float:
        amount = SHARES[action] * h.surplus
        moved = min(amount, max(0.0, household.cash)) if amount >= 0 else -min(-amount, household.invested)
        cash, invested = household.cash - moved + h.surplus, household.invested + moved
        goal = household.goal
        return abs(invested - goal.share * max(0.0, cash + invested - goal.buffer * h.expenses))

    return min(range(len(SHARES)), key=distance)


def mean(results: list[dict[str, float]], key: str) -> float:
    return float(np.mean([r[key] for r in results]))


def margin(ours: list[dict[str, float]], theirs: list[dict[str, float]], key: str) -> tuple[float, float]:
    """The mean paired difference and its standard error."""
    differences = np.array([a[key] - b[key] for a, b in zip(ours, theirs, strict=True)])
    return float(differences.mean()), float(differences.std(ddof=1) / np.sqrt(len(differences)))


def bench_seed(seed: int, episodes: int, scenario: Path) -> dict[str, Any]:
    config = HierarchyConfig.from_yaml(scenario).replace(seed=seed)
    trainer = HierarchicalTrainer(config, output_dir=tempfile.mkdtemp(prefix="bench-finance-"))
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    env, interval = trainer.env, config.goal_interval
    chosen: Counter[int] = Counter()

    def strategist(_: HouseholdFinanceEnv, state: np.ndarray) -> int:
        goal = trainer.strategist.select_action(state, evaluate=True)
        chosen[goal] += 1
        return goal

    trained = play(env, interval, strategist, lambda _, s: trainer.executor.select_action(s, evaluate=True), episodes)
    rng = np.random.default_rng(seed)
    randomly = play(
        env, interval, lambda *_: int(rng.integers(len(GOALS))), lambda *_: int(rng.integers(len(SHARES))), episodes
    )
    by_goal = [
        play(env, interval, lambda *_, g=g: g, lambda *_: FIXED_RULE_ACTION, episodes) for g in range(len(GOALS))
    ]
    fixed = max(by_goal, key=lambda results: mean(results, "goal_adherence"))
    rule = play(env, interval, lambda *_: RULE_GOAL, toward_goal, episodes)
    return {
        "seed": seed,
        "seconds": seconds,
        "policies": {"trained": trained, "random": randomly, "fixed rule": fixed, "3-month rule": rule},
        "fixed_goal": GOALS[by_goal.index(fixed)],
        "chosen": chosen,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=500, help="greedy evaluation episodes per policy")
    parser.add_argument("--scenario", type=Path, default=SCENARIO, help="another hierarchical scenario file")
    args = parser.parse_args()
    limit_threads(1)
    runs = []
    for seed in args.seeds:
        run = bench_seed(seed, args.episodes, args.scenario)
        runs.append(run)
        print(f"\nseed {seed}: default run trained in {run['seconds']:.1f} s; {args.episodes} evaluation episodes")
        print(f"  {'policy':<12} {'reward':>8} {'goal adherence':>15} {'stability':>10}")
        for name, results in run["policies"].items():
            figures = [mean(results, key) for key in ("reward", "goal_adherence", "stability")]
            print(f"  {name:<12} {figures[0]:>8.2f} {figures[1]:>15.3f} {figures[2]:>10.3f}")
        print(f"  (the fixed rule fits best the goal: {run['fixed_goal'].label})")
        trained = run["policies"]["trained"]
        for other in ("random", "fixed rule", "3-month rule"):
            for key in ("reward", "goal_adherence"):
                value, error = margin(trained, run["policies"][other], key)
                run[f"{other}/{key}"] = value
                print(f"  margin over {other:<12} {key:<15} {value:+8.3f} ± {error:.3f}")
    print(f"\nmargins of the trained policy over {len(runs)} seeds (mean, standard deviation, minimum):")
    for other in ("random", "fixed rule", "3-month rule"):
        for key in ("reward", "goal_adherence"):
            values = [run[f"{other}/{key}"] for run in runs]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            print(f"  over {other:<12} {key:<15} {np.mean(values):+8.3f}  sd {spread:.3f}  min {min(values):+.3f}")
    seconds = [run["seconds"] for run in runs]
    print(f"training wall time: median {statistics.median(seconds):.1f} s, max {max(seconds):.1f} s (one thread)")
    chosen: Counter[int] = sum((run["chosen"] for run in runs), Counter())
    total = sum(chosen.values())
    print("the trained Strategist's goals:")
    for goal, count in chosen.most_common():
        print(f"  {count / total:4.0%}  {GOALS[goal].label}")


if __name__ == "__main__":
    main()
