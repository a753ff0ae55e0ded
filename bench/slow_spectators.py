"""Slow spectators cost nothing: 100 spectators keeping up, with and without 10 that stop reading.

    python bench/slow_spectators.py [POINTS]

Prints, for both runs in this process: ingest points/s acknowledged (POINTS pushed as fast as one
client can, in batches of 100), the fast spectators' p99 push-to-receive latency (then, a point at a
time at RATE points/s: a latency taken at saturation would measure the queue, not the spectators), and
the server's RSS; then the ratios (target: within 10 %). The stalled ones have small receive buffers,
and enough is pushed (5 MB to each) to get past what the kernel buffers for them, so that they go
through the whole slow path within the run: queue, drops, `lag`, and the close (none left at the end).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import server_process
from bench.fanout import HERE, collect, push, spectator_processes

RATE = 100  # points/s for the latency phase: 10,000 deliveries/s to the 100 fast spectators
LATENCY_SECONDS = 10


def run(points: int, stalled: int) -> dict[str, float]:
    env = {"MAX_CONNECTIONS_PER_SESSION": "200", "TMS_SLOW_SPECTATOR_TIMEOUT": "2"}
    with server_process(env) as server:
        session_id = httpx.post(f"{server.url}/api/training/sessions", json={"name": "slow"}).json()["session_id"]
        ws_url = server.url.replace("http://", "ws://") + f"/ws/{session_id}?types=training_metrics"
        staller = None
        if stalled:
            staller = subprocess.Popen(
                [sys.executable, str(HERE / "spectators.py"), ws_url, str(stalled), "stall", "120"],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert staller.stdout is not None and staller.stdout.readline().strip() == "READY"
        try:
            with spectator_processes(ws_url, 100, points, 300) as processes:
                start = time.perf_counter()
                push(server.url, session_id, points, None)
                ingest = points / (time.perf_counter() - start)
                complete = collect(processes)["complete"]
            paced = RATE * LATENCY_SECONDS
            with spectator_processes(ws_url, 100, paced, 300) as processes:
                push(server.url, session_id, paced, RATE)
                figures = collect(processes)
            rss = server.rss_kb() / 1024
            left = httpx.get(f"{server.url}/status").json()["spectators"]["total"]
        finally:
            if staller is not None:
                staller.kill()
                staller.wait()
                if staller.stdout:
                    staller.stdout.close()
    return {
        "ingest_points_per_s": ingest,
        "fast_p99_ms": figures["p99_ms"],
        "rss_mb": rss,
        "complete": complete and figures["complete"],
        "spectators_left": left,
    }


def measure(points: int, rounds: int = 3) -> dict[str, object]:
    """Runs with and without the stalled spectators take turns, `rounds` each, and each figure is the
    median of its runs: this machine's speed drifts within minutes, and turns spread the drift evenly."""
    runs: dict[int, list[dict[str, float]]] = {0: [], 10: []}
    for _ in range(rounds):
        for stalled in runs:
            runs[stalled].append(run(points, stalled))
    alone, with_stalled = (_summary(results) for results in runs.values())
    ingest_ratio = with_stalled["ingest_points_per_s"] / alone["ingest_points_per_s"]
    p99_ratio = with_stalled["fast_p99_ms"] / alone["fast_p99_ms"]
    print(
        f"100 fast spectators alone: ingest {alone['ingest_points_per_s']:,.0f} points/s, fast p99 "
        f"{alone['fast_p99_ms']:.1f} ms, RSS {alone['rss_mb']:.0f} MB (medians of {rounds} runs)"
    )
    print(
        f"with 10 stalled: ingest {with_stalled['ingest_points_per_s']:,.0f} points/s, fast p99 "
        f"{with_stalled['fast_p99_ms']:.1f} ms, RSS {with_stalled['rss_mb']:.0f} MB, "
        f"spectators still connected at the end {with_stalled['spectators_left']:.0f}"
    )
    print(f"ratios: ingest {ingest_ratio:.2f}, fast p99 {p99_ratio:.2f} (target within 10 %)")
    return {"alone": alone, "with_stalled": with_stalled, "ingest_ratio": ingest_ratio, "p99_ratio": p99_ratio}


def _summary(results: list[dict[str, float]]) -> dict[str, float]:
    """Medians of the figures; complete only if every run was, and the most spectators any run left."""
    summary = {key: statistics.median(float(result[key]) for result in results) for key in results[0]}
    summary["complete"] = float(all(result["complete"] for result in results))
    summary["spectators_left"] = max(result["spectators_left"] for result in results)
    return summary


def main() -> None:
    print(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 12000))


if __name__ == "__main__":
    main()
