"""The baseline: a bare `websockets` server that broadcast()s frames to every client, as fast as it can.

    python bench/baselines/ws_broadcast.py PORT FRAMES [RATE]

Waits for a line on stdin (all clients connected), then broadcasts FRAMES frames shaped like ours
(~400 B JSON with a send time), in bursts of 100 with a yield between (or, with RATE, one frame
every 1/RATE s), and exits when clients leave.
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson
from websockets.asyncio.server import broadcast, serve

CLIENTS: set = set()


async def handler(ws) -> None:  # type: ignore[no-untyped-def]
    CLIENTS.add(ws)
    try:
        await ws.wait_closed()
    finally:
        CLIENTS.discard(ws)


async def main() -> None:
    port, frames = int(sys.argv[1]), int(sys.argv[2])
    rate = float(sys.argv[3]) if len(sys.argv) > 3 else None
    burst = 1 if rate else 100
    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=None, backlog=4096):
        print("LISTENING", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        start = time.perf_counter()
        for first in range(0, frames, burst):
            for seq in range(first + 1, min(frames, first + burst) + 1):
                frame = orjson.dumps(
                    {
                        "type": "training_metrics",
                        "session_id": "bench",
                        "seq": seq,
                        "timestamp": "2026-01-01T00:00:00Z",
                        "data": {
                            "episode": seq,
                            "current_reward": 1.5,
                            "epsilon": 0.1,
                            "loss_value": 0.25,
                            "custom": {"t": time.time()},
                        },
                    }
                ).decode()
                broadcast(CLIENTS, frame)
            await asyncio.sleep(max(0.0, start + (first + burst) / rate - time.perf_counter()) if rate else 0)
        while CLIENTS:
            await asyncio.sleep(0.1)


if __name__ == "__main__":
    asyncio.run(main())
