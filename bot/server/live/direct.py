"""The fan-out fast path: a frame's WebSocket bytes are built once, and each burst (a commit's frames)
is written straight to each idle spectator's transport in one write, without its sender task.

Sending through ASGI (Starlette, then uvicorn, then the websockets framing) one frame at a time from
a task per spectator costs most of a delivery; one write of shared bytes costs a fraction. The hub
takes this path only for a spectator whose sender task is idle and whose transport has little
buffered (Spectator.flush), so frames keep their order and a slow reader still goes through its
bounded queue. It needs uvicorn's websockets-sansio protocol, reached through the raw ASGI `send` (kept in
the scope by RawSendMiddleware); under anything else, or with per-message deflate, the ASGI path is
used for every frame.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send
from websockets.frames import Frame, Opcode
from websockets.protocol import State

if TYPE_CHECKING:
    from bot.server.stats import Stats

RAW_SEND = "tms.raw_send"
BUFFER_LIMIT = 16_384  # bytes waiting in a transport beyond which frames take the spectator's queue


class RawSendMiddleware:
    """Keeps the server's own `send` of a WebSocket connection in its scope, before anything wraps it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] == "websocket":
            scope[RAW_SEND] = send
        return self.app(scope, receive, send)  # not awaited here: no frame of ours for a WebSocket's life


def protocol_of(scope: Scope) -> Any:
    """The server's protocol object of a WebSocket connection (uvicorn's), from the `send` RawSendMiddleware
    kept; None under a server whose `send` is not a protocol's method."""
    return getattr(scope.get(RAW_SEND), "__self__", None)


def forget_handshake(scope: Scope) -> None:
    """uvicorn's websockets-sansio protocol keeps the handshake's request and response, headers and all (about
    3.5 KB), for the connection's whole life, though it reads them only until the handshake is done: an
    accepted spectator lets them go (a tenth of what an idle spectator costs the server). websockets' parser
    keeps the request too, in its generator's frame, out of reach: its headers are emptied (1.4 KB more)."""
    protocol = protocol_of(scope)
    if getattr(protocol, "handshake_complete", False):
        headers: Any = getattr(getattr(protocol, "request", None), "headers", None)
        if callable(getattr(headers, "clear", None)):
            headers.clear()
        for name in ("request", "response"):
            if getattr(protocol, name, None) is not None:
                setattr(protocol, name, None)


def forget_headers(scope: Scope) -> None:
    """A spectator's request headers are read only while it is let in (its origin, its credentials); uvicorn
    keeps them in the scope for the connection's life (700 bytes). Emptied in place, for whatever holds
    the list (Starlette's Headers do)."""
    headers = scope.get("headers")
    if isinstance(headers, list):
        headers.clear()


def transport_of(scope: Scope) -> Any:
    """The connection's asyncio transport, where the server exposes it (uvicorn does); else None."""
    return getattr(protocol_of(scope), "transport", None)


def closing(scope: Scope) -> bool:
    """Whether the connection is on its way out: a close frame went out (ours, or the server's answer to a
    client's protocol error) or its transport is closing. A send that fails then is the peer's doing."""
    if getattr(protocol_of(scope), "close_sent", False):
        return True
    transport = transport_of(scope)
    return transport is not None and bool(transport.is_closing())


async def drained(scope: Scope) -> None:
    """Wait until the connection's transport holds no more than its high-water mark of what was sent.

    uvicorn's sansio and wsproto protocols hand a frame to the transport and return at once (the next send
    waits); the legacy websockets protocol waits after each send, so there is nothing left to wait for."""
    writable = getattr(protocol_of(scope), "writable", None)
    if writable is not None and callable(getattr(writable, "wait", None)):
        await writable.wait()


def cap_send_buffer(scope: Scope, size: int) -> None:
    """Caps the kernel's send buffer of a spectator's connection (Linux doubles `size`; 0 leaves it alone).

    Left to autotuning it grows to 4 MB, so a spectator that stopped reading takes megabytes of frames
    (and the server's time to write them) before its queue, `lag` and close take over; capped, it
    costs a few hundred kilobytes. Spectators that keep up never fill it."""
    transport = transport_of(scope)
    sock = transport.get_extra_info("socket") if size and transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


def wire_frame(text: str) -> bytes:
    """A text frame's bytes as a server sends them (unmasked, uncompressed)."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


class WireFrames:
    """Frames' wire bytes, built once per burst and shared by every spectator the burst is written to: the
    hub makes one for each burst (a commit's frames), so a frame is framed once, not once per spectator."""

    __slots__ = ("_wire",)

    def __init__(self) -> None:
        self._wire: dict[str, bytes] = {}

    def of(self, text: str) -> bytes:
        wire = self._wire.get(text)
        if wire is None:
            wire = self._wire[text] = wire_frame(text)
        return wire


def _sansio_protocol_classes() -> tuple[type, ...]:
    """uvicorn's websockets-sansio protocol and ours made of it (protocol.py), the classes (in the uvicorn
    versions pyproject.toml allows) whose internals the fast path was written and tested against."""
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

        from bot.server.live.protocol import LightWebSocketProtocol
    except ImportError:
        return ()
    return (WebSocketsSansIOProtocol, LightWebSocketProtocol)


class DirectWriter:
    """Writes frames to one connection's transport, when it can take them now."""

    __slots__ = ("_protocol", "_transport", "_conn", "_writable", "_stats")

    def __init__(self, protocol: Any, stats: Stats) -> None:
        # Held directly: uvicorn sets them once per connection, and the fan-out loop reads them for
        # every spectator of every push.
        self._protocol = protocol
        self._transport = protocol.transport
        self._conn = protocol.conn
        self._writable = protocol.writable
        self._stats = stats

    @classmethod
    def attach(cls, scope: Scope, stats: Stats) -> DirectWriter | None:
        """A writer for this connection, or None where only the ASGI path is safe."""
        protocol = protocol_of(scope)
        if protocol is None or type(protocol) not in _sansio_protocol_classes():
            return None  # another server or protocol (wsproto, websockets legacy): the ASGI path
        if getattr(protocol.conn, "extensions", None):  # per-message deflate: frames differ per connection
            return None
        return cls(protocol, stats)

    def write(self, frames: list[str], wire: WireFrames) -> bool:
        """Write the frames now, as one write, and return True; or return False (nothing written)."""
        if not self.can_write():
            return False
        self._transport.write(wire.of(frames[0]) if len(frames) == 1 else b"".join(map(wire.of, frames)))
        self._stats.messages_out += len(frames)
        self._stats.direct_out += len(frames)
        return True

    def write_wire(self, data: bytes | memoryview, count: int) -> bool:
        """Write `count` frames already framed as `data`, as write() does."""
        if not self.can_write():
            return False
        self._transport.write(data)
        self._stats.messages_out += count
        self._stats.direct_out += count
        return True

    def can_write(self) -> bool:
        """Whether the connection is open and its transport has room: frames written now go out in order."""
        transport = self._transport
        return not (
            self._protocol.close_sent
            or not self._writable.is_set()
            or self._conn.state is not State.OPEN
            or transport.is_closing()
            or transport.get_write_buffer_size() > BUFFER_LIMIT
        )
