"""Spectators joining a session with large graphs, against the spectators already watching it: their p99
push-to-receive latency with joins going on, and without, in the same run (target: joins add <= 5 ms).

    python bench/joins.py [GRAPH_POINTS]

The session holds 4 graphs of GRAPH_POINTS points (default 100,000, the most a series keeps), so every
join's snapshot carries them all; a joiner process connects a new spectator every half second, reads
its snapshot and leaves, while 50 spectators (another process) receive 50 points/s for 10 s.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import server_process
from bench.fanout import collect, push, spectator_processes

SPECTATORS = 50
RATE = 50.0
SECONDS = 10.0
GRAPHS = 4

JOINER = textwrap.dedent("""
    import sys, time
    from websockets.sync.client import connect
    url, seconds = sys.argv[1], float(sys.argv[2])
    joins, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        options = {"max_size": None, "max_queue": None, "compression": None, "open_timeout": 30}
        with connect(url + "?types=training_status", **options) as ws:
            while '"snapshot"' not in ws.recv(30)[:40]:
                pass
        joins += 1
        time.sleep(0.5)
    print(joins, flush=True)
""")


def fill_graphs(url: str, session_id: str, points: int) -> None:
    with httpx.Client(base_url=url, timeout=120) as http:
        for graph in range(GRAPHS):
            for start in range(0, points, 10_000):
                series = [{"value": float(v % 1000)} for v in range(start, min(points, start + 10_000))]
                body = {"graph_id": f"g{graph}", "max_points": 100_000, "data_points": {"reward": series}}
                http.post(
                    f"/api/training/sessions/{session_id}/graph_update",
                    content=orjson.dumps(body),
                    headers={"Content-Type": "application/json"},
                ).raise_for_status()


def watch(server_url: str, session_id: str, joining: bool) -> dict[str, float]:
    ws_url = server_url.replace("http://", "ws://") + f"/ws/{session_id}"
    points = int(RATE * SECONDS)
    joiner = None
    with spectator_processes(ws_url + "?types=training_metrics", SPECTATORS, points, 120) as processes:
        if joining:
            joiner = subprocess.Popen(
                [sys.executable, "-c", JOINER, ws_url, str(SECONDS)], stdout=subprocess.PIPE, text=True
            )
        push(server_url, session_id, points, RATE)
        figures = collect(processes)
    if joiner is not None:
        assert joiner.stdout is not None
        figures["joins"] = float(joiner.stdout.readline() or 0)
        joiner.wait()
        joiner.stdout.close()
    return figures


def measure(graph_points: int = 100_000) -> dict[str, float]:
    env = {"MAX_CONNECTIONS_PER_SESSION": str(SPECTATORS + 10)}
    with server_process(env) as server:
        session_id = httpx.post(f"{server.url}/api/training/sessions", json={"name": "joins"}).json()["session_id"]
        start = time.perf_counter()
        fill_graphs(server.url, session_id, graph_points)
        print(f"{GRAPHS} graphs of {graph_points:,} points stored in {time.perf_counter() - start:.1f} s")
        rounds = [watch(server.url, session_id, joining) for joining in (False, True, False, True)]
    quiet = sorted(r["p99_ms"] for r in rounds[0::2])
    busy = sorted(r["p99_ms"] for r in rounds[1::2])
    joins = sum(r.get("joins", 0) for r in rounds)
    added = min(busy) - min(quiet)
    print(
        f"{SPECTATORS} spectators at {RATE:g} points/s: p99 without joins {', '.join(f'{v:.1f}' for v in quiet)} ms; "
        f"with a join every 0.5 s ({joins:.0f} joins to a session of {GRAPHS * graph_points:,} graph points) "
        f"{', '.join(f'{v:.1f}' for v in busy)} ms; added (best of each) {added:.1f} ms (target <= 5 ms)"
    )
    return {"quiet_p99_ms": min(quiet), "joining_p99_ms": min(busy), "added_ms": added, "joins": joins}


def main() -> None:
    measure(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)


if __name__ == "__main__":
    main()
