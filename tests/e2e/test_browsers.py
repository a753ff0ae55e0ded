"""What a page on another site could make a browser do to the server, refused (bot/server/edge/browsers.py): a
cross-site form POST, an untyped body (fetch no-cors, sendBeacon), a state-changing request or a WebSocket
from a foreign origin, a rebinding Host. Nothing is stored; the server's own clients are unaffected."""

from __future__ import annotations

import asyncio
import gzip
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets

from bot.config import Settings
from tests.conftest import TIMEOUT, LiveServer, create_session

BASE = "/api/training/sessions"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
async def test_a_cross_site_form_post_is_415_and_stores_nothing(
    live: LiveServer, client: httpx.AsyncClient, content_type: str
) -> None:
    session_id = await create_session(client, "forms")
    body = b'[{"episode": 1}]'
    refused = await client.post(f"{BASE}/{session_id}/metrics", content=body, headers={"Content-Type": content_type})
    assert refused.status_code == 415 and "application/json" in refused.json()["detail"]
    created = await client.post(BASE, content=b'{"training_id": "forged"}', headers={"Content-Type": content_type})
    assert created.status_code == 415
    for content_type_ok in ("application/json", "application/json; charset=utf-8", "application/merge+json"):
        headers = {"Content-Type": content_type_ok}
        assert (await client.post(f"{BASE}/{session_id}/metrics", content=body, headers=headers)).status_code == 200
    assert (await client.get(f"{BASE}/{session_id}")).json()["last_seq"] == 3
    assert (await client.get(f"{BASE}/forged")).status_code == 404


async def test_a_body_with_a_content_coding_is_415_and_stores_nothing(client: httpx.AsyncClient) -> None:
    """Review 1 finding 13: a plain body labelled gzip was stored, a real gzip body was a confusing 422. The
    server reads bodies as they come, so any declared coding but identity is refused, before the body is
    read, on every route that takes one, and the answer says what to do."""
    session_id = await create_session(client, "coded")
    plain = b'[{"episode": 1}]'
    coded = {
        "gzip": (f"{BASE}/{session_id}/metrics", gzip.compress(plain), "gzip"),
        "plain labelled gzip": (f"{BASE}/{session_id}/metrics", plain, "gzip"),
        "plain labelled br": (f"{BASE}/{session_id}/metrics", plain, "BR"),
        "two codings": (f"{BASE}/{session_id}/metrics", plain, "identity, deflate"),
        "a session": (BASE, b'{"training_id": "compressed"}', "gzip"),
    }
    for name, (url, body, coding) in coded.items():
        headers = {"Content-Type": "application/json", "Content-Encoding": coding}
        refused = await client.post(url, content=body, headers=headers)
        assert refused.status_code == 415, (name, refused.text)
        detail = refused.json()["detail"]
        assert "content codings are not supported" in detail and "uncompressed" in detail, detail
        assert coding.split(",")[-1].strip().lower() in detail, detail
    status = await client.put(
        f"{BASE}/{session_id}", content=b'{"status": "failed"}', headers={"Content-Encoding": "gzip"}
    )
    assert status.status_code == 415
    session = (await client.get(f"{BASE}/{session_id}")).json()
    assert (session["last_seq"], session["status"]) == (0, "created")
    assert (await client.get(f"{BASE}/compressed")).status_code == 404
    identity = {"Content-Type": "application/json", "Content-Encoding": "identity"}
    assert (await client.post(f"{BASE}/{session_id}/metrics", content=plain, headers=identity)).status_code == 200


async def test_a_body_without_a_json_content_type_is_415_and_stores_nothing(
    live: LiveServer, client: httpx.AsyncClient
) -> None:
    """What fetch no-cors and sendBeacon send with an untyped Blob: a body and no Content-Type, by length or
    chunked, on any state-changing method. A request with no body at all is still taken (a heartbeat, the
    original design's `curl -X POST .../api/training/stop`)."""
    session_id = await create_session(client, "untyped")

    async def chunks() -> AsyncIterator[bytes]:
        yield b'[{"episode": 1}]'

    untyped = {
        "metrics by length": client.post(f"{BASE}/{session_id}/metrics", content=b'{"episode": 1}'),
        "metrics chunked": client.post(f"{BASE}/{session_id}/metrics", content=chunks()),
        "a session": client.post(BASE, content=b'{"training_id": "forged"}'),
        "a status": client.put(f"{BASE}/{session_id}", content=b'{"status": "failed"}'),
        "a deletion": client.request("DELETE", f"{BASE}/{session_id}", content=b"{}"),
        "a job": client.post("/api/training/start", content=b'{"scenario_name": "x", "num_episodes": 10000000}'),
    }
    statuses = {name: (await request).status_code for name, request in untyped.items()}
    assert statuses == dict.fromkeys(untyped, 415), statuses
    refused = await client.post(f"{BASE}/{session_id}/metrics", content=b'{"episode": 1}')
    assert "Content-Type" in refused.json()["detail"]
    session = (await client.get(f"{BASE}/{session_id}")).json()
    assert (session["last_seq"], session["status"]) == (0, "created")
    assert (await client.get(f"{BASE}/forged")).status_code == 404

    assert (await client.post(f"{BASE}/{session_id}/heartbeat")).status_code == 200  # Content-Length: 0
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)  # no Content-Length at all
    writer.write(f"POST /api/training/stop HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n\r\n".encode())
    async with asyncio.timeout(TIMEOUT):
        status_line = await reader.readline()
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 400"), status_line  # no job to stop: the route answered
    typed = {"Content-Type": "application/json"}
    assert (await client.post(f"{BASE}/{session_id}/metrics", content=chunks(), headers=typed)).status_code == 200


async def test_a_foreign_origin_is_refused_on_every_state_changing_route(
    server_factory: Any, settings: Settings
) -> None:
    """Every POST, PUT and DELETE of the API, with a JSON body, from a page of another origin (or a sandboxed
    one, `Origin: null`): 403 before any route, nothing changed. The server's own pages, the allowed origins
    and clients that send no Origin are taken; reads from anywhere are the browser's CORS business."""
    live = await server_factory(settings.model_copy(update={"cors_origins": ["https://dashboard.example"]}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "origins")
        paths = (await client.get("/openapi.json")).json()["paths"]
        operations = [
            (method.upper(), re.sub(r"\{session_id\}", session_id, path))
            for path, methods in paths.items()
            for method in methods
            if method.upper() in ("POST", "PUT", "PATCH", "DELETE")
        ]
        assert len(operations) >= 10
        answers = {}
        for origin in ("https://evil.example", "null", f"http://localhost:{live.port}"):
            for method, url in operations:
                response = await client.request(method, url, json={}, headers={"Origin": origin})
                answers[f"{origin} {method} {url}"] = response.status_code
        assert set(answers.values()) == {403}, answers
        assert "Origin" in (await client.post(BASE, json={}, headers={"Origin": "null"})).json()["detail"]
        listed = (await client.get(BASE, headers={"Origin": "https://evil.example"})).json()["sessions"]
        assert [s["session_id"] for s in listed] == [session_id]
        assert (await client.get(f"{BASE}/{session_id}")).json()["last_seq"] == 0

        push = f"{BASE}/{session_id}/metrics"
        for origin in (
            None,
            f"http://127.0.0.1:{live.port}",
            "https://dashboard.example",
            "https://DASHBOARD.example/",
        ):
            headers = {"Origin": origin} if origin else {}
            assert (await client.post(push, json={"episode": 1}, headers=headers)).status_code == 200, origin
        assert (await client.get(f"{BASE}/{session_id}")).json()["last_seq"] == 4


async def test_a_websocket_from_a_foreign_origin_is_refused(server_factory: Any, settings: Settings) -> None:
    live = await server_factory(settings.model_copy(update={"cors_origins": ["https://dashboard.example"]}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "origins")
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(live.ws_url(session_id), origin="https://evil.example", open_timeout=TIMEOUT)
    assert refused.value.response.status_code == 403
    for origin in (None, f"http://127.0.0.1:{live.port}", "https://dashboard.example"):
        async with websockets.connect(live.ws_url(session_id), origin=origin, open_timeout=TIMEOUT) as ws:
            assert "connection_status" in await ws.recv()


async def test_a_rebinding_host_is_refused(live: LiveServer, client: httpx.AsyncClient) -> None:
    session_id = await create_session(client, "rebinding")
    evil = {"Host": f"attacker.example:{live.port}"}
    assert (await client.get("/health", headers=evil)).status_code == 400
    pushed = await client.post(f"{BASE}/{session_id}/metrics", json={"episode": 1}, headers=evil)
    assert pushed.status_code == 400
    reader, writer = await asyncio.open_connection("127.0.0.1", live.port)  # the client library sets its own Host
    writer.write(
        f"GET /ws/{session_id} HTTP/1.1\r\nHost: attacker.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    async with asyncio.timeout(TIMEOUT):
        assert (await reader.readline()).startswith(b"HTTP/1.1 400")
    writer.close()
    for host in (f"localhost:{live.port}", f"127.0.0.1:{live.port}"):
        assert (await client.get("/health", headers={"Host": host})).status_code == 200
    assert (await client.get(f"{BASE}/{session_id}")).json()["last_seq"] == 0


async def test_allowed_hosts_can_be_set(server_factory: Any, settings: Settings) -> None:
    live = await server_factory(settings.model_copy(update={"allowed_hosts": ["metrics.lab", "127.0.0.1"]}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        assert (await client.get("/health", headers={"Host": "metrics.lab"})).status_code == 200
        assert (await client.get("/health", headers={"Host": "metrics.example.org"})).status_code == 400


async def test_loopback_is_always_allowed_beside_the_allowed_hosts(server_factory: Any, settings: Settings) -> None:
    """TMS_ALLOWED_HOSTS=metrics.example.org, as the Dockerfile advises: its health check on 127.0.0.1 (and
    anything else on the machine itself, by a loopback name) is still answered; another name is not. A
    DNS-rebinding page cannot send a loopback Host, so answering one opens nothing."""
    live = await server_factory(settings.model_copy(update={"allowed_hosts": ["metrics.example.org"]}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        for host in (f"127.0.0.1:{live.port}", "localhost", "[::1]:8000", "metrics.example.org"):
            assert (await client.get("/health", headers={"Host": host})).status_code == 200, host
        assert (await client.get("/health", headers={"Host": "attacker.example"})).status_code == 400
