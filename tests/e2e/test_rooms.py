"""Spectator rooms: joined by code, guarded by a password, limited in size, all enforced by the server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import websockets

from tests.conftest import LiveServer, connect_and_sync, recv_data, recv_json


async def refused(connect: Any, url: str) -> tuple[dict[str, Any], int]:
    ws = await connect(url)
    error = await recv_json(ws)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await recv_json(ws)
    assert closed.value.rcvd is not None
    return error, closed.value.rcvd.code


async def test_protected_room_needs_its_password_and_keeps_its_limit(
    live: LiveServer, client: httpx.AsyncClient, spectators: Any
) -> None:
    """Joining by room code: no or a wrong password is refused (4403); the room's own limit holds (4429)."""
    created = (
        await client.post(
            "/api/training/sessions",
            json={"training_id": "arena", "room": {"max_spectators": 2, "password_protected": True}},
        )
    ).json()
    code, password = created["room_code"], created["room_password"]
    assert created["password_protected"] and created["max_spectators"] == 2
    assert "room_password" not in (await client.get("/api/training/sessions/arena")).json()

    error, close_code = await refused(spectators, live.ws_url(code))
    assert (error["data"]["code"], close_code) == ("forbidden", 4403)
    error, close_code = await refused(spectators, live.ws_url(code, "password=wrong"))
    assert close_code == 4403 and "wrong" in error["data"]["message"]

    first = await connect_and_sync(spectators, live.ws_url(code.lower(), f"password={password}"))
    await connect_and_sync(spectators, live.ws_url(code, f"password={password}"))
    error, close_code = await refused(spectators, live.ws_url(code, f"password={password}"))
    assert (error["data"]["code"], close_code) == ("session_full", 4429)

    await client.post("/api/training/sessions/arena/metrics", json={"episode": 1})
    assert (await recv_data(first, 1))[0]["session_id"] == "arena"


async def test_open_room_is_joined_by_code_alone(live: LiveServer, client: httpx.AsyncClient, spectators: Any) -> None:
    created = (await client.post("/api/training/sessions", json={"room": {"max_spectators": 5}})).json()
    assert "room_password" not in created and not created["password_protected"]
    await connect_and_sync(spectators, live.ws_url(created["room_code"]))
