"""The attacks of issues #16 and #24 (Socket.IO) replayed against a real `bot serve` on its defaults (loopback
only, each bounded in count and time). For each: the server's RSS before, at its peak and right after (its ingest
worker included) against its RSS at rest, the p99 latency of /health polled during the attack, and the p99
acknowledgement of a legitimate trainer pushing 10-point batches meanwhile, against the same trainer with no
attack in the same run.

    python bench/abuse.py [--quick] [--rate-limits] [NAME...]   (NAME: the start of an attack's name)

Targets: peak RSS <= 2x at rest plus the documented bounds, /health p99 <= 100 ms, legitimate ack p99 <= 2x
the baseline.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import os
import random
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Server, percentile, server_process

QUICK = "--quick" in sys.argv
RATE_LIMITS = "--rate-limits" in sys.argv  # the same attacks with enable_rate_limiting on
ONLY = [arg for arg in sys.argv[1:] if not arg.startswith("--")]  # names of attacks to run (their start)
ATTACK_SECONDS = 4.0 if QUICK else 12.0  # past the slow-spectator timeout (10 s)
# A request head as an attacker would write it: with the JSON type, or the browser guard answers 415 before
# any body limit is reached (bot/server/edge/browsers.py).
JSON_HOST = "Host: 127.0.0.1\r\nContent-Type: application/json\r\n"


class Probe:
    """/health latencies and a legitimate trainer's ack latencies, measured in a process of its own so that
    the attack's work in this one (building and writing megabytes, under this process's GIL) delays nothing."""

    def __init__(self, url: str, session_id: str) -> None:
        self.url, self.session_id = url, session_id
        self.health_ms: list[float] = []
        self.ack_ms: list[float] = []
        self.failures = 0

    async def _timed(self, into: list[float], request: Awaitable[httpx.Response]) -> None:
        start = time.perf_counter()
        try:
            ok = (await request).status_code == 200
        except httpx.HTTPError:
            ok = False
        into.append((time.perf_counter() - start) * 1000)
        self.failures += not ok

    async def _health(self, client: httpx.AsyncClient) -> None:
        while True:
            await self._timed(self.health_ms, client.get("/health"))
            await asyncio.sleep(0.02)

    async def _trainer(self, client: httpx.AsyncClient) -> None:
        for episode in itertools.count(step=10):
            body = [{"episode": episode + i, "current_reward": 1.0} for i in range(10)]
            await self._timed(self.ack_ms, client.post(f"/api/training/sessions/{self.session_id}/metrics", json=body))
            await asyncio.sleep(0.02)

    async def run(self, stop: Any) -> tuple[list[float], list[float], int]:
        limits = httpx.Limits(max_connections=4)
        async with httpx.AsyncClient(base_url=self.url, timeout=30, limits=limits) as client:
            loops = [asyncio.create_task(self._health(client)), asyncio.create_task(self._trainer(client))]
            while not stop.is_set():
                await asyncio.sleep(0.05)
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
        return self.health_ms, self.ack_ms, self.failures


def probe_process(url: str, session_id: str, stop: Any, results: Any) -> None:
    results.put(asyncio.run(Probe(url, session_id).run(stop)))


class Watch:
    """While an attack runs: the server's peak RSS (sampled here) and the probe's figures."""

    def __init__(self, server: Server, session_id: str) -> None:
        self.server, self.session_id = server, session_id
        self.before_kb = self.peak_kb = self.after_kb = 0
        self.health_ms: list[float] = []
        self.ack_ms: list[float] = []
        self.failures = 0
        self._sampling = False

    def _sample(self) -> None:
        while self._sampling:
            with contextlib.suppress(OSError, ValueError):
                self.peak_kb = max(self.peak_kb, self.server.rss_kb() + self.server.workers_rss_kb())
            time.sleep(0.02)

    async def during(self, attack: Callable[[], Awaitable[str]]) -> str:
        self.before_kb = self.server.rss_kb() + self.server.workers_rss_kb()
        self._sampling = True
        sampler = threading.Thread(target=self._sample, daemon=True)
        sampler.start()
        context = multiprocessing.get_context("spawn")
        stop, results = context.Event(), context.Queue()
        probe = context.Process(target=probe_process, args=(self.server.url, self.session_id, stop, results))
        probe.start()
        await asyncio.sleep(1.5)  # the probe is up and measuring
        try:
            return await attack()
        finally:
            stop.set()
            self.health_ms, self.ack_ms, self.failures = await asyncio.to_thread(results.get)
            probe.join()
            self._sampling = False
            sampler.join()
            self.after_kb = self.server.rss_kb() + self.server.workers_rss_kb()  # what the attack left behind


async def raw(server: Server, data: bytes, read: bool = True, hold: float = 0.0) -> bytes:
    """Write raw bytes on a new connection; the answer's first line (or what happened)."""
    port = int(server.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        await asyncio.sleep(hold)
        if not read:
            return b""
        async with asyncio.timeout(30):
            return (await reader.read(200)).split(b"\r\n", 1)[0]
    except (ConnectionError, TimeoutError) as exc:
        return type(exc).__name__.encode()
    finally:
        writer.close()


def statuses(lines: list[bytes]) -> str:
    counts: dict[str, int] = {}
    for line in lines:
        key = line.decode(errors="replace")[:40] or "closed"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} x {line}" for line, n in sorted(counts.items()))


def upgrade(path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def masked_text(payload: bytes) -> bytes:
    head = bytes([0x81]) + (
        bytes([0x80 | len(payload)]) if len(payload) < 126 else bytes([0xFE]) + len(payload).to_bytes(2)
    )
    return head + b"\0\0\0\0" + payload  # a zero mask leaves the payload as it is


async def unread_pings(server: Server, session_id: str) -> str:
    """A spectator that sends pings as fast as it can and never reads a pong."""
    port = int(server.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(upgrade(f"/ws/{session_id}"))
    await reader.readuntil(b"\r\n\r\n")
    ping = masked_text(b'{"type":"ping","data":"' + b"x" * 200 + b'"}') * 1000
    sent = 0
    deadline = time.monotonic() + ATTACK_SECONDS
    try:
        while time.monotonic() < deadline:
            writer.write(ping)
            async with asyncio.timeout(max(0.01, deadline - time.monotonic())):
                await writer.drain()
            sent += 1000
    except (TimeoutError, ConnectionError):
        pass
    closed = reader.at_eof() or writer.is_closing()
    writer.transport.abort()
    return f"{sent:,} pings sent unread; connection {'closed' if closed else 'still open'}"


async def big_bodies(server: Server, session_id: str) -> str:
    path = f"/api/training/sessions/{session_id}/metrics"
    declared = raw(
        server, f"POST {path} HTTP/1.1\r\n{JSON_HOST}Content-Length: 200000000\r\n\r\n".encode() + b"[" * 65536
    )
    chunked = raw(
        server,
        f"POST {path} HTTP/1.1\r\n{JSON_HOST}Transfer-Encoding: chunked\r\n\r\n".encode()
        + b"".join(b"100000\r\n" + b" " * 0x100000 + b"\r\n" for _ in range(40)),
    )
    action = b'{"selected_action": "' + b"a" * 30_000_000 + b'"}'
    field = raw(
        server,
        f"POST {path[:-7]}bot_decision HTTP/1.1\r\n{JSON_HOST}Content-Length: {len(action)}\r\n\r\n".encode() + action,
    )
    return statuses(list(await asyncio.gather(declared, chunked, field)))


async def million_points(server: Server, session_id: str) -> str:
    body = b"[" + b",".join([b"{}"] * 1_000_000) + b"]"
    path = f"/api/training/sessions/{session_id}/metrics"
    lines = [
        await raw(server, f"POST {path} HTTP/1.1\r\n{JSON_HOST}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        for _ in range(3)
    ]
    return statuses(lines)


async def slow_uploads(server: Server, session_id: str) -> str:
    """Fifty uploads declaring 15 MB each (under max_body_bytes), trickling 60 KB every 0.1 s."""
    port = int(server.url.rsplit(":", 1)[1])
    path = f"/api/training/sessions/{session_id}/metrics"

    async def one() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"POST {path} HTTP/1.1\r\n{JSON_HOST}Content-Length: 15000000\r\n\r\n[".encode())
        deadline = time.monotonic() + ATTACK_SECONDS
        try:
            while time.monotonic() < deadline and not reader.at_eof():
                writer.write(b'{"episode": 1},' * 4000)
                await writer.drain()
                await asyncio.sleep(0.1)
            with contextlib.suppress(TimeoutError):
                answer = await asyncio.wait_for(reader.read(100), 0.5)
                return answer.split(b"\r\n")[0] or b"closed"
            return b"still uploading"
        except ConnectionError:
            return b"closed"
        finally:
            writer.transport.abort()

    return statuses(list(await asyncio.gather(*(one() for _ in range(50)))))


async def slowloris(server: Server, session_id: str, count: int = 300) -> str:
    """Connections that send a header byte now and then and never finish the head."""
    port = int(server.url.rsplit(":", 1)[1])

    async def one() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        try:
            for _ in range(int(ATTACK_SECONDS * 2) + 24):  # past the 10 s head timeout
                if reader.at_eof():
                    break
                writer.write(b"X-a: b\r\n")
                await writer.drain()
                await asyncio.sleep(0.5)
            return (await asyncio.wait_for(reader.read(100), 1)).split(b"\r\n")[0] or b"closed"
        except (ConnectionError, TimeoutError):
            return b"closed"
        finally:
            writer.transport.abort()

    return statuses(list(await asyncio.gather(*(one() for _ in range(count)))))


async def idle_connections(server: Server, session_id: str, count: int = 3000 if QUICK else 15_000) -> str:
    """Connections that say nothing at all; then a new client."""
    port = int(server.url.rsplit(":", 1)[1])
    opened: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            opened.append(await asyncio.open_connection("127.0.0.1", port))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        newcomer = (await client.get("/health")).status_code
    start = time.monotonic()
    async with asyncio.timeout(30):
        for reader, _ in opened:
            await reader.read()
    closed_after = time.monotonic() - start
    for _, writer in opened:
        writer.transport.abort()
    return f"{len(opened):,} opened; a new client got {newcomer}; all closed by the server {closed_after:.1f} s later"


async def big_heads(server: Server, session_id: str) -> str:
    huge = raw(server, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"v" * 60_000_000 + b"\r\n\r\n")
    path = raw(server, upgrade(f"/ws/{session_id}?user_name=" + "u" * 100_000))
    many = raw(server, b"GET /health HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(100_000)) + b"\r\n")
    return statuses(list(await asyncio.gather(huge, path, many)))


async def wide_session(server: Server) -> str:
    """A session with 100 graphs of 8 series x 500 points (the most points a snapshot carries is bounded)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        wide: str = (await client.post("/api/training/sessions", json={"name": "wide"})).json()["session_id"]
        for g in range(100):
            points = {f"s{i}": [{"value": float(v)} for v in range(500)] for i in range(8)}
            body = {"graph_id": f"g{g}", "data_points": points, "max_points": 500}
            await client.post(f"/api/training/sessions/{wide}/graph_update", json=body)
    return wide


async def snapshots(server: Server, wide: str) -> str:
    """50 spectators joining the wide session and never reading."""
    port = int(server.url.rsplit(":", 1)[1])
    joined = []
    for _ in range(50):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(upgrade(f"/ws/{wide}"))
        joined.append((reader, writer))
    await asyncio.sleep(ATTACK_SECONDS)
    for _, writer in joined:
        writer.transport.abort()
    return "50 spectators joined a session of 400,000 graph points and never read"


async def password_guessing(server: Server, session_id: str) -> str:
    """Sixteen clients guessing a room's password as fast as they can."""
    import websockets

    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        room = (
            await client.post("/api/training/sessions", json={"name": "room", "room": {"password": "correct horse"}})
        ).json()
    url = server.url.replace("http://", "ws://") + f"/ws/{room['session_id']}"
    codes: dict[int, int] = {}
    cpu_before = server.cpu_seconds() + server.workers_cpu_seconds()
    deadline = time.monotonic() + ATTACK_SECONDS

    async def guesser() -> None:
        while time.monotonic() < deadline:
            try:
                async with websockets.connect(f"{url}?password=guess{random.random()}", open_timeout=10) as ws:
                    await ws.recv()
                    await ws.recv()
            except websockets.ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else 0
                codes[code] = codes.get(code, 0) + 1
            except (OSError, TimeoutError, websockets.InvalidStatus):
                codes[-1] = codes.get(-1, 0) + 1

    await asyncio.gather(*(guesser() for _ in range(16)))
    cores = (server.cpu_seconds() + server.workers_cpu_seconds() - cpu_before) / ATTACK_SECONDS
    tried = ", ".join(f"{n} x {code}" for code, n in sorted(codes.items()))
    return f"{sum(codes.values())} guesses ({tried}); the server used {cores:.2f} cores"


async def socketio_subscriptions(server: Server, session_id: str, count: int = 500_000) -> str:
    """One Socket.IO client sending `subscribe_training` for a new job id as fast as it can (issue #24), and
    connecting again whenever it is disconnected."""
    import socketio

    answers: dict[str, int] = {}

    def answered(answer: Any = None) -> None:
        status = answer.get("status", "?") if isinstance(answer, dict) else repr(answer)
        answers[status] = answers.get(status, 0) + 1

    sent = connects = 0
    deadline = time.monotonic() + ATTACK_SECONDS
    cpu_before = server.cpu_seconds() + server.workers_cpu_seconds()
    while sent < count and time.monotonic() < deadline:
        client = socketio.AsyncClient(reconnection=False)
        try:
            await client.connect(server.url, transports=["websocket"], wait_timeout=10)
            connects += 1
            while sent < count and time.monotonic() < deadline:
                await client.emit("subscribe_training", {"job_id": f"job-{sent:012x}"}, callback=answered)
                sent += 1
                if sent % 100 == 0:
                    await asyncio.sleep(0)  # let the client's writer and reader run
        except (socketio.exceptions.BadNamespaceError, socketio.exceptions.ConnectionError):
            await asyncio.sleep(0.01)
        finally:
            await client.disconnect()
    cores = (server.cpu_seconds() + server.workers_cpu_seconds() - cpu_before) / ATTACK_SECONDS
    told = ", ".join(f"{n:,} x {status}" for status, n in sorted(answers.items()))
    return (
        f"{sent:,} subscriptions sent over {connects:,} connections; answered: {told or 'none'}; "
        f"the server used {cores:.2f} cores"
    )


async def socketio_handshakes(server: Server, session_id: str, count: int = 20_000) -> str:
    """Engine.IO handshakes (each a session on the server until it is refused or reaped) over 50 keep-alive
    connections, one request after another on each (httpx's pool, not the server, was the limit)."""
    port = int(server.url.rsplit(":", 1)[1])
    codes: dict[int, int] = {}
    request = b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    deadline = time.monotonic() + ATTACK_SECONDS
    cpu_before = server.cpu_seconds() + server.workers_cpu_seconds()

    async def one_connection(share: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for _ in range(share):
                if time.monotonic() > deadline:
                    return
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                code = int(head.split(b" ", 2)[1])
                codes[code] = codes.get(code, 0) + 1
                if b"transfer-encoding: chunked" in head.lower():
                    await reader.readuntil(b"\r\n0\r\n\r\n")
                else:
                    length = head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0]
                    await reader.readexactly(int(length))
        except (ConnectionError, asyncio.IncompleteReadError):
            codes[-1] = codes.get(-1, 0) + 1
        finally:
            writer.transport.abort()

    await asyncio.gather(*(one_connection(count // 50) for _ in range(50)))
    cores = (server.cpu_seconds() + server.workers_cpu_seconds() - cpu_before) / ATTACK_SECONDS
    told = ", ".join(f"{n:,} x {code}" for code, n in sorted(codes.items()))
    return f"{sum(codes.values()):,} Engine.IO handshakes: {told}; the server used {cores:.2f} cores"


ATTACKS: list[tuple[str, Callable[[Server, str], Awaitable[str]]]] = [
    ("unread pings", unread_pings),
    ("big bodies (200 MB, chunked 40 MB, 30 MB action)", big_bodies),
    ("1,000,000 points in a batch (x3)", million_points),
    ("50 slow uploads", slow_uploads),
    ("300 slowloris", slowloris),
    ("idle connections", idle_connections),
    ("60 MB header, 100 KB WebSocket path, 100,000 headers", big_heads),
    ("50 spectators of a session of 400,000 graph points", snapshots),
    ("room password guessing, 16 clients", password_guessing),
    ("Socket.IO subscriptions from one client", socketio_subscriptions),
    ("Socket.IO Engine.IO handshakes", socketio_handshakes),
]


async def baseline(server: Server, session_id: str) -> Watch:
    watch = Watch(server, session_id)
    await watch.during(lambda: asyncio.sleep(ATTACK_SECONDS))
    return watch


async def main() -> None:
    env = {"MAX_CONNECTIONS_PER_SESSION": "100", **({"TMS_ENABLE_RATE_LIMITING": "1"} if RATE_LIMITS else {})}
    with server_process(env) as server:
        async with httpx.AsyncClient(base_url=server.url) as client:
            session_id = (await client.post("/api/training/sessions", json={"name": "legit"})).json()["session_id"]
        await asyncio.sleep(1.0)
        at_rest = server.rss_kb() + server.workers_rss_kb()
        calm = await baseline(server, session_id)
        base_ack = percentile(calm.ack_ms, 0.99)
        print(f"at rest: RSS {at_rest / 1024:.0f} MB (server and ingest worker)")
        print(f"no attack: /health p99 {percentile(calm.health_ms, 0.99):.1f} ms, legitimate ack p99 {base_ack:.1f} ms")
        print()
        print(
            f"{'attack':54} {'RSS before->peak->after':>22} {'x rest':>6} {'health p99':>10} {'ack p99':>8} "
            f"{'x base':>6}"
            "  outcome"
        )
        wide = await wide_session(server)
        for name, attack in [(n, a) for n, a in ATTACKS if not ONLY or any(n.startswith(o) for o in ONLY)]:
            watch = Watch(server, session_id)
            target = wide if attack is snapshots else session_id
            outcome = await watch.during(lambda attack=attack, target=target: attack(server, target))
            ack = percentile(watch.ack_ms, 0.99)
            print(
                f"{name:54} {watch.before_kb / 1024:5.0f}->{watch.peak_kb / 1024:4.0f}->{watch.after_kb / 1024:4.0f}MB "
                f"{watch.peak_kb / at_rest:6.2f} "
                f"{percentile(watch.health_ms, 0.99):8.1f}ms {ack:6.1f}ms {ack / base_ack:6.2f}  {outcome}"
                + (f"; {watch.failures} legitimate requests failed" if watch.failures else ""),
                flush=True,
            )
            await asyncio.sleep(1.0)
        print(f"\nafter: RSS {(server.rss_kb() + server.workers_rss_kb()) / 1024:.0f} MB")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    asyncio.run(main())
