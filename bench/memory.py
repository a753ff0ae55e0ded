"""Memory figures: server RSS at rest after start-up, and per idle spectator with N connected.

python bench/memory.py [SPECTATORS]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import server_process
from bench.fanout import spectator_processes


def measure(spectators: int) -> dict[str, float]:
    env = {"MAX_CONNECTIONS_PER_SESSION": str(spectators + 10)}
    with server_process(env) as server:
        time.sleep(1.0)
        at_rest = server.rss_kb()
        workers = server.workers_rss_kb()
        session_id = httpx.post(f"{server.url}/api/training/sessions", json={"name": "idle"}).json()["session_id"]
        ws_url = server.url.replace("http://", "ws://") + f"/ws/{session_id}"
        with spectator_processes(ws_url, spectators, 1, 60):
            time.sleep(2.0)
            connected = server.rss_kb()
            total = httpx.get(f"{server.url}/status").json()["spectators"]["total"]
    per_spectator = (connected - at_rest) * 1024 / spectators
    print(
        f"server RSS at rest after start-up: {at_rest / 1024:.1f} MB, and {workers / 1024:.1f} MB in its worker "
        f"processes; with {total} idle spectators: "
        f"{connected / 1024:.1f} MB = {per_spectator / 1024:.1f} KB per spectator (target <= 24 KB, #28)"
    )
    return {
        "rss_at_rest_mb": at_rest / 1024,
        "workers_rss_mb": workers / 1024,
        "rss_connected_mb": connected / 1024,
        "per_spectator_kb": per_spectator / 1024,
        "spectators": total,
    }


if __name__ == "__main__":
    measure(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
