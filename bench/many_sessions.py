"""Many sessions at once: 100 sessions x 10 spectators, every session pushing at the same time.

    python bench/many_sessions.py [SESSIONS] [SPECTATORS_PER_SESSION] [POINTS_PER_SESSION]

Prints total deliveries/s, push-to-spectator latency p50/p99, and the spread of per-session
completion (the slowest session against the median: no session starves another).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile, server_process
from bench.fanout import HERE

PROCESSES = 4


async def push_all(url: str, sessions: list[str], points: int) -> dict[str, float]:
    """Every session pushes `points` in batches of 10 at once; returns when each session's pushes ended."""
    finished: dict[str, float] = {}

    async def one(session_id: str) -> None:
        # A client per session: one httpx pool shared by 100 concurrent requests burns the load
        # generator's CPU (its pool bookkeeping), and the figure would measure the client.
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            for first in range(0, points, 10):
                body = [{"episode": e, "custom": {"t": time.time()}} for e in range(first, min(points, first + 10))]
                response = await http.post(
                    f"/api/training/sessions/{session_id}/metrics",
                    content=orjson.dumps(body),
                    headers={"Content-Type": "application/json"},
                )
                response.raise_for_status()
            finished[session_id] = time.time()

    await asyncio.gather(*(one(s) for s in sessions))
    return finished


def measure(sessions: int, per_session: int, points: int) -> dict[str, float]:
    env = {"MAX_CONNECTIONS_PER_SESSION": str(per_session + 5)}
    with server_process(env) as server:
        ids = [
            httpx.post(f"{server.url}/api/training/sessions", json={"name": f"many-{i}"}).json()["session_id"]
            for i in range(sessions)
        ]
        base = server.url.replace("http://", "ws://")
        groups = [ids[i::PROCESSES] for i in range(PROCESSES)]
        processes = []
        for group in groups:
            urls = ",".join(f"{base}/ws/{s}?types=training_metrics" for s in group)
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(HERE / "spectators.py"),
                        urls,
                        str(per_session * len(group)),
                        str(points),
                        "300",
                    ],
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        try:
            for process in processes:
                assert process.stdout is not None and process.stdout.readline().strip() == "READY"
            start = time.time()
            finished = asyncio.run(push_all(server.url, ids, points))
            results = [orjson.loads(process.stdout.readline()) for process in processes if process.stdout]
        finally:
            for process in processes:
                process.kill()
                process.wait()
                if process.stdout:
                    process.stdout.close()
    received = sum(r["received"] for r in results)
    span = max(r["last"] for r in results) - start
    ends = sorted(t - start for t in finished.values())
    figures = {
        "deliveries_per_s": received / span,
        "received": received,
        "expected": sessions * per_session * points,
        "p50_ms": max(r["p50_ms"] for r in results),
        "p99_ms": max(r["p99_ms"] for r in results),
        "slowest_session_s": ends[-1],
        "median_session_s": percentile(ends, 0.5),
    }
    print(
        f"{sessions} sessions x {per_session} spectators, {points} points each, all at once: "
        f"{figures['deliveries_per_s']:,.0f} deliveries/s ({received:,} of {figures['expected']:,}), latency p50 "
        f"{figures['p50_ms']:.0f} ms p99 {figures['p99_ms']:.0f} ms; sessions finished pushing after "
        f"{figures['median_session_s']:.1f} s (median) and {figures['slowest_session_s']:.1f} s (slowest)"
    )
    return figures


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:4]]
    measure(*(args + [100, 10, 200][len(args) :]))
