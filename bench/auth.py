"""The price of access control (issue #18): the same server with `enable_auth` off and on, in one run.

    python bench/auth.py [--quick]

With auth on every request carries an API key (`Authorization: Bearer`), every spectator connects with one;
the key is found by its SHA-256 in the store and then taken from memory for 2 s. Printed: single-point
requests/s (the worst case: one check per point), 1,000-point batches (points/s), and fan-out to 100
spectators (deliveries/s), each as auth on / auth off. Target: within 5 %.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Server, server_process
from bench.fanout import ours
from bot.store.engine import create_engines
from bot.store.keys import create_key
from bot.store.schema import prepare_schema

QUICK = "--quick" in sys.argv
ROUNDS = 1 if QUICK else 3


def admin_key(database: Path) -> str:
    writer, reader = create_engines(f"sqlite:///{database}")
    try:
        prepare_schema(writer)
        with writer.begin() as conn:
            return create_key(conn, ["admin"], None, "bench")[1]
    finally:
        writer.dispose()
        reader.dispose()


async def push(http: httpx.AsyncClient, session_id: str, body: bytes) -> None:
    headers = {"Content-Type": "application/json"}
    (await http.post(f"/api/training/sessions/{session_id}/metrics", content=body, headers=headers)).raise_for_status()


async def single_points(url: str, headers: dict[str, str], clients: int = 4, requests: int = 500) -> float:
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as http:
        session_id = (await http.post("/api/training/sessions", json={"name": "single"})).json()["session_id"]

        async def client(offset: int) -> None:
            for i in range(requests):
                await push(http, session_id, orjson.dumps({"episode": offset + i, "current_reward": 1.0}))

        start = time.perf_counter()
        await asyncio.gather(*(client(c * requests) for c in range(clients)))
        return clients * requests / (time.perf_counter() - start)


async def batches(url: str, headers: dict[str, str], engines: int = 4, count: int = 20) -> float:
    body = orjson.dumps([{"episode": i, "current_reward": 1.5, "epsilon": 0.1} for i in range(1000)])
    async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as http:
        ids = [
            (await http.post("/api/training/sessions", json={"name": f"batches-{n}"})).json()["session_id"]
            for n in range(engines)
        ]

        async def engine(session_id: str) -> None:
            for _ in range(count):
                await push(http, session_id, body)

        start = time.perf_counter()
        await asyncio.gather(*(engine(i) for i in ids))
        return engines * count * 1000 / (time.perf_counter() - start)


def measure(auth: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as directory:
        database = Path(directory) / "auth.db"
        key = admin_key(database) if auth else None
        env = {"TMS_ENABLE_AUTH": "1" if auth else "0", "MAX_CONNECTIONS_PER_SESSION": "200"}
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if key:
            os.environ["TMS_API_KEY"] = key  # for bench/fanout.py's pusher and spectator processes
        try:
            with server_process(env, database=database) as server:
                return run(server, headers)
        finally:
            os.environ.pop("TMS_API_KEY", None)


def run(server: Server, headers: dict[str, str]) -> dict[str, float]:
    figures: dict[str, Any] = {
        "single_points_per_s": asyncio.run(single_points(server.url, headers)),
        "batch_points_per_s": asyncio.run(batches(server.url, headers)),
    }
    figures["deliveries_per_s"] = ours(server, 100, 10_000 if QUICK else 20_000)["deliveries_per_s"]
    return figures


def main() -> None:
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(ROUNDS):
        for auth in (False, True):  # interleaved, so that a slow moment of the machine hits both
            results[auth].append(measure(auth))
    print(f"{'figure':28} {'auth off':>12} {'auth on':>12} {'on / off':>9}")
    for name in ("single_points_per_s", "batch_points_per_s", "deliveries_per_s"):
        off = statistics.median(r[name] for r in results[False])
        on = statistics.median(r[name] for r in results[True])
        print(f"{name:28} {off:12,.0f} {on:12,.0f} {on / off:9.3f}")


if __name__ == "__main__":
    main()
