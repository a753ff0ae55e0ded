"""Issue #28's 10,000 spectators on one instance: 10 sessions, 1,000 spectators each, every session pushed
1 point a second (so each spectator receives 1 frame a second, 10,000 deliveries a second in all), against
a bare `websockets` server broadcast()ing 1 frame a second to as many clients, in the same run.

    python bench/many_spectators.py [SPECTATORS] [SECONDS]

Prints: whether every spectator connected and got every frame, the p99 push-to-spectator latency of both
and their ratio (target <= 1.2x), and the server's RSS with them all connected.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import server_process
from bench.fanout import baseline, collect, push, spectator_processes

SESSIONS = 10
# Connected at this pace, not all at once: 10,000 connects at once overflow the listen queue of any server
# here (the kernel drops SYNs; some clients' retries take longer than they wait). The figure is the
# delivery to 10,000 connected spectators; a storm of connects is bench/instances.py's.
CONNECTS_PER_S = 1000.0


def measure(spectators: int = 10_000, seconds: int = 20) -> dict[str, Any]:
    base = baseline(spectators, seconds, 1.0, CONNECTS_PER_S)
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
        with spectator_processes(urls, spectators, seconds, seconds + 120, CONNECTS_PER_S) as processes:
            connected = server.rss_kb()
            pushers = [threading.Thread(target=push, args=(server.url, sid, seconds, 1.0)) for sid in ids]
            start = time.perf_counter()
            for pusher in pushers:
                pusher.start()
            for pusher in pushers:
                pusher.join()
            mine = collect(processes)
            mine["push_seconds"] = time.perf_counter() - start
    mine["rss_at_rest_mb"], mine["rss_connected_mb"] = at_rest / 1024, connected / 1024
    mine["ratio"] = mine["p99_ms"] / base["p99_ms"]
    print(
        f"{spectators:,} spectators over {SESSIONS} sessions, 1 frame/s each for {seconds} s: every frame to every "
        f"spectator: {mine['complete']} ({mine['received']:,} received); p99 {mine['p99_ms']:.1f} ms against the bare "
        f"broadcast()'s {base['p99_ms']:.1f} ms: ratio {mine['ratio']:.2f} (target <= 1.2); server RSS "
        f"{mine['rss_at_rest_mb']:.0f} MB at rest, {mine['rss_connected_mb']:.0f} MB with them connected"
    )
    return {**mine, "baseline": base}


if __name__ == "__main__":
    measure(*(int(arg) for arg in sys.argv[1:3]))
