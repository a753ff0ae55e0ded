"""Does `bot train` keep its speed when another process holds a core? (#24.8)

    python bench/train_threads.py [--episodes N] [--seed S] [--default-too]

Runs `bot train -c cartpole` (a fixed episode count and seed, so both runs do the same work) as a user would:
once on a quiet machine and once beside a process that spins one core, with torch's threads at 1 (the default
now). Prints each wall time and the ratio busy / quiet (target: at most 1.5). `--default-too` also runs the
busy case with torch's own default (a thread per core), the cause of the slowdown, capped at 10 minutes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def spin(stop: multiprocessing.synchronize.Event) -> None:
    while not stop.is_set():
        sum(range(10_000))


def train(episodes: int, seed: int, threads: int, timeout: float = 600.0) -> float:
    with tempfile.TemporaryDirectory() as output:
        command = [sys.executable, "-m", "bot", "train", "-c", "cartpole", "--episodes", str(episodes)]
        command += ["--seed", str(seed), "--threads", str(threads), "--output", output]
        started = time.perf_counter()
        subprocess.run(
            command, check=True, timeout=timeout, capture_output=True, env={**os.environ, "PYTHONPATH": ROOT}
        )
        return time.perf_counter() - started


def busy(episodes: int, seed: int, threads: int) -> float:
    stop = multiprocessing.Event()
    spinner = multiprocessing.Process(target=spin, args=(stop,), daemon=True)
    spinner.start()
    try:
        return train(episodes, seed, threads)
    except subprocess.TimeoutExpired:
        return float("inf")
    finally:
        stop.set()
        spinner.join(5)


ROOT = str(Path(__file__).resolve().parent.parent)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--default-too", action="store_true")
    args = parser.parse_args()
    quiet = train(args.episodes, args.seed, 1)
    loaded = busy(args.episodes, args.seed, 1)
    print(f"bot train -c cartpole, {args.episodes} episodes, seed {args.seed}, {os.cpu_count()} cores")
    print(f"  quiet, 1 thread:          {quiet:7.1f} s")
    print(f"  one busy core, 1 thread:  {loaded:7.1f} s   ratio {loaded / quiet:.2f} (target <= 1.5)")
    if args.default_too:
        default = busy(args.episodes, args.seed, os.cpu_count() or 1)
        print(f"  one busy core, {os.cpu_count()} threads: {default:7.1f} s   ratio {default / quiet:.2f}")


if __name__ == "__main__":
    main()
