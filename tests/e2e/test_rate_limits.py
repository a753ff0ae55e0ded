"""Per-client rate limits (`enable_rate_limiting`), over real sockets: 429 with Retry-After on HTTP, 4429 with
`retry_after` on the WebSocket, nothing stored past a limit, other clients unaffected; the SDK waits and
delivers everything; with Redis the limit holds across instances."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets

from bot.config import Settings
from bot.sdk import MetricsClient
from tests.conftest import TIMEOUT, LiveServer, close_code, connect_and_sync, create_session, recv_data, recv_until
from tests.e2e.test_auth import SECRET, bearer, keys

BASE = "/api/training/sessions"


def limited(settings: Settings, **rules: str) -> Settings:
    return settings.model_copy(
        update={"enable_rate_limiting": True, **{f"rate_limit_{k}": v for k, v in rules.items()}}
    )


async def last_seq(client: httpx.AsyncClient, session_id: str, headers: dict[str, str] | None = None) -> int:
    seq: int = (await client.get(f"{BASE}/{session_id}", headers=headers)).json()["last_seq"]
    return seq


async def test_ingest_past_its_limit_is_429_with_retry_after(
    server_factory: Any, settings: Settings, spectators: Any
) -> None:
    live = await server_factory(limited(settings, ingest="3/minute"))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "limited")
        watcher = await connect_and_sync(spectators, live.ws_url(session_id))
        for episode in range(3):
            assert (await client.post(f"{BASE}/{session_id}/metrics", json={"episode": episode})).status_code == 200
        refused = await client.post(f"{BASE}/{session_id}/metrics", json={"episode": 3})
        assert refused.status_code == 429, refused.text
        assert 1 <= int(refused.headers["retry-after"]) <= 60 and refused.json()["retry_after"] > 0
        assert "3 per 1 minute" in refused.json()["limit"]
        assert await last_seq(client, session_id) == 3  # nothing of the refused request
        assert [m["data"]["episode"] for m in await recv_data(watcher, 3)] == [0, 1, 2]
        assert (await client.get("/health")).status_code == 200


async def test_a_made_up_authorization_header_buys_no_new_budget(
    server_factory: Any, settings: Settings, spectators: Any
) -> None:
    """Issue #25.6: with auth off, a new made-up `Authorization` per request got a new budget each time; it
    is no credential, so every request of the client counts against its address."""
    live = await server_factory(limited(settings, ingest="3/minute", ws_connect="3/minute"))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "made-up")
        statuses = []
        for episode in range(8):
            made_up = {"Authorization": f"Bearer made-up-{episode}"}
            response = await client.post(f"{BASE}/{session_id}/metrics", json={"episode": episode}, headers=made_up)
            statuses.append(response.status_code)
        assert statuses == [200] * 3 + [429] * 5
        assert await last_seq(client, session_id) == 3
    codes = []
    for attempt in range(6):
        ws = await spectators(
            live.ws_url(session_id), additional_headers={"Authorization": f"Bearer made-up-{attempt}"}
        )
        codes.append(orjson.loads(await ws.recv())["type"])
    assert codes == ["connection_status"] * 3 + ["error"] * 3
    assert await close_code(ws) == 4429


async def test_a_verified_credential_has_a_budget_of_its_own(server_factory: Any, settings: Settings) -> None:
    """With auth on, each key's budget follows it; a header that is no valid key is refused (401, 4401) and
    counted against the address it came from, whatever it says."""
    update = {"enable_auth": True, "jwt_secret_key": SECRET}
    live = await server_factory(limited(settings, ingest="3/minute", ws_connect="3/minute").model_copy(update=update))
    first, second, reader = keys(settings.database_url, (["admin"], None), (["admin"], None), (["read"], None))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        await client.post(BASE, json={"training_id": "keyed"}, headers=bearer(first))
        push = f"{BASE}/keyed/metrics"
        statuses = [(await client.post(push, json={"episode": e}, headers=bearer(first))).status_code for e in range(4)]
        assert statuses == [200, 200, 200, 429]
        assert (await client.post(push, json={"episode": 4}, headers=bearer(second))).status_code == 200
        assert (await client.post(push, json={"episode": 5}, headers=bearer("made-up"))).status_code == 401
        assert await last_seq(client, "keyed", bearer(second)) == 4

    async def connect(credential: str) -> tuple[str, int | None]:
        async with websockets.connect(
            live.ws_url("keyed"), additional_headers=bearer(credential), open_timeout=TIMEOUT
        ) as ws:
            first_message = orjson.loads(await ws.recv())
            if first_message["type"] == "connection_status":
                return "in", None
            return first_message["data"]["code"], await close_code(ws)

    assert [await connect(reader) for _ in range(4)] == [("in", None)] * 3 + [("rate_limited", 4429)]
    made_up = [await connect(f"made-up-{attempt}") for attempt in range(4)]
    assert made_up == [("unauthorized", 4401)] * 3 + [("rate_limited", 4429)]
    assert await connect(second) == ("in", None)


async def test_limits_are_off_unless_enabled(live: LiveServer, client: httpx.AsyncClient) -> None:
    session_id = await create_session(client, "unlimited")
    for episode in range(30):
        assert (await client.post(f"{BASE}/{session_id}/metrics", json={"episode": episode})).status_code == 200


async def test_spectator_connections_and_messages_past_their_limits_close_with_4429(
    server_factory: Any, settings: Settings, spectators: Any
) -> None:
    live = await server_factory(limited(settings, ws_connect="3/minute", ws_message="4/minute"))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "chatty")
        first = await connect_and_sync(spectators, live.ws_url(session_id))
        chatty = await connect_and_sync(spectators, live.ws_url(session_id))
        for _ in range(4):
            await chatty.send(orjson.dumps({"type": "ping"}).decode())
            await recv_until(chatty, "pong")
        await chatty.send(orjson.dumps({"type": "ping"}).decode())
        error = await recv_until(chatty, "error")
        assert error["data"]["code"] == "rate_limited" and error["data"]["retry_after"] > 0
        assert await close_code(chatty) == 4429
        await spectators(live.ws_url(session_id))  # the third connection this minute
        fourth = await spectators(live.ws_url(session_id))
        refusal = orjson.loads(await fourth.recv())
        assert refusal["data"]["code"] == "rate_limited" and "retry" in refusal["data"]["message"]
        assert await close_code(fourth) == 4429
        await client.post(f"{BASE}/{session_id}/metrics", json={"episode": 1})
        assert (await recv_data(first, 1))[0]["data"]["episode"] == 1  # the others carry on


async def test_room_password_attempts_are_limited_per_client(server_factory: Any, settings: Settings) -> None:
    live = await server_factory(limited(settings, room_password="2/minute"))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        rooms = []
        for name in ("room-a", "room-b"):
            response = await client.post(BASE, json={"training_id": name, "room": {"password": "correct horse"}})
            assert response.status_code == 201
            rooms.append(name)
    codes = []
    for room in (*rooms, rooms[0]):  # two rooms: the per-room back-off is not what stops the third
        async with websockets.connect(live.ws_url(room, "password=wrong-guess"), open_timeout=TIMEOUT) as ws:
            error = orjson.loads(await ws.recv())["data"]["code"]
            codes.append((error, await close_code(ws)))
    assert codes == [("forbidden", 4403), ("forbidden", 4403), ("rate_limited", 4429)]


@pytest.mark.slow  # the SDK waits out the server's Retry-After
async def test_the_sdk_waits_for_retry_after_and_delivers_everything(
    server_factory: Any, settings: Settings, tmp_path: Path
) -> None:
    live = await server_factory(limited(settings, ingest="2/second"))

    def train() -> str:
        with MetricsClient(live.url, spool_dir=tmp_path, batch_size=10, flush_timeout=30) as client:
            with client.session(name="patient") as run:
                for episode in range(60):
                    run.log_metrics(episode=episode)
            return run.session_id

    session_id = await asyncio.to_thread(train)
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        history = (await client.get(f"{BASE}/{session_id}/history", params={"limit": 1000})).json()
    episodes = [m["data"]["episode"] for m in history["messages"] if m["type"] == "training_metrics"]
    assert episodes == list(range(60))


async def test_with_redis_a_limit_holds_across_instances(
    server_factory: Any, settings: Settings, redis_url: str, backend: str
) -> None:
    if backend == "sqlite":
        pytest.skip("two instances share PostgreSQL")
    update = {"redis_url": redis_url, "enable_auth": True, "jwt_secret_key": SECRET}
    shared = limited(settings, ingest="4/minute").model_copy(update=update)
    first, second = await server_factory(shared), await server_factory(shared)
    (key,) = keys(settings.database_url, (["admin"], None))  # a credential of this test's own: its own counter
    async with httpx.AsyncClient(timeout=TIMEOUT, headers=bearer(key)) as client:
        async with httpx.AsyncClient(base_url=first.url, timeout=TIMEOUT, headers=bearer(key)) as creator:
            session_id = await create_session(creator, "across")
        statuses = []
        for episode in range(6):
            live: LiveServer = (first, second)[episode % 2]
            response = await client.post(f"{live.url}{BASE}/{session_id}/metrics", json={"episode": episode})
            statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 200, 429, 429]
