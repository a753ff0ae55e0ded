"""The reconnect storm's baseline: a bare `websockets` server that greets each client with one frame
shaped like our `connection_status`, then keeps the connection open until the client closes it.

    python bench/baselines/ws_greeter.py PORT

Prints LISTENING once it accepts connections.
"""

from __future__ import annotations

import asyncio
import sys

import orjson
from websockets.asyncio.server import ServerConnection, serve

GREETING = orjson.dumps(
    {
        "type": "connection_status",
        "session_id": "bench",
        "timestamp": "2026-01-01T00:00:00Z",
        "data": {"status": "connected", "epoch": "0123456789abcdef", "last_seq": 10_000, "spectators": 1},
    }
).decode()


async def handler(ws: ServerConnection) -> None:
    await ws.send(GREETING)
    await ws.wait_closed()


async def main() -> None:
    async with serve(handler, "127.0.0.1", int(sys.argv[1]), compression=None, max_queue=None, backlog=4096):
        print("LISTENING", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
