"""Fan-out figures: deliveries/s to N spectators against a bare `websockets` broadcast() server, same run.

    python bench/fanout.py SPECTATORS [FRAMES]
    python bench/fanout.py SPECTATORS --rate POINTS_PER_S [SECONDS]   # latency at an offered load

Spectators run in separate processes (bench/spectators.py) so that the server's CPU is its own.
Ours: points pushed over REST (batches of 100), one session. Printed: deliveries/s for both, their
ratio, server CPU µs per delivery, and push-to-spectator latency p50/p99.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Server, cpu_seconds, free_port, server_process

HERE = Path(__file__).resolve().parent
PROCESSES = 4


@contextlib.contextmanager
def spectator_processes(
    ws_url: str, spectators: int, expected: int, seconds: float, connects_per_s: float = 0.0
) -> Iterator[list[Any]]:
    """bench/spectators.py in PROCESSES processes, all connected (and joined) when this yields; with
    `connects_per_s`, their connects are paced to that rate in all, else they all connect at once."""
    share = [spectators // PROCESSES + (1 if i < spectators % PROCESSES else 0) for i in range(PROCESSES)]
    pace = str(connects_per_s / PROCESSES)
    processes = [
        subprocess.Popen(
            [sys.executable, str(HERE / "spectators.py"), ws_url, str(n), str(expected), str(seconds), pace],
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in share
        if n
    ]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline().strip() == "READY"
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()
            if process.stdout:
                process.stdout.close()


def collect(processes: list[Any]) -> dict[str, float]:
    results = [orjson.loads(process.stdout.readline()) for process in processes]
    received = sum(r["received"] for r in results)
    span = max(r["last"] for r in results) - min(r["first"] for r in results)
    return {
        "deliveries_per_s": received / span if span > 0 else 0.0,
        "received": received,
        "p50_ms": max(r["p50_ms"] for r in results),
        "p99_ms": max(r["p99_ms"] for r in results),
        "complete": all(r["complete"] for r in results),
        "client_cpu_us_per_delivery": sum(r.get("cpu_s", 0) for r in results) * 1e6 / max(1, received),
    }


def baseline(spectators: int, frames: int, rate: float | None = None, connects_per_s: float = 0.0) -> dict[str, float]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(HERE / "baselines" / "ws_broadcast.py"), str(port), str(frames)]
        + ([str(rate)] if rate else []),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "LISTENING"
    try:
        with spectator_processes(f"ws://127.0.0.1:{port}/", spectators, frames, 120, connects_per_s) as processes:
            assert server.stdin is not None
            cpu = cpu_seconds(server.pid)
            server.stdin.write("go\n")
            server.stdin.flush()
            figures = collect(processes)
            cpu = cpu_seconds(server.pid) - cpu
            figures["server_cpu_us_per_delivery"] = cpu * 1e6 / max(1, figures["received"])
            return figures
    finally:
        server.kill()
        server.wait()
        for stream in (server.stdin, server.stdout):
            if stream:
                stream.close()


def push(url: str, session_id: str, points: int, rate: float | None) -> None:
    batch = 1 if rate else 100
    key = os.environ.get("TMS_API_KEY")  # a server with auth on (bench/auth.py)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=url, timeout=60, headers=headers) as http:
        start = time.perf_counter()
        for first in range(0, points, batch):
            body = [
                {"episode": e, "current_reward": 1.5, "epsilon": 0.1, "loss_value": 0.25, "custom": {"t": time.time()}}
                for e in range(first, min(points, first + batch))
            ]
            http.post(
                f"/api/training/sessions/{session_id}/metrics",
                content=orjson.dumps(body),
                headers={"Content-Type": "application/json"},
            ).raise_for_status()
            if rate:
                delay = start + (first + batch) / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)


def ours(server: Server, spectators: int, points: int, rate: float | None = None) -> dict[str, float]:
    key = os.environ.get("TMS_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    created = httpx.post(f"{server.url}/api/training/sessions", json={"name": "fanout"}, headers=headers)
    session_id = created.json()["session_id"]
    ws_url = server.url.replace("http://", "ws://") + f"/ws/{session_id}?types=training_metrics"
    with spectator_processes(ws_url, spectators, points, 300) as processes:
        cpu = server.cpu_seconds()
        push(server.url, session_id, points, rate)
        figures = collect(processes)
        figures["server_cpu_us_per_delivery"] = (server.cpu_seconds() - cpu) * 1e6 / max(1, figures["received"])
    return figures


def throughput(spectators: int, frames: int) -> dict[str, float]:
    base = baseline(spectators, frames)
    env = {"MAX_CONNECTIONS_PER_SESSION": str(spectators + 10), "TMS_MAX_BACKLOG": str(frames)}
    with server_process(env) as server:
        mine = ours(server, spectators, frames)
    ratio = mine["deliveries_per_s"] / base["deliveries_per_s"]
    print(
        f"fan-out to {spectators} spectators, {frames} frames: ours {mine['deliveries_per_s']:,.0f} deliveries/s "
        f"(server CPU {mine['server_cpu_us_per_delivery']:.1f} µs/delivery, latency p50 {mine['p50_ms']:.1f} ms "
        f"p99 {mine['p99_ms']:.1f} ms); bare websockets broadcast() {base['deliveries_per_s']:,.0f}/s; "
        f"ratio {ratio:.2f} (target >= 0.7)"
    )
    return {"spectators": spectators, "ours": mine, "baseline": base, "ratio": ratio}


def latency(spectators: int, rate: float, seconds: float) -> dict[str, Any]:
    """Ours (each point pushed over REST, committed, then fanned out) and, in the same run, the bare
    `websockets` server broadcast()ing the same frames at the same rate (no HTTP, no database)."""
    points = int(rate * seconds)
    base = baseline(spectators, points, rate)
    env = {"MAX_CONNECTIONS_PER_SESSION": str(spectators + 10)}
    with server_process(env) as server:
        mine = ours(server, spectators, points, rate)
    offered = rate * spectators
    print(
        f"latency at {offered:,.0f} deliveries/s offered ({rate:g} points/s to {spectators} spectators): "
        f"p50 {mine['p50_ms']:.1f} ms, p99 {mine['p99_ms']:.1f} ms (target p99 <= 50 ms); "
        f"server CPU {mine['server_cpu_us_per_delivery']:.1f} µs/delivery "
        f"(spectator clients {mine['client_cpu_us_per_delivery']:.1f}); "
        f"bare websockets broadcast(): p50 {base['p50_ms']:.1f} ms, p99 {base['p99_ms']:.1f} ms, "
        f"server CPU {base['server_cpu_us_per_delivery']:.1f} µs/delivery"
    )
    return {"offered_deliveries_per_s": offered, **mine, "baseline": base}


def main() -> None:
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    spectators = int(sys.argv[1])
    if "--rate" in sys.argv:
        index = sys.argv.index("--rate")
        rate = float(sys.argv[index + 1])
        seconds = float(sys.argv[index + 2]) if len(sys.argv) > index + 2 else 10.0
        print(latency(spectators, rate, seconds))
    else:
        frames = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
        print(throughput(spectators, frames))


if __name__ == "__main__":
    main()
