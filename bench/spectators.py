"""A spectator load process: N WebSocket connections that count frames and measure push-to-receive latency.

    python bench/spectators.py WS_URL CONNECTIONS EXPECTED [SECONDS]   # WS_URL may be a comma-separated list:
                                                                      # connections go round-robin over it
    python bench/spectators.py WS_URL CONNECTIONS stall [SECONDS]   # connect, then never read

Reads until every connection got EXPECTED data frames (or SECONDS pass), then prints one JSON line:
received frames, the first and last receive times, and latency percentiles in ms (from the `t` the
pusher put in each point's custom data, same clock: same machine).
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson
import websockets


async def spectator(
    url: str,
    expected: int,
    latencies: list[float],
    stamps: list[float],
    ready: asyncio.Event,
    counter: list[int],
    total: int,
) -> int:
    got = 0
    async with websockets.connect(url, compression=None, max_queue=None, open_timeout=60) as ws:
        if "/ws/" in url:  # our server: ready once the snapshot came, so nothing pushed later is missed
            while '"type":"snapshot"' not in str(await ws.recv()):
                pass
        counter[0] += 1
        if counter[0] == total:
            ready.set()
        while got < expected:
            raw = await ws.recv()
            if b'"seq":null' in (raw if isinstance(raw, bytes) else raw.encode()):
                continue
            now = time.time()
            got += 1
            stamps.append(now)
            if got % 10 == 1:  # sample latency; parsing every frame would measure the client, not the server
                message = orjson.loads(raw)
                sent = message["data"].get("custom", {}).get("t") or message["data"].get("t")
                if sent:
                    latencies.append((now - sent) * 1000)
    return got


async def stall(url: str, connections: int, seconds: float) -> None:
    """Spectators that stop reading: the library reads one frame, then the kernel buffers fill."""
    sockets = [
        await websockets.connect(url, compression=None, max_queue=1, open_timeout=60) for _ in range(connections)
    ]
    print("READY", flush=True)
    await asyncio.sleep(seconds)
    print(
        orjson.dumps(
            {
                "received": 0,
                "first": 0,
                "last": 0,
                "p50_ms": -1,
                "p99_ms": -1,
                "complete": True,
                "open": sum(ws.state.name == "OPEN" for ws in sockets),
            }
        ).decode(),
        flush=True,
    )


async def main() -> None:
    if sys.argv[3] == "stall":
        return await stall(sys.argv[1], int(sys.argv[2]), float(sys.argv[4]) if len(sys.argv) > 4 else 60.0)
    url, connections, expected = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    seconds = float(sys.argv[4]) if len(sys.argv) > 4 else 120.0
    latencies: list[float] = []
    stamps: list[float] = []
    ready = asyncio.Event()
    counter = [0]
    urls = url.split(",")  # connections go round-robin over the URLs given
    tasks = [
        asyncio.create_task(spectator(urls[i % len(urls)], expected, latencies, stamps, ready, counter, connections))
        for i in range(connections)
    ]
    await asyncio.wait_for(ready.wait(), 120)
    print("READY", flush=True)
    done, pending = await asyncio.wait(tasks, timeout=seconds)
    for task in pending:
        task.cancel()
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else -1.0

    print(
        orjson.dumps(
            {
                "received": len(stamps),
                "first": min(stamps, default=0),
                "last": max(stamps, default=0),
                "p50_ms": pct(0.5),
                "p99_ms": pct(0.99),
                "complete": len(pending) == 0,
            }
        ).decode(),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main())
