"""Ingest figures: concurrent 1,000-point batches and single points, against raw sqlite3 in the same run.

    python bench/ingest.py [BATCHES_PER_ENGINE]

Prints points/s acknowledged (2xx only after commit) by 4 engines posting 1,000-point batches at
once, the p50/p99 acknowledgement latency, the same rows written with raw `sqlite3.executemany`
(the baseline), and requests/s for single points from 8 concurrent clients.
"""

from __future__ import annotations

import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Server, percentile, server_process

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


async def concurrent_batches(url: str, engines: int, batches: int, rounds: int = 3) -> dict[str, Any]:
    """`rounds` timed rounds after a warm-up, each on fresh sessions; points/s is their median."""
    latencies: list[float] = []
    rates: list[float] = []
    posted = 0  # points, the warm-up's included
    bodies = [batch(i * BATCH) for i in range(batches)]
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:

        async def engine(session_id: str, sent: list[bytes], record: bool) -> None:
            for body in sent:
                start = time.perf_counter()
                response = await http.post(
                    f"/api/training/sessions/{session_id}/metrics",
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                response.raise_for_status()
                if record:
                    latencies.append((time.perf_counter() - start) * 1000)

        for round_ in range(rounds + 1):
            ids = []
            for number in range(engines):
                response = await http.post("/api/training/sessions", json={"name": f"bench-{round_}-{number}"})
                ids.append(response.json()["session_id"])
            warm_up = round_ == 0
            sent = bodies[:2] if warm_up else bodies
            posted += engines * len(sent) * BATCH
            start = time.perf_counter()
            await asyncio.gather(*(engine(i, sent, not warm_up) for i in ids))
            if not warm_up:
                rates.append(engines * batches * BATCH / (time.perf_counter() - start))
    return {
        "points_per_s": statistics.median(rates),
        "rounds": rates,
        "points_posted": posted,
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


def raw_sqlite(points: int, rows_per_statement: int = 1) -> float:
    """The same rows with sqlite3, WAL, synchronous=FULL: one message row per point (its data as the server
    stores it) in the same table, 1,000 per transaction, with executemany (the issue's baseline) or, with
    `rows_per_statement` > 1, in INSERTs of that many rows (what the server does since #28). The server also
    keeps a partial type index (which metrics rows skip) and one rollup row per metric per 128 points; both
    are left out."""
    with tempfile.TemporaryDirectory() as directory:
        conn = sqlite3.connect(f"{directory}/raw.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(
            "CREATE TABLE messages (session_pk INT, seq INT, type TEXT, episode INT, ts REAL, received TEXT,"
            " data TEXT, PRIMARY KEY (session_pk, seq)) WITHOUT ROWID"
        )
        data = orjson.dumps(orjson.loads(batch(0))[0]).decode()
        many = "INSERT INTO messages VALUES " + ", ".join(["(?,?,?,?,?,?,?)"] * rows_per_statement)
        start = time.perf_counter()
        for first in range(1, points + 1, BATCH):
            now = time.time()
            received = "2026-11-23T10:04:11.506273Z"
            rows = [(1, seq, "training_metrics", seq, now, received, data) for seq in range(first, first + BATCH)]
            conn.execute("BEGIN")
            if rows_per_statement == 1:
                conn.executemany("INSERT INTO messages VALUES (?,?,?,?,?,?,?)", rows)
            else:
                for i in range(0, BATCH - BATCH % rows_per_statement, rows_per_statement):
                    conn.execute(many, [value for row in rows[i : i + rows_per_statement] for value in row])
                conn.executemany(
                    "INSERT INTO messages VALUES (?,?,?,?,?,?,?)", rows[BATCH - BATCH % rows_per_statement :]
                )
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - start
        conn.close()
    return points / elapsed


def workers_started(url: str) -> None:
    """Returns once one batch is answered, which waits for the ingest worker's imports (about 3 s of CPU
    after /health answers): its start-up is neither ingest's CPU nor competition for the timed rounds."""
    session_id = httpx.post(f"{url}/api/training/sessions", json={"name": "bench-start"}).json()["session_id"]
    path = f"{url}/api/training/sessions/{session_id}/metrics"
    response = httpx.post(path, content=batch(0), headers={"Content-Type": "application/json"}, timeout=60)
    response.raise_for_status()


def measure(server: Server, batches: int) -> dict[str, Any]:
    """Also CPU per 1,000 points acknowledged, for the server, its ingest worker and this client: on
    2 cores their sum bounds what the machine can acknowledge, whatever the overlap."""
    url = server.url
    workers_started(url)
    cpu = (server.cpu_seconds(), server.workers_cpu_seconds(), time.process_time())
    figures: dict[str, Any] = asyncio.run(concurrent_batches(url, 4, batches))
    thousands = figures["points_posted"] / 1000
    for name, before, after in zip(
        ("server", "worker", "client"),
        cpu,
        (server.cpu_seconds(), server.workers_cpu_seconds(), time.process_time()),
        strict=True,
    ):
        figures[f"{name}_cpu_ms_per_1000"] = (after - before) * 1000 / thousands
    figures["baseline_points_per_s"] = statistics.median(raw_sqlite(4 * batches * BATCH) for _ in range(3))
    figures["ratio"] = figures["points_per_s"] / figures["baseline_points_per_s"]
    figures["multirow_points_per_s"] = statistics.median(raw_sqlite(4 * batches * BATCH, 256) for _ in range(3))
    figures["multirow_ratio"] = figures["points_per_s"] / figures["multirow_points_per_s"]
    figures["single_point_requests_per_s"] = asyncio.run(single_points(url, 8, 250))
    return figures


def run(batches: int) -> dict[str, Any]:
    with server_process() as server:
        figures = measure(server, batches)
    rounds = ", ".join(f"{rate:,.0f}" for rate in figures["rounds"])
    print(
        f"4 engines x {batches} batches of {BATCH} points: {figures['points_per_s']:,.0f} points/s acknowledged "
        f"(median of {rounds}), ack latency p50 {figures['p50_ms']:.1f} ms p99 {figures['p99_ms']:.1f} ms"
    )
    print(
        f"raw sqlite3.executemany of the same rows: {figures['baseline_points_per_s']:,.0f} points/s; "
        f"ratio {figures['ratio']:.2f} (target >= 0.6); in INSERTs of 256 rows, as the server writes them: "
        f"{figures['multirow_points_per_s']:,.0f} points/s, ratio {figures['multirow_ratio']:.2f}"
    )
    print(
        f"CPU per 1,000 points: server {figures['server_cpu_ms_per_1000']:.1f} ms, ingest worker "
        f"{figures['worker_cpu_ms_per_1000']:.1f} ms, "
        f"the 4 engines (this process) {figures['client_cpu_ms_per_1000']:.1f} ms"
    )
    print(f"single points, 8 concurrent clients: {figures['single_point_requests_per_s']:,.0f} requests/s")
    return figures


def main() -> None:
    run(int(sys.argv[1]) if len(sys.argv) > 1 else 60)


if __name__ == "__main__":
    main()
