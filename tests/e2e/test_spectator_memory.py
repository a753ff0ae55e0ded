"""What an idle spectator keeps in the server, past its join: no handshake (uvicorn kept the request and the
response, headers and all, for the connection's life; the scope's headers; a copy of the app's state), no
subscription set or queue deque of its own, no deque in its connection's protocol (uvicorn's receive queue
and writable event held four from the start), and on its stack none of FastAPI's layers, only the app's own
middleware that checks it."""

from __future__ import annotations

import asyncio
import collections
import gc
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from bot.server.live.spectator import NO_ITEMS, Spectator
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
    gc.collect()  # the same test's on another backend, closed, may be in cycles not collected yet
    protocols = [
        o
        for o in gc.get_objects()
        if issubclass(type(o), WebSocketsSansIOProtocol)
        and getattr(o, "scope", {}).get("path") == path
        and not o.disconnected
    ]
    assert len(protocols) == 3
    assert all(p.request is None and p.response is None for p in protocols)
    assert all(p.scope["headers"] == [] and p.scope["state"] is p.app_state for p in protocols)
    kept = [p.conn.parser.gi_frame.f_locals.get("request") for p in protocols]  # websockets' parser keeps it
    assert all(request is not None and not list(request.headers.raw_items()) for request in kept)
    held = [gc.get_referents(p.queue, p.writable, *gc.get_referents(p.queue, p.writable)) for p in protocols]
    assert not [o for objects in held for o in objects if type(o) is collections.deque]
    watching = [o for o in gc.get_objects() if type(o) is Spectator and o.session_id == session_id]
    assert len(watching) == 3
    assert all(s.queue.items is NO_ITEMS for s in watching)  # no deque of its own while nothing waits
    assert len({id(s.queue.types) for s in watching}) == 2  # two choices of types, two sets


def awaiting(coroutine: Any) -> list[str]:
    """The qualified names of the coroutines a coroutine awaits, down to the innermost."""
    names = []
    while coroutine is not None and hasattr(coroutine, "cr_code"):
        names.append(coroutine.cr_code.co_qualname)
        coroutine = coroutine.cr_await
    return names


async def test_a_spectators_stack_holds_the_checks_and_not_fastapis_layers(
    live: LiveServer, client: httpx.AsyncClient, spectators: Callable[..., Awaitable[Any]]
) -> None:
    session_id = await create_session(client, "short-stack")
    await connect_and_sync(spectators, live.ws_url(session_id))
    stacks = [awaiting(task.get_coro()) for task in asyncio.all_tasks()]
    [stack] = [stack for stack in stacks if "spectate" in stack]
    assert "TrustedHostMiddleware.__call__" in stack, stack
    assert not [name for name in stack if name.startswith(("Starlette.", "ServerErrorMiddleware."))], stack
