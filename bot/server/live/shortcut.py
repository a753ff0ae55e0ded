"""Spectators' WebSockets go straight to their handler, past FastAPI's own layers, outer and inner.

Every layer an ASGI connection passes through stays on its stack for as long as the connection lives: a
coroutine frame, and FastAPI's exit stack and wrappers. For an HTTP request that lasts milliseconds; for a
spectator it lasts hours, times thousands of spectators. Past FastAPI 0.165's inner layers (its exception
middleware, its exit stack, the router and the route's wrapper), an idle spectator costs the server 34.4 KB
instead of 44.7 (bench/memory.py, 2,000 spectators); past its outer ones too (Starlette's entry, the server
error, exception telemetry and body limit middlewares, none of which does anything for a WebSocket but pass
it on, and a check per connection of whether OpenTelemetry is configured), another 1.5 KB less. The layers
that check a connection (trusted hosts, browsers' origins) still see it: the app's own middleware, with
SpectatorShortcut as its innermost.
"""

from __future__ import annotations

from collections.abc import Awaitable

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from bot.server.live.direct import protocol_of
from bot.server.live.ws import spectate

PREFIX = "/ws/"


def spectated(scope: Scope) -> str | None:
    """The session id (or room code) in a spectator's path, matched as the router matches `/ws/{session_id}`."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root + "/"):  # behind a proxy's prefix, the path includes it (ASGI 3)
        path = path[len(root) :]
    if path.startswith(PREFIX) and (rest := path[len(PREFIX) :]) and "/" not in rest:
        return rest
    return None


def share_state(scope: Scope) -> None:
    """uvicorn gives each connection a copy of the app's state (450 bytes kept for a spectator's life), so that
    a request may change its own. Spectators only read it (the service, the hub, the settings): they share
    the server's own, where the scope holds a copy of it."""
    shared = getattr(protocol_of(scope), "app_state", None)
    if isinstance(shared, dict) and scope.get("state") is not shared and scope.get("state") == shared:
        scope["state"] = shared


class SpectatorShortcut:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Returns what to await, without awaiting it: no frame of this layer for a spectator's whole life."""
        if scope["type"] == "websocket" and (session_id := spectated(scope)) is not None:
            scope["path_params"] = {"session_id": session_id}
            share_state(scope)
            return spectate(WebSocket(scope, receive, send), session_id)
        return self.app(scope, receive, send)


class SpectatorsFirst(FastAPI):
    """FastAPI, whose spectators go through the app's middleware only (built as Starlette builds it)."""

    _spectators: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            if self.root_path:
                scope["root_path"] = self.root_path
            if spectated(scope) is not None:
                scope["app"] = self
                if self._spectators is None:
                    self._spectators = self._spectator_stack()
                return await self._spectators(scope, receive, send)
        await super().__call__(scope, receive, send)

    def _spectator_stack(self) -> ASGIApp:
        app: ASGIApp = self.router  # not reached: SpectatorShortcut, the innermost, takes every spectator
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return app
