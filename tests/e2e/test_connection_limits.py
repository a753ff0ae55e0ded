"""What one HTTP connection may hold (bot/server/edge/http_guard.py), tried with raw sockets against a real server:
each refusal is a short JSON answer and a close, nothing is stored, and other clients carry on."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import orjson
import pytest
import websockets

from bot.config import Settings
from tests.conftest import TIMEOUT, LiveServer, create_session

JSON = {"Content-Type": "application/json"}  # a body without it is refused (bot/server/edge/browsers.py)


async def exchange(live: LiveServer, request: bytes, then_wait: bool = True) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the answer until the server closes: (status, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(TIMEOUT):
            raw = await reader.read(-1) if then_wait else await reader.read(65_536)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


async def answer_until(live: LiveServer, request: bytes, status: int) -> tuple[int, dict[str, str], bytes]:
    """The answer to `request`, asked again until it has this status: a condition waited for, not a sleep."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            answer = await exchange(live, request)
            if answer[0] == status:
                return answer
            await asyncio.sleep(0.02)


async def still_serving(live: LiveServer, session_id: str) -> None:
    """Other clients are unaffected, and the refused request stored nothing."""
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        assert (await client.get("/health")).status_code == 200
        history = (await client.get(f"/api/training/sessions/{session_id}/history")).json()
        assert history["messages"] == []


async def test_a_long_url_is_414_over_http_and_on_a_websocket_upgrade(
    live: LiveServer, client: httpx.AsyncClient
) -> None:
    session_id = await create_session(client, "urls")
    path = f"/api/training/sessions/{session_id}/metrics?" + "x" * 100_000
    status, headers, body = await exchange(live, f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    assert status == 414 and headers["connection"] == "close"
    assert "max_url_bytes" in orjson.loads(body)["detail"] and len(body) < 200
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(live.ws_url(session_id, "user_name=" + "u" * 100_000), open_timeout=TIMEOUT)
    assert refused.value.response.status_code == 414
    await still_serving(live, session_id)


@pytest.mark.parametrize("shape", ["one huge header", "many headers"])
async def test_a_big_request_head_is_431_before_it_is_gathered(
    live: LiveServer, client: httpx.AsyncClient, shape: str
) -> None:
    session_id = await create_session(client, "heads")
    extra = (
        f"X-Big: {'v' * 5_000_000}\r\n"
        if shape == "one huge header"
        else "".join(f"X-H{i}: {'v' * 100}\r\n" for i in range(2000))
    )
    body = b'{"episode": 1}'
    request = (
        f"POST /api/training/sessions/{session_id}/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body
    status, _, answer = await exchange(live, request)
    assert status == 431 and "max_header_bytes" in orjson.loads(answer)["detail"]
    await still_serving(live, session_id)


async def test_a_head_or_a_body_that_is_too_slow_is_408_and_an_idle_connection_is_closed(
    server_factory: Any, settings: Settings
) -> None:
    """Slowloris (a head that never ends), a body that never ends, and a connection that says nothing."""
    update = {"http_header_timeout": 0.5, "http_body_timeout": 0.5}
    live = await server_factory(settings.model_copy(update=update))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "slow")
    status, _, body = await exchange(live, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    assert status == 408 and "http_header_timeout" in orjson.loads(body)["detail"]
    partial = (
        f"POST /api/training/sessions/{session_id}/metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"episode": 1'
    ).encode()
    status, _, body = await exchange(live, partial)
    assert status == 408 and "http_body_timeout" in orjson.loads(body)["detail"]
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
    async with asyncio.timeout(TIMEOUT):
        assert (await reader.read(-1)).startswith(b"HTTP/1.1 408")  # it said nothing: closed all the same
    writer.close()
    await still_serving(live, session_id)


async def test_past_max_connections_a_new_connection_gets_503_and_retry_after(
    server_factory: Any, settings: Settings
) -> None:
    live = await server_factory(settings.model_copy(update={"max_connections": 3}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "full")
    held = [await asyncio.open_connection("127.0.0.1", live.port) for _ in range(3)]
    health = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    status, headers, body = await answer_until(live, health, 503)  # once the server has accepted the three
    assert headers["retry-after"] == "1"
    assert "max_connections" in orjson.loads(body)["detail"]
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(live.ws_url(session_id), open_timeout=TIMEOUT)
    assert refused.value.response.status_code == 503
    for _, writer in held:
        writer.close()
    await answer_until(live, health, 200)  # once the server has seen them go
    await still_serving(live, session_id)


async def test_bodies_received_at_once_are_bounded_in_bytes(server_factory: Any, settings: Settings) -> None:
    """Slow uploads cannot together hold more than max_body_bytes_in_flight: past it a new body gets 503 with
    Retry-After, and once they are done, the same body goes through."""
    update = {"max_body_bytes": 80_000, "max_body_bytes_in_flight": 100_000}
    live = await server_factory(settings.model_copy(update=update))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "uploads")
        path = f"/api/training/sessions/{session_id}/metrics"
        body = orjson.dumps([{"episode": i, "algorithm": "x" * 50} for i in range(900)])  # about 60 KB
        reader, writer = await asyncio.open_connection("127.0.0.1", live.port)
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\n\r\n"
        writer.write(head.encode() + body[:-10])  # all but its end: it holds its bytes
        await writer.drain()
        scratch = f"/api/training/sessions/{await create_session(client, 'scratch')}/metrics"
        async with asyncio.timeout(TIMEOUT):  # until the server holds the slow body's bytes (a scratch session
            while (await client.post(scratch, content=body, headers=JSON)).status_code != 503:  # takes the rest)
                await asyncio.sleep(0.02)
        refused = await client.post(path, content=body, headers=JSON)
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "max_body_bytes_in_flight" in refused.json()["detail"]
        writer.write(body[-10:])
        async with asyncio.timeout(TIMEOUT):
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
        writer.close()
        assert (await client.post(path, content=body, headers=JSON)).status_code == 200
        assert (await client.get(f"/api/training/sessions/{session_id}")).json()["last_seq"] == 1800


async def test_a_burst_of_new_connections_is_taken_in_and_every_one_answered(
    server_factory: Any, settings: Settings
) -> None:
    """Past a few per loop turn, new connections wait in the intake (their reading paused) with what they sent:
    handshakes sent in two parts, and plain requests, all in one burst, are each answered in full."""
    live = await server_factory(settings.model_copy(update={"max_connections_per_session": 50}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "intake")
    head = f"GET /ws/{session_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n".encode()
    rest = b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    plain = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    connections = [await asyncio.open_connection("127.0.0.1", live.port) for _ in range(30)]
    for n, (_, writer) in enumerate(connections):
        writer.write(plain if n % 3 == 0 else head)
    for n, (_, writer) in enumerate(connections):
        if n % 3:
            writer.write(rest)
    try:
        async with asyncio.timeout(TIMEOUT):
            for n, (reader, _) in enumerate(connections):
                if n % 3 == 0:
                    assert (await reader.read(-1)).startswith(b"HTTP/1.1 200")
                else:
                    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 101")
                    while b'"connection_status"' not in await reader.read(65_536):  # the welcome frame
                        pass
    finally:
        for _, writer in connections:
            writer.close()


async def wide_session(client: httpx.AsyncClient, name: str) -> str:
    """A session whose history is about 8 MB (4 KB a message): more than the kernel's buffers take (4 MB)."""
    session_id = await create_session(client, name)
    custom = {f"a_fairly_long_metric_name_{k:03}": k / 7 for k in range(100)}
    for start in range(0, 2000, 250):
        body = [{"episode": i, "algorithm": "x" * 60, "custom": custom} for i in range(start, start + 250)]
        response = await client.post(f"/api/training/sessions/{session_id}/metrics", json=body)
        assert response.status_code == 200, response.text
    return session_id


async def small_window_get(live: LiveServer, path: str) -> socket.socket:
    """A raw GET from a client with a 4 KB receive buffer, so the answer backs up into the server."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", live.port))
    await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    async with asyncio.timeout(TIMEOUT):
        assert (await loop.sock_recv(sock, 100)).startswith(b"HTTP/1.1 200")  # answered: then it reads no more
    return sock


async def read_to_end(sock: socket.socket, pause: float = 0.0, every: int = 64) -> bytes:
    """Everything until the server's end of the connection (EOF or a reset), `pause` seconds after every
    `every` reads."""
    loop, received, reads = asyncio.get_running_loop(), bytearray(), 0
    async with asyncio.timeout(TIMEOUT * 3):
        while True:
            try:
                data = await loop.sock_recv(sock, 65_536)
            except ConnectionResetError:
                return bytes(received)
            if not data:
                return bytes(received)
            received += data
            reads += 1
            if reads % every == 0:
                await asyncio.sleep(pause)


LAST_CHUNK = b"\r\n0\r\n\r\n"  # the end of a whole chunked answer


@pytest.mark.parametrize("path", ["history?limit=100000", "export?format=json"])
async def test_a_download_nobody_reads_is_cut_after_http_send_timeout(
    server_factory: Any, settings: Settings, path: str
) -> None:
    """A client that asks for a big answer and never reads it holds its connection (and the answer's memory)
    only until http_send_timeout passes without a byte taken: then the connection is aborted."""
    live = await server_factory(settings.model_copy(update={"http_send_timeout": 0.5}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        url = f"/api/training/sessions/{await wide_session(client, 'stalled')}/{path}"
    sock = await small_window_get(live, url)
    try:
        me = sock.getsockname()
        async with asyncio.timeout(TIMEOUT):  # the server lets the connection go though the client never read
            while any(tuple(c.client or ()) == me for c in live.server.server_state.connections):
                await asyncio.sleep(0.05)
        assert not (await read_to_end(sock)).endswith(LAST_CHUNK)  # what was on its way, then EOF or a reset
    finally:
        sock.close()
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        assert (await client.get("/health")).status_code == 200


async def test_a_slow_but_steady_reader_gets_the_whole_download(server_factory: Any, settings: Settings) -> None:
    """The deadline is per stall, not per answer: a client that keeps taking bytes, slower than the server
    sends them and for several times http_send_timeout in all, receives every byte."""
    live = await server_factory(settings.model_copy(update={"http_send_timeout": 0.5}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        url = f"/api/training/sessions/{await wide_session(client, 'steady')}/export?format=json"
        expected = (await client.get(url)).content
    sock = await small_window_get(live, url)
    try:
        raw = await read_to_end(sock, pause=0.1)
    finally:
        sock.close()
    assert raw.endswith(LAST_CHUNK)
    assert len(raw) > len(expected)  # every byte, with the chunks' framing


async def test_past_max_downloads_per_client_a_history_page_or_export_is_429(
    server_factory: Any, settings: Settings
) -> None:
    """One client's downloads in flight are bounded: while one it does not read holds the only slot, its next
    history page or export is refused before any read, other reads go on, and the slot comes back when it goes."""
    live = await server_factory(settings.model_copy(update={"max_downloads_per_client": 1}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        prefix = f"/api/training/sessions/{await wide_session(client, 'hoarder')}"
        sock = await small_window_get(live, f"{prefix}/export?format=json")
        try:
            for path in ("/history?limit=10", "/export?format=csv"):
                refused = await client.get(prefix + path)
                assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
                assert "max_downloads_per_client" in refused.json()["detail"] and refused.json()["limit"] == 1
            assert (await client.get(f"{prefix}/summary")).status_code == 200
        finally:
            sock.close()
        async with asyncio.timeout(TIMEOUT):  # once the server has seen the client go
            while (await client.get(f"{prefix}/history?limit=10")).status_code == 429:
                await asyncio.sleep(0.05)
