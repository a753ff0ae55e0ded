"""The fan-out fast path: a frame's WebSocket bytes are built once and written straight to each idle
spectator's transport, without waking its sender task.

Waking a task per spectator and sending through ASGI (Starlette, then uvicorn, then the websockets
framing) costs most of a delivery, about 40 µs; one write of shared bytes costs a few. The hub takes
this path only for a spectator whose sender task is idle, whose queue is empty and whose transport
has little buffered, so frames keep their order and a slow reader still goes through its bounded
queue. It needs uvicorn's websockets-sansio protocol, reached through the raw ASGI `send` (kept in
the scope by RawSendMiddleware); under anything else, or with per-message deflate, the ASGI path is
used for every frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send
from websockets.frames import Frame, Opcode
from websockets.protocol import State

if TYPE_CHECKING:
    from bot.server.services import Stats

RAW_SEND = "tms.raw_send"
BUFFER_LIMIT = 16_384  # bytes waiting in a transport beyond which frames take the spectator's queue


class RawSendMiddleware:
    """Keeps the server's own `send` of a WebSocket connection in its scope, before anything wraps it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            scope[RAW_SEND] = send
        await self.app(scope, receive, send)


class _FrameBytes:
    """The last frame's wire bytes: the hub offers one frame to every spectator in turn, so one entry
    is enough for it to be framed once."""

    def __init__(self) -> None:
        self.text = ""
        self.wire = b""

    def of(self, text: str) -> bytes:
        if text is not self.text:
            self.wire = Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
            self.text = text
        return self.wire


_FRAMES = _FrameBytes()


class DirectWriter:
    """Writes frames to one connection's transport, when it can take them now."""

    def __init__(self, protocol: Any, stats: Stats) -> None:
        self._protocol = protocol
        self._stats = stats

    @classmethod
    def attach(cls, scope: Scope, stats: Stats) -> DirectWriter | None:
        """A writer for this connection, or None where only the ASGI path is safe."""
        protocol = getattr(scope.get(RAW_SEND), "__self__", None)
        needed = ("transport", "conn", "writable", "close_sent")
        if protocol is None or not all(hasattr(protocol, name) for name in needed):
            return None
        if getattr(protocol.conn, "extensions", None):  # per-message deflate: frames differ per connection
            return None
        return cls(protocol, stats)

    def write(self, frame: str) -> bool:
        """Write now and return True, or return False (nothing written) if the frame must be queued."""
        protocol = self._protocol
        transport = protocol.transport
        if (
            protocol.close_sent
            or not protocol.writable.is_set()
            or protocol.conn.state is not State.OPEN
            or transport.is_closing()
            or transport.get_write_buffer_size() > BUFFER_LIMIT
        ):
            return False
        transport.write(_FRAMES.of(frame))
        self._stats.messages_out += 1
        return True
