"""Ingest figures: concurrent 1,000-point batches and single points, against raw sqlite3 in the same run.

    python bench/ingest.py [BATCHES_PER_ENGINE]

Prints points/s acknowledged (2xx only after commit) by 4 engines posting 1,000-point batches at
once, the p50/p99 acknowledgement latency, the same rows written with raw `sqlite3.executemany`
(the baseline), and requests/s for single points from 8 concurrent clients.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile, server_process

BATCH = 1000


def batch(start: int) -> bytes:
    now = time.time()
    return orjson.dumps(
        [
            {
                "timestamp": now,
                "episode": start + i,
                "current_reward": 1.5,
                "episode_length": 200,
                "epsilon": 0.1,
                "loss_value": 0.25,
            }
            for i in range(BATCH)
        ]
    )


async def concurrent_batches(url: str, engines: int, batches: int) -> dict[str, float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        ids = []
        for engine in range(engines):
            response = await http.post("/api/training/sessions", json={"name": f"bench-{engine}"})
            ids.append(response.json()["session_id"])
        bodies = [batch(i * BATCH) for i in range(batches)]

        async def engine(session_id: str) -> None:
            for body in bodies:
                start = time.perf_counter()
                response = await http.post(
                    f"/api/training/sessions/{session_id}/metrics",
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                response.raise_for_status()
                latencies.append((time.perf_counter() - start) * 1000)

        start = time.perf_counter()
        await asyncio.gather(*(engine(session_id) for session_id in ids))
        elapsed = time.perf_counter() - start
    points = engines * batches * BATCH
    return {
        "points_per_s": points / elapsed,
        "p50_ms": percentile(latencies, 0.5),
        "p99_ms": percentile(latencies, 0.99),
    }


async def single_points(url: str, clients: int, requests: int) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        session_id = (await http.post("/api/training/sessions", json={"name": "bench-single"})).json()["session_id"]

        async def client(offset: int) -> None:
            for i in range(requests):
                response = await http.post(
                    f"/api/training/sessions/{session_id}/metrics", json={"episode": offset + i, "current_reward": 1.0}
                )
                response.raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(client(c * requests) for c in range(clients)))
        return clients * requests / (time.perf_counter() - start)


def raw_sqlite(points: int) -> float:
    """The same rows (messages + one series row per value) with sqlite3.executemany, WAL, synchronous=FULL."""
    with tempfile.TemporaryDirectory() as directory:
        conn = sqlite3.connect(f"{directory}/raw.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(
            "CREATE TABLE messages (session_pk INT, seq INT, type TEXT, episode INT, ts REAL, frame TEXT,"
            " PRIMARY KEY (session_pk, seq)) WITHOUT ROWID"
        )
        conn.execute(
            "CREATE TABLE series (session_pk INT, metric TEXT, seq INT, episode INT, ts REAL, value REAL,"
            " PRIMARY KEY (session_pk, metric, seq)) WITHOUT ROWID"
        )
        frame = '{"type":"training_metrics","session_id":"x","seq":1,"data":{"episode":1,"current_reward":1.5}}'
        metrics = ("current_reward", "episode_length", "epsilon", "loss_value")
        start = time.perf_counter()
        for first in range(0, points, BATCH):
            now = time.time()
            rows = [(1, seq, "training_metrics", seq, now, frame) for seq in range(first, first + BATCH)]
            series = [(1, m, seq, seq, now, 1.0) for seq in range(first, first + BATCH) for m in metrics]
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?)", rows)
            conn.executemany("INSERT INTO series VALUES (?,?,?,?,?,?)", series)
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
    return points / elapsed


def measure(url: str, batches: int) -> dict[str, float]:
    figures = asyncio.run(concurrent_batches(url, 4, batches))
    figures["baseline_points_per_s"] = raw_sqlite(4 * batches * BATCH)
    figures["ratio"] = figures["points_per_s"] / figures["baseline_points_per_s"]
    figures["single_point_requests_per_s"] = asyncio.run(single_points(url, 8, 250))
    return figures


def run(batches: int) -> dict[str, float]:
    with server_process() as server:
        figures = measure(server.url, batches)
    print(
        f"4 engines x {batches} batches of {BATCH} points: {figures['points_per_s']:,.0f} points/s acknowledged, "
        f"ack latency p50 {figures['p50_ms']:.1f} ms p99 {figures['p99_ms']:.1f} ms"
    )
    print(
        f"raw sqlite3.executemany of the same rows: {figures['baseline_points_per_s']:,.0f} points/s; "
        f"ratio {figures['ratio']:.2f} (target >= 0.35, and >= 100,000 points/s)"
    )
    print(f"single points, 8 concurrent clients: {figures['single_point_requests_per_s']:,.0f} requests/s")
    return figures


def main() -> None:
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 25)


if __name__ == "__main__":
    main()
