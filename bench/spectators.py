"""A spectator load process: N WebSocket connections that count frames and measure push-to-receive latency.

    python bench/spectators.py WS_URL CONNECTIONS EXPECTED [SECONDS [CONNECTS_PER_S]]
                                                  # WS_URL may be a comma-separated list: connections go
                                                  # round-robin over it; CONNECTS_PER_S paces the connects
    python bench/spectators.py WS_URL CONNECTIONS stall [SECONDS]   # connect, then never read

Reads until every connection got EXPECTED data frames (or SECONDS pass), then prints one JSON line:
received frames, the first and last receive times, and latency percentiles in ms (from the `t` the
pusher put in each point's custom data, same clock: same machine).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time

import orjson
import uvloop
import websockets
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri


class Spectator(asyncio.Protocol):
    """One connection, on websockets' sans-I/O protocol and uvloop. A frame costs the client ~25 µs of
    CPU, kernel included, against ~65 µs with the websockets asyncio client: on 2 cores shared with the
    server, a heavier client would measure its own queueing rather than the server."""

    def __init__(self, url: str, expected: int, latencies: list[float], stamps: list[float], index: int) -> None:
        self.protocol = ClientProtocol(parse_uri(url), max_size=None)
        self.ours = "/ws/" in url  # our server: ready once the snapshot came, so nothing pushed later is missed
        self.expected, self.latencies, self.stamps = expected, latencies, stamps
        self.got = 0
        self.dropped = 0  # frames the server said it dropped for this connection (`lag`): they never come
        # Latency is sampled on every 10th frame, staggered over the connections so that every push is
        # sampled (the same 10th frame everywhere would sample only a tenth of the pushes).
        self.stagger = index % 10
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio's classes
        request = self.protocol.connect()
        if key := os.environ.get("TMS_API_KEY"):  # a server with auth on (bench/auth.py)
            request.headers["Authorization"] = f"Bearer {key}"
        self.protocol.send_request(request)
        self.flush()

    def flush(self) -> None:
        assert self.transport is not None
        for data in self.protocol.data_to_send():
            if data:
                self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.protocol.receive_data(data)
        now = time.time()
        for event in self.protocol.events_received():
            if not isinstance(event, Frame):  # the handshake response
                if not self.ours:
                    self.ready.set_result(None)
            elif event.opcode is Opcode.TEXT:
                self.frame(bytes(event.data), now)
        self.flush()

    def frame(self, raw: bytes, now: float) -> None:
        if not self.ready.done():
            if b'"type":"snapshot"' in raw:
                self.ready.set_result(None)
            return
        if b'"seq":null' in raw:
            if raw.startswith(b'{"type":"lag"'):
                self.dropped += orjson.loads(raw)["data"]["dropped"]
                self.check_done()
            return
        self.got += 1
        self.stamps.append(now)
        if (self.got + self.stagger) % 10 == 0:  # parsing every frame would measure the client, not the server
            data = orjson.loads(raw)["data"]
            sent = data.get("custom", {}).get("t") or data.get("t")
            if sent:
                self.latencies.append((now - sent) * 1000)
        self.check_done()

    def check_done(self) -> None:
        """Every frame came, or the server said it dropped the rest (the run is then not complete)."""
        if self.got + self.dropped >= self.expected and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        for future in (self.ready, self.done):
            if not future.done():
                future.set_exception(ConnectionError("closed by the server"))


async def spectator(
    url: str, expected: int, latencies: list[float], stamps: list[float], index: int, delay: float = 0.0
) -> Spectator:
    await asyncio.sleep(delay)
    uri = parse_uri(url)
    _, connection = await asyncio.get_running_loop().create_connection(
        lambda: Spectator(url, expected, latencies, stamps, index), uri.host, uri.port
    )
    await asyncio.wait_for(connection.ready, 60)
    return connection


async def stall(url: str, connections: int, seconds: float) -> None:
    """Spectators that stop reading: the library reads one frame, then the kernel buffers fill (a small
    receive buffer, as a browser on a slow link would have, so that they fill within the run)."""
    uri = parse_uri(url)
    sockets = []
    for _ in range(connections):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((uri.host, uri.port))
        sock.setblocking(False)
        sockets.append(await websockets.connect(url, compression=None, max_queue=1, open_timeout=60, sock=sock))
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
    rate = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0  # connects per second; 0: all at once
    latencies: list[float] = []
    stamps: list[float] = []
    urls = url.split(",")  # connections go round-robin over the URLs given
    connected = await asyncio.gather(
        *(
            spectator(urls[i % len(urls)], expected, latencies, stamps, i, i / rate if rate else 0.0)
            for i in range(connections)
        )
    )
    print("READY", flush=True)
    cpu = time.process_time()
    done, pending = await asyncio.wait([c.done for c in connected], timeout=seconds)
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
                "dropped": sum(c.dropped for c in connected),
                "complete": not pending and not any(c.dropped for c in connected),  # every frame came
                "cpu_s": time.process_time() - cpu,
            }
        ).decode(),
        flush=True,
    )


if __name__ == "__main__":
    uvloop.run(main())
