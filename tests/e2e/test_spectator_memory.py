"""What an idle spectator keeps in the server, past its join: no handshake (uvicorn kept the request and the
response, headers and all, for the connection's life), and no subscription set of its own."""

from __future__ import annotations

import gc
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from bot.server.live.spectator import Spectator
from tests.conftest import LiveServer, connect_and_sync, create_session


async def test_joined_spectators_keep_no_handshake_and_share_their_subscriptions(
    live: LiveServer, client: httpx.AsyncClient, spectators: Callable[..., Awaitable[Any]]
) -> None:
    session_id = await create_session(client, "lean")
    for query in ("", "", "types=training_metrics"):
        await connect_and_sync(spectators, live.ws_url(session_id, query))
    # type(), not isinstance(): some objects of other tests' imports (torch's) warn when asked their __class__;
    # only this test's connections: other tests' servers may have left theirs (Socket.IO's keep their handshake)
    path = f"/ws/{session_id}"
    protocols = [
        o
        for o in gc.get_objects()
        if issubclass(type(o), WebSocketsSansIOProtocol) and getattr(o, "scope", {}).get("path") == path
    ]
    assert len(protocols) == 3
    assert all(p.request is None and p.response is None for p in protocols)
    watching = [o for o in gc.get_objects() if type(o) is Spectator and o.session_id == session_id]
    assert len(watching) == 3
    assert len({id(s.queue.types) for s in watching}) == 2  # two choices of types, two sets
