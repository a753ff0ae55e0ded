"""A WebSocket fuzz over raw sockets: random and oversized frames, binary frames, invalid UTF-8, broken
framing, ping and subscribe floods. Each abusive connection gets an `error` (or a pong, or its subscriptions)
or is closed; the server logs no error, and a well-behaved spectator and ingest carry on, every point in order.
Seeded, so a failure can be replayed."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import random
import socket
import struct
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from bot.config import Settings
from bot.schemas import MESSAGE_TYPES
from tests.conftest import TIMEOUT, LiveServer, connect_and_sync, create_session, recv_data

TEXT, BINARY, CLOSE, PING, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0x0
REPLIES = {"error", "pong", "subscriptions", "connection_status", "snapshot", "auth"}


class RawSpectator:
    """A WebSocket client that writes whatever frames it is told to, valid or not."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, live: LiveServer, session_id: str, receive_buffer: int = 0) -> RawSpectator:
        """`receive_buffer`: the socket's kernel receive buffer, small for a client that reads slowly."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.connect(("127.0.0.1", live.port))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /ws/{session_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    def send(self, opcode: int, payload: bytes, fin: bool = True, declared: int | None = None) -> None:
        length = len(payload) if declared is None else declared
        head = bytes([(0x80 if fin else 0) | opcode])
        if length < 126:
            head += bytes([0x80 | length])
        elif length < 65_536:
            head += bytes([0x80 | 126]) + struct.pack("!H", length)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", length)
        mask = os.urandom(4)
        self.writer.write(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    async def replies(self) -> tuple[list[dict[str, Any]], int | None]:
        """Every text message until the server closes: (messages, close code or None if it just hung up)."""
        messages: list[dict[str, Any]] = []
        try:
            while True:
                first, second = await self.reader.readexactly(2)
                length = second & 0x7F
                if length == 126:
                    (length,) = struct.unpack("!H", await self.reader.readexactly(2))
                elif length == 127:
                    (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
                payload = await self.reader.readexactly(length)
                if first & 0x0F == TEXT:
                    messages.append(orjson.loads(payload))
                elif first & 0x0F == CLOSE:
                    return messages, struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        except (asyncio.IncompleteReadError, ConnectionError):
            return messages, None
        finally:
            self.writer.close()

    def close(self) -> None:
        self.send(CLOSE, struct.pack("!H", 1000))


def random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 4 else 4)
    if kind == 0:
        return rng.choice([None, True, False, 0, -1, 2**70, 1.5, float("nan")])
    if kind == 1:
        return "".join(chr(rng.randrange(0x20, 0x2FFF)) for _ in range(rng.randrange(20)))
    if kind == 2:
        return rng.choice(["ping", "subscribe", "unsubscribe", "", "PING", *MESSAGE_TYPES])
    if kind == 3:
        return rng.random() * 10 ** rng.randrange(-300, 300)
    if kind == 4:
        return [random_json(rng, depth + 1) for _ in range(rng.randrange(5))]
    keys = ["type", "data", "types", "since", rng.choice(["x", "\u0000", "🙂"])]
    return {rng.choice(keys): random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


def fuzz_text(rng: random.Random) -> bytes:
    shape = rng.randrange(5)
    if shape == 0:
        return _dumps(random_json(rng))
    if shape == 1:
        return _dumps({"type": rng.choice(["ping", "subscribe", "unsubscribe"]), **_fields(rng)})
    if shape == 2:  # nested deeper than anyone's metadata, within what a JSON parser takes
        depth = rng.randrange(200, 1200)
        return b'{"type":"ping","data":' + b"[" * depth + b"]" * depth + b"}"
    if shape == 3:
        return bytes(rng.randrange(0x20, 0x7F) for _ in range(rng.randrange(1, 300)))
    return _dumps({"type": "ping", "data": "x" * rng.randrange(200, 60_000)})


def _fields(rng: random.Random) -> dict[str, Any]:
    return {
        "types": rng.choice([MESSAGE_TYPES[:2], ["nope"], [], "training_metrics", 5, None, ["training_metrics"] * 50]),
        "data": random_json(rng),
    }


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()  # integers past 64 bits and NaN as they come


def random_text(ws: RawSpectator, rng: random.Random) -> None:
    for _ in range(150):
        ws.send(TEXT, fuzz_text(rng))
    ws.close()


def binary(ws: RawSpectator, rng: random.Random) -> None:
    for _ in range(50):
        ws.send(BINARY, os.urandom(rng.randrange(1, 2000)))
    ws.close()


def ping_flood(ws: RawSpectator, rng: random.Random) -> None:
    for i in range(3000):
        if i % 2:
            ws.send(TEXT, b'{"type":"ping","data":%d}' % i)
        else:
            ws.send(PING, b"p")  # a protocol-level ping: the server's pong is written without us
    ws.close()


def subscribe_flood(ws: RawSpectator, rng: random.Random) -> None:
    for _ in range(1000):
        kind = rng.choice(["subscribe", "unsubscribe"])
        ws.send(TEXT, _dumps({"type": kind, "types": rng.sample(MESSAGE_TYPES, 2)}))
    ws.close()


STYLES: dict[str, Callable[[RawSpectator, random.Random], None]] = {
    "random text": random_text,
    "binary": binary,
    "invalid utf-8": lambda ws, _: ws.send(TEXT, b'{"type": "ping", "data": "\xff\xfe"}'),
    "oversized": lambda ws, _: ws.send(TEXT, b"x" * 200_000),
    "declared huge": lambda ws, _: ws.send(TEXT, b"", declared=2**40),  # far past the limit, and no payload
    "broken framing": lambda ws, _: ws.send(CONTINUATION, b"no message to continue"),
    "reserved opcode": lambda ws, _: ws.send(0x3, b"?"),
    "ping flood": ping_flood,
    "subscribe flood": subscribe_flood,
}


async def abuse(live: LiveServer, session_id: str, style: str, seed: int) -> tuple[list[dict[str, Any]], int | None]:
    ws = await RawSpectator.connect(live, session_id)
    reading = asyncio.create_task(ws.replies())
    STYLES[style](ws, random.Random(seed))
    await ws.writer.drain()
    async with asyncio.timeout(3 * TIMEOUT):
        return await reading


@pytest.mark.parametrize("seed", [1, 2])
async def test_abusive_spectators_get_an_error_or_a_close_and_the_rest_carry_on(
    server_factory: Any, settings: Settings, spectators: Any, caplog: pytest.LogCaptureFixture, seed: int
) -> None:
    live = await server_factory(settings.model_copy(update={"max_connections_per_session": 50}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "fuzzed")
        watcher = await connect_and_sync(spectators, live.ws_url(session_id))
        caplog.set_level(logging.ERROR)
        attacks = [asyncio.create_task(abuse(live, session_id, style, seed)) for style in STYLES]
        for episode in range(20):  # ingest while the attacks go on
            response = await client.post(f"/api/training/sessions/{session_id}/metrics", json={"episode": episode})
            assert response.status_code == 200
        outcomes = dict(zip(STYLES, await asyncio.gather(*attacks), strict=True))
        assert [m["data"]["episode"] for m in await recv_data(watcher, 20)] == list(range(20))
        assert (await client.get("/health")).status_code == 200

    for style, (messages, _) in outcomes.items():
        kinds = {m["type"] for m in messages}
        assert kinds <= REPLIES | {"training_metrics", "lag"}, (style, kinds)
    codes = {style: code for style, (_, code) in outcomes.items()}
    assert codes["invalid utf-8"] == 1007
    assert codes["oversized"] == codes["declared huge"] == 1009
    assert codes["broken framing"] == codes["reserved opcode"] == 1002
    assert codes["random text"] in (1000, 1008)  # closed by the client, or for too many invalid messages
    errors = {m["data"]["code"] for m in outcomes["random text"][0] if m["type"] == "error"}
    known = {"invalid_json", "invalid_message", "ping_too_big", "invalid_types", "unknown_message_type"}
    assert errors and errors <= known
    ours = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("bot")]
    assert not ours


# ("oversized" is left out: the server closes while its payload still arrives, and the reset that answers
# those bytes may destroy the close frame before the client reads it.)
PROTOCOL_ERRORS = {"invalid utf-8": 1007, "declared huge": 1009, "broken framing": 1002, "reserved opcode": 1002}


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """The next frame's payload (a server's frames are never masked)."""
    _, second = await reader.readexactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return await reader.readexactly(length)


async def break_the_replay(live: LiveServer, session_id: str, style: str) -> int | None:
    """Join with since=0 on a small receive buffer (the server's buffers are never empty), and once the replay
    has begun, break the protocol while reading on to the close: its code."""
    ws = await RawSpectator.connect(live, f"{session_id}?since=0", receive_buffer=4096)
    async with asyncio.timeout(3 * TIMEOUT):
        while b'"seq":1,' not in await read_frame(ws.reader):
            pass
        for i in range(200):  # its replies wait behind the replay: the server stops reading it for a while
            ws.send(TEXT, b'{"type":"ping","data":%d}' % i)
        STYLES[style](ws, random.Random(0))
        _, code = await ws.replies()
    return code


async def test_a_protocol_error_during_a_replay_is_the_clients_close_code_and_no_server_error(
    server_factory: Any, settings: Settings, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Spectators that break the protocol while their `since=0` replay is being sent: each is closed with the
    code of what it did wrong (1007, 1009, 1002), never 1011, and the server logs no error of its own: not
    ours, nor uvicorn's traceback for the client's invalid UTF-8 (a warning, as the client's fault)."""
    live = await server_factory(settings.model_copy(update={"max_connections_per_session": 50, "ws_send_buffer": 8192}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "replayed")
        for batch in range(10):
            body = [{"episode": batch * 500 + i, "algorithm": "x" * 60} for i in range(500)]
            assert (await client.post(f"/api/training/sessions/{session_id}/metrics", json=body)).status_code == 200
        caplog.set_level(logging.ERROR)
        styles = [style for style in PROTOCOL_ERRORS for _ in range(5)]
        codes = await asyncio.gather(*(break_the_replay(live, session_id, style) for style in styles))
    assert codes == [PROTOCOL_ERRORS[style] for style in styles]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    printed = capfd.readouterr().err
    assert "Traceback" not in printed and "ERROR" not in printed, printed
    assert "WARNING:  Invalid UTF-8 sequence received from client" in printed
