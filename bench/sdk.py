"""SDK figures: caller-side cost of log_metrics (server up and down) and one engine's end-to-end throughput.

    python bench/sdk.py [CALLS]

Prints the per-call cost in µs (median, p99) beside the same loop without logging, measured in this
run; then points/s delivered end to end (acknowledged by the server) by one engine logging flat out.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, percentile, server_process
from bench.ingest import measure as ingest_ceiling
from bot.sdk import MetricsClient


def timed_loop(calls: int, log: bool, run: object) -> list[float]:
    """Per-iteration cost in µs of a training-loop body with or without the log call."""
    clock = time.perf_counter_ns
    costs = []
    log_metrics = run.log_metrics  # type: ignore[attr-defined]
    for episode in range(calls):
        reward, length, eps, loss = episode * 0.5, 200, 0.1, 0.01
        start = clock()
        if log:
            log_metrics(episode=episode, current_reward=reward, episode_length=length, epsilon=eps, loss_value=loss)
        costs.append((clock() - start) / 1000)
    return costs


def cost(url: str, calls: int, label: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as spool:
        client = MetricsClient(url, spool_dir=spool, flush_timeout=1.0, max_pending=10 * calls)
        with client.session(name="bench-cost") as run:
            timed_loop(2000, True, run)  # warm up
            with_log = timed_loop(calls, True, run)
            without = timed_loop(calls, False, run)
        client.close()
    figures = {
        "median_us": percentile(with_log, 0.5),
        "p99_us": percentile(with_log, 0.99),
        "baseline_median_us": percentile(without, 0.5),
        "baseline_p99_us": percentile(without, 0.99),
    }
    print(
        f"log_metrics, 5 fields, {label}: median {figures['median_us']:.2f} µs, p99 {figures['p99_us']:.2f} µs "
        f"(same loop without logging: median {figures['baseline_median_us']:.2f} µs, "
        f"p99 {figures['baseline_p99_us']:.2f} µs)"
    )
    return figures


def throughput(url: str, points: int) -> float:
    with tempfile.TemporaryDirectory() as spool:
        client = MetricsClient(url, spool_dir=spool, flush_timeout=120, batch_size=1000)
        start = time.perf_counter()
        with client.session(name="bench-throughput") as run:
            for episode in range(points):
                run.log_metrics(episode=episode, current_reward=1.0, episode_length=10, epsilon=0.1, loss_value=0.5)
        elapsed = time.perf_counter() - start
        session_id = run.session_id
        client.close()
    stored = httpx.get(f"{url}/api/training/sessions/{session_id}").json()["message_count"]
    rate = points / elapsed
    print(
        f"one engine, flat out: {points} points delivered and acknowledged in {elapsed:.2f} s = {rate:,.0f} points/s "
        f"(stored: {stored - 2} points + 2 status changes)"
    )
    return rate


def measure(calls: int) -> dict[str, object]:
    with server_process() as server:
        url = server.url
        up = cost(url, calls, "server up")
        rate = throughput(url, calls)
        ceiling = ingest_ceiling(server, 10)["points_per_s"]
    print(
        f"the server's own ingest ceiling in this run (bench/ingest.py, 4 engines): {ceiling:,.0f} points/s; "
        f"one SDK engine reaches {rate / ceiling:.0%} of it"
    )
    down = cost(f"http://127.0.0.1:{free_port()}", calls, "server down")
    target = "met" if up["median_us"] <= 5 and up["p99_us"] <= 50 and down["median_us"] <= 5 else "NOT met"
    print(f"target median <= 5 µs and p99 <= 50 µs: {target}")
    return {"up": up, "down": down, "throughput_points_per_s": rate, "ingest_ceiling_points_per_s": ceiling}


def main() -> None:
    print(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000))


if __name__ == "__main__":
    main()
