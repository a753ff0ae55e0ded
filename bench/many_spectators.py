"""Issue #28's 10,000 spectators on one instance: 10 sessions, 1,000 spectators each, every session pushed
1 point a second (so each spectator receives 1 frame a second, 10,000 deliveries a second in all), against
a bare `websockets` server broadcast()ing 1 frame a second to as many clients, in the same run.

    python bench/many_spectators.py [SPECTATORS] [SECONDS] [CONNECTS_PER_S]

Prints: whether every spectator connected and got every frame, the p50 and p99 push-to-spectator latency of
both and the p99s' ratio (target <= 1.2x), the server CPU per delivery of both, and our server's RSS.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import cpu_seconds, server_process
from bench.fanout import baseline, collect, push, spectator_processes

SESSIONS = 10
# Connected at this pace, not all at once: a join costs this server about 3.5 ms of CPU (the bare server a
# fraction of that), so on 2 cores shared with the clients it takes 300-450 joins a second; faster, the
# kernel's listen queue (2,048) overflows and resets connections. The figure is the delivery to 10,000
# connected spectators; a storm of connects is bench/instances.py's.
CONNECTS_PER_S = 250.0


def measure(spectators: int = 10_000, seconds: int = 20, connects_per_s: float = CONNECTS_PER_S) -> dict[str, Any]:
    base = baseline(spectators, seconds, 1.0, connects_per_s)
    env = {
        "MAX_CONNECTIONS_PER_SESSION": str(spectators // SESSIONS + 10),
        "MAX_TOTAL_CONNECTIONS": str(spectators + 100),
    }
    with server_process(env) as server:
        ids = [
            httpx.post(f"{server.url}/api/training/sessions", json={"name": f"many-{i}"}).json()["session_id"]
            for i in range(SESSIONS)
        ]
        ws = server.url.replace("http://", "ws://")
        urls = ",".join(f"{ws}/ws/{session_id}?types=training_metrics" for session_id in ids)
        at_rest = server.rss_kb()
        with spectator_processes(urls, spectators, seconds, seconds + 120, connects_per_s) as processes:
            connected = server.rss_kb()
            pushers = [threading.Thread(target=push, args=(server.url, sid, seconds, 1.0)) for sid in ids]
            start, cpu = time.perf_counter(), cpu_seconds(server.pid)
            for pusher in pushers:
                pusher.start()
            for pusher in pushers:
                pusher.join()
            mine = collect(processes)
            mine["push_seconds"] = time.perf_counter() - start
            mine["server_cpu_us_per_delivery"] = (cpu_seconds(server.pid) - cpu) * 1e6 / max(1, mine["received"])
    mine["rss_at_rest_mb"], mine["rss_connected_mb"] = at_rest / 1024, connected / 1024
    mine["ratio"] = mine["p99_ms"] / base["p99_ms"]
    print(
        f"{spectators:,} spectators over {SESSIONS} sessions, 1 frame/s each for {seconds} s: every frame to every "
        f"spectator: {mine['complete']} ({mine['received']:,} received); p50 {mine['p50_ms']:.1f} ms, p99 "
        f"{mine['p99_ms']:.1f} ms against the bare broadcast()'s {base['p50_ms']:.1f} / {base['p99_ms']:.1f} ms: ratio "
        f"{mine['ratio']:.2f} (target <= 1.2); server CPU {mine['server_cpu_us_per_delivery']:.1f} µs/delivery against "
        f"{base['server_cpu_us_per_delivery']:.1f}; server RSS "
        f"{mine['rss_at_rest_mb']:.0f} MB at rest, {mine['rss_connected_mb']:.0f} MB with them connected"
    )
    return {**mine, "baseline": base}


if __name__ == "__main__":
    measure(*(int(arg) for arg in sys.argv[1:3]), *(float(arg) for arg in sys.argv[3:4]))
