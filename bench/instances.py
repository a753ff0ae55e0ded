"""Several instances on PostgreSQL and Redis (issue #15), each figure against its baseline in the same run:

1. fan-out: deliveries/s to 200 spectators split over two instances sharing Redis, against one instance
   alone (the in-memory broker, the same PostgreSQL); and at 500 points/s to 100 spectators, the p99
   push-to-spectator latency of both (the difference is what the Redis hop adds);
2. ingest: points/s acknowledged on PostgreSQL (synchronous_commit=on) against SQLite (synchronous=FULL);
3. a reconnect storm: 2,000 spectators reconnecting with `since` at once to one instance: seconds until all
   have resumed, 1013 refusals, and the p99 latency of a live push to another spectator meanwhile.

    python bench/instances.py [--quick]

Needs PostgreSQL and Redis on 127.0.0.1 (TEST_DATABASE_URL, TEST_REDIS_URL as for the tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Server, cpu_seconds, free_port, percentile, server_process
from bench.fanout import collect, push, spectator_processes
from bench.ingest import BATCH, batch, concurrent_batches, workers_started

HERE = Path(__file__).resolve().parent
POSTGRES = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


@contextlib.contextmanager
def postgres_schema() -> Iterator[str]:
    schema = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
    try:
        yield f"{POSTGRES}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def env(database: str, redis: str | None, spectators: int) -> dict[str, str]:
    values = {"DATABASE_URL": database, "MAX_CONNECTIONS_PER_SESSION": str(spectators + 10)}
    return {**values, "REDIS_URL": redis} if redis else values


def fan_out(instances: list[Server], spectators: int, points: int, rate: float | None) -> dict[str, float]:
    session_id = httpx.post(f"{instances[0].url}/api/training/sessions", json={"name": "fan"}).json()["session_id"]
    urls = ",".join(s.url.replace("http://", "ws://") + f"/ws/{session_id}?types=training_metrics" for s in instances)
    with spectator_processes(urls, spectators, points, 300) as processes:
        push(instances[0].url, session_id, points, rate)
        return collect(processes)


@contextlib.contextmanager
def servers(count: int, database: str, redis: str | None, spectators: int) -> Iterator[list[Server]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(server_process(env(database, redis, spectators))) for _ in range(count)]


def fan_out_figures(quick: bool) -> dict[str, Any]:
    spectators, points = 200, 1000 if quick else 3000
    rate, seconds = 500.0, 4 if quick else 10
    figures: dict[str, Any] = {}
    for name, count, redis in (("one instance", 1, None), ("two instances + Redis", 2, REDIS)):
        with postgres_schema() as database, servers(count, database, redis, spectators) as instances:
            throughput = fan_out(instances, spectators, points, None)
            latency = fan_out(instances, 100, int(rate * seconds), rate)
        figures[name] = {"deliveries_per_s": throughput["deliveries_per_s"], "p99_ms": latency["p99_ms"]}
        figures[name]["complete"] = throughput["complete"] and latency["complete"]
        print(
            f"{name}: {throughput['deliveries_per_s']:,.0f} deliveries/s to {spectators} spectators; "
            f"at {rate:g} points/s to 100 spectators p50 {latency['p50_ms']:.1f} ms p99 {latency['p99_ms']:.1f} ms"
        )
    one, two = figures["one instance"], figures["two instances + Redis"]
    print(
        f"two instances sharing Redis: {two['deliveries_per_s'] / one['deliveries_per_s']:.2f}x the deliveries/s of "
        f"one alone; the Redis hop adds {two['p99_ms'] - one['p99_ms']:+.1f} ms to p99"
    )
    return figures


def backends_cpu(database: str) -> dict[int, float]:
    """CPU so far of each client backend of `database` but this query's: the server's connections (they live
    as long as it does) where nothing else uses that database. PostgreSQL's own processes (WAL writer,
    checkpointer) are left out; /proc must show PostgreSQL's processes (the same machine, no container)."""
    with psycopg.connect(database) as conn:
        pids = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            " AND datname = current_database()"
        ).fetchall()
    used = {}
    for (pid,) in pids:
        with contextlib.suppress(FileNotFoundError):  # ended meanwhile
            used[pid] = cpu_seconds(pid)
    return used


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two readings by the backends in both (one that ended or began between them is left
    out rather than counted whole)."""
    return sum(after[pid] - before[pid] for pid in before.keys() & after.keys())


def raw_copy(database: str, points: int) -> tuple[float, float]:
    """The baseline: the same message rows (bench/ingest.py's raw_sqlite) with COPY from one psycopg
    connection, 1,000 per transaction, synchronous_commit=on; the table has the server's primary key.
    Returns points/s and its PostgreSQL backend's CPU ms per 1,000 points."""
    data = orjson.dumps(orjson.loads(batch(0))[0]).decode()
    with psycopg.connect(database) as conn:
        conn.execute("DROP TABLE IF EXISTS raw_messages")
        conn.execute(
            "CREATE TABLE raw_messages (session_pk INT, seq BIGINT, type VARCHAR(32), episode BIGINT,"
            " ts DOUBLE PRECISION, received VARCHAR(32), data TEXT, PRIMARY KEY (session_pk, seq))"
        )
        conn.commit()
        backend = conn.info.backend_pid
        cpu = cpu_seconds(backend)
        start = time.perf_counter()
        for first in range(1, points + 1, BATCH):
            now = time.time()
            with conn.cursor().copy("COPY raw_messages FROM STDIN") as copy:
                for seq in range(first, first + BATCH):
                    copy.write_row((1, seq, "training_metrics", seq, now, "2026-11-23T10:04:11.506273Z", data))
            conn.commit()
        elapsed = time.perf_counter() - start
        cpu = cpu_seconds(backend) - cpu
    return points / elapsed, cpu * 1e6 / points


def ingest_figures(quick: bool) -> dict[str, float]:
    """PostgreSQL against SQLite (each a server) and against raw COPY of the same rows, in the same run; and
    the CPU per 1,000 points of each side: PostgreSQL's own runs on the same 2 cores as the server here."""
    batches = 10 if quick else 30
    figures = {}
    with postgres_schema() as database, server_process({"DATABASE_URL": database}) as server:
        workers_started(server.url)
        before = (server.cpu_seconds(), server.workers_cpu_seconds(), backends_cpu(database))
        run = asyncio.run(concurrent_batches(server.url, 4, batches))
        after = (server.cpu_seconds(), server.workers_cpu_seconds(), backends_cpu(database))
        figures["postgresql"] = run["points_per_s"]
        used = (after[0] - before[0], after[1] - before[1], cpu_between(before[2], after[2]))
        for name, seconds in zip(("server", "worker", "postgres"), used, strict=True):
            figures[f"{name}_cpu_ms_per_1000"] = seconds * 1e6 / run["points_posted"]
    with server_process() as server:
        workers_started(server.url)
        figures["sqlite"] = asyncio.run(concurrent_batches(server.url, 4, batches))["points_per_s"]
    with postgres_schema() as database:
        copies = [raw_copy(database, 4 * batches * BATCH) for _ in range(3)]
        figures["raw_copy"] = statistics.median(rate for rate, _ in copies)
        figures["raw_copy_postgres_cpu_ms_per_1000"] = statistics.median(cpu for _, cpu in copies)
    figures["vs_sqlite"] = figures["postgresql"] / figures["sqlite"]
    figures["vs_raw_copy"] = figures["postgresql"] / figures["raw_copy"]
    print(
        f"ingest, 4 engines x {batches} batches of 1,000 points: PostgreSQL (synchronous_commit=on) "
        f"{figures['postgresql']:,.0f} points/s, SQLite (synchronous=FULL) {figures['sqlite']:,.0f} points/s "
        f"({figures['vs_sqlite']:.2f}x, target >= 0.8); raw COPY of the same rows from one psycopg connection "
        f"{figures['raw_copy']:,.0f} points/s ({figures['vs_raw_copy']:.2f}x, target >= 0.5)"
    )
    print(
        f"CPU per 1,000 points on PostgreSQL: server {figures['server_cpu_ms_per_1000']:.1f} ms, ingest worker "
        f"{figures['worker_cpu_ms_per_1000']:.1f} ms, PostgreSQL's backends {figures['postgres_cpu_ms_per_1000']:.1f} "
        f"ms; raw COPY's backend {figures['raw_copy_postgres_cpu_ms_per_1000']:.1f} ms (message rows only: no "
        "rollups, no session row, no type index)"
    )
    return figures


async def live_latency(server: Server, session_id: str, stop: threading.Event, shared: list[list[float]]) -> None:
    """Push one point every 20 ms; a spectator that was there before the storm times each one's arrival."""
    ws_url = server.url.replace("http://", "ws://") + f"/ws/{session_id}?types=training_metrics&since=0"
    latencies: list[float] = []
    async with websockets.connect(ws_url, compression=None, max_size=None) as ws, httpx.AsyncClient() as http:
        async for raw in ws:  # read the backlog first
            if orjson.loads(raw).get("seq") == 10_000:
                break

        async def reader() -> None:
            async for raw in ws:
                data = orjson.loads(raw)["data"]
                if "t" in data.get("custom", {}):
                    latencies.append((time.time() - data["custom"]["t"]) * 1000)

        task = asyncio.create_task(reader())
        shared.append(latencies)
        episode = 10_000
        while not stop.is_set():
            episode += 1
            body = {"episode": episode, "custom": {"t": time.time()}}
            await http.post(f"{server.url}/api/training/sessions/{session_id}/metrics", json=body)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        task.cancel()


@contextlib.contextmanager
def storm_clients(ws_url: str, count: int, last_seq: int) -> Iterator[subprocess.Popen[str]]:
    """bench/storm_clients.py, started: write a line to its stdin to storm, read its figures."""
    clients = subprocess.Popen(
        [sys.executable, str(HERE / "storm_clients.py"), ws_url, str(count), str(last_seq)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert clients.stdin and clients.stdout and clients.stdout.readline().strip() == "READY"
        yield clients
        clients.wait(30)
    finally:
        if clients.poll() is None:
            clients.kill()
            clients.wait()


def storm(clients: subprocess.Popen[str], last_seq: int | None = None) -> dict[str, Any]:
    """Storm now; `last_seq` is the session's at this moment (the clients resume from up to 20 before it)."""
    assert clients.stdin and clients.stdout
    clients.stdin.write(f"{last_seq or 'go'}\n")
    clients.stdin.flush()
    result: dict[str, Any] = orjson.loads(clients.stdout.readline())
    return result


def bare_storm(count: int) -> dict[str, Any]:
    """The baseline: the same clients, at once, against a bare websockets server that only greets them."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "baselines" / "ws_greeter.py"), str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "LISTENING"
        with storm_clients(f"ws://127.0.0.1:{port}/", count, 0) as clients:
            return storm(clients)
    finally:
        server.kill()
        server.wait()


STORMS = 3  # each side's figure is the median of this many storms: one varied by a third from run to run
# The quiet baseline of the live push's p99: the pusher's first WARM_UP pushes are left out, then it times
# QUIET_SECONDS of pushes, of which the last are kept, as many as the storms had: both p99s stand on one count.
WARM_UP = 50
QUIET_SECONDS = 10.0


def storm_figures(quick: bool) -> dict[str, Any]:
    count = 500 if quick else 2000
    baseline = statistics.median(bare_storm(count)["seconds"] for _ in range(STORMS))
    with postgres_schema() as database, server_process(env(database, None, count + 10)) as server:
        session_id = httpx.post(f"{server.url}/api/training/sessions", json={"name": "storm"}).json()["session_id"]
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for first in range(0, 10_000, 1000):
                body = [{"episode": e, "current_reward": 1.0} for e in range(first, first + 1000)]
                http.post(f"/api/training/sessions/{session_id}/metrics", json=body).raise_for_status()
        ws_url = server.url.replace("http://", "ws://") + f"/ws/{session_id}"
        stop = threading.Event()
        shared: list[list[float]] = []  # the pusher's latency list, read while it grows
        pusher = threading.Thread(target=lambda: asyncio.run(live_latency(server, session_id, stop, shared)))
        pusher.start()
        deadline = time.monotonic() + 60
        while (not shared or len(shared[0]) < WARM_UP) and time.monotonic() < deadline:
            time.sleep(0.1)  # the pusher's spectator reads the backlog, then its first pushes settle in
        if not shared:
            raise RuntimeError("the pusher's spectator did not read the backlog within 60 s")
        latencies = shared[0]
        settled = len(latencies)
        time.sleep(QUIET_SECONDS)  # the baseline: live pushes on the quiet server
        quiet = latencies[settled:]
        storms, during = [], []
        for _ in range(STORMS):
            with storm_clients(ws_url, count, 10_000) as clients:
                start = len(latencies)
                # Each storm resumes from just before the session's last seq then: the live push moves it on.
                session = httpx.get(f"{server.url}/api/training/sessions/{session_id}").json()
                storms.append(storm(clients, session["last_seq"]))
                during += latencies[start:]  # until every spectator resumed, and a little after
            time.sleep(1.0)  # the last storm's connections are closed
        stop.set()
        pusher.join()
    result = sorted(storms, key=lambda figures: figures["seconds"])[len(storms) // 2]
    result["gaps"] = sum(figures["gaps"] for figures in storms)
    result["runs_s"] = [figures["seconds"] for figures in storms]
    result["live_p99_ms"] = percentile(during, 0.99) if during else float("nan")
    before = quiet[-len(during) :] if during else quiet
    result["live_p99_before_ms"] = percentile(before, 0.99) if before else float("nan")
    result["live_pushes"] = {"before": len(before), "during": len(during)}
    result["baseline_seconds"] = baseline
    result["ratio"] = result["seconds"] / baseline
    runs = ", ".join(f"{seconds:.2f}" for seconds in result["runs_s"])
    print(
        f"reconnect storm: {count} spectators with since at once, {STORMS} times: all resumed in "
        f"{result['seconds']:.2f} s (median of {runs}; half in {result['half_resumed_s']:.2f} s, 99 % in "
        f"{result['p99_resumed_s']:.2f} s; {result['refusals']} refusals with 1013, {result['gaps']} gaps in all; "
        f"all closed in {result['closed_s']:.2f} s); a bare websockets server accepts and greets them in "
        f"{baseline:.2f} s (median of {STORMS}): ratio {result['ratio']:.2f} (target <= 1.5); a live push's p99 "
        f"during the storms {result['live_p99_ms']:.1f} ms over {len(during)} pushes (before them "
        f"{result['live_p99_before_ms']:.1f} ms over {len(before)}, target <= 2x)"
    )
    return result


def main() -> None:
    quick = "--quick" in sys.argv
    figures = {"fan_out": fan_out_figures(quick), "ingest": ingest_figures(quick), "storm": storm_figures(quick)}
    print(orjson.dumps(figures).decode())


if __name__ == "__main__":
    main()
