"""HTTP connections that cannot hold the server: bounded request heads, read deadlines, a connection cap.

uvicorn's httptools protocol bounds none of these. A 60 MB header is gathered whole by the parser (and
blocked the event loop for seconds), a WebSocket upgrade with a 100 KB path got no answer, a client that
sends a header byte every few seconds (slowloris) or nothing at all kept its socket for ever, and 21,000
idle connections took every file descriptor, so that new clients were dropped unanswered.

Here each refusal is a short JSON answer with `Connection: close`:
- 414 when the request line's target passes `max_url_bytes`, 431 when the head passes `max_header_bytes`
  (counted as it arrives, before the parser has gathered it);
- 408 when the head has not arrived within `http_header_timeout` of the connection (or of the first byte
  of the next request), or the body within `http_body_timeout` of the head;
- 503 with Retry-After when the process already holds `max_connections` connections (HTTP and WebSocket):
  the connection is answered after its head is read, and closed, so the excess never piles up.
Idle keep-alive connections are closed by uvicorn after `http_idle_timeout`.

The answer has a deadline too (SendDeadline): a client that asks for a big download and then reads nothing
held the answer's memory (30 MB for a history page of 100,000 messages) for as long as it kept the socket
open. Once the transport's write buffer passes its high-water mark, the buffer must shrink at least once every
`http_send_timeout` seconds, else the connection is aborted and the memory freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from bot.server.pacing import PerTurn

logger = logging.getLogger(__name__)

LINGER_SECONDS = 2.0
FD_MARGIN = 256  # descriptors kept for the database, the ingest workers, logs and the listening sockets


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    max_url_bytes: int
    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    send_timeout: float


def default_max_connections() -> int:
    """What the process can hold open: its soft limit of open files, less a margin for everything else."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(64, (soft if soft != resource.RLIM_INFINITY else 65_536) - FD_MARGIN)


class SendDeadline:
    """Calls `on_stall` when an answer stops moving: `paused()` (the write buffer passed its high-water mark)
    arms a timer, and each time it fires the buffer must have shrunk since the last look, else the client took
    no byte for `seconds`. `resumed()` (the buffer fell below its low-water mark) disarms it.

    Per stall, not per answer: a slow client that keeps taking bytes is never cut, however long its download.
    Not a deadline on `drain()` alone: an answer sent in one piece is written whole to the buffer, and then
    nobody waits on `drain()` while the buffer holds it.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        seconds: float,
        buffered: Callable[[], int],
        on_stall: Callable[[], None],
    ) -> None:
        self._loop = loop
        self.seconds = seconds
        self._buffered = buffered
        self._on_stall = on_stall
        self._last = 0
        self._timer: asyncio.TimerHandle | None = None

    def paused(self) -> None:
        if self._timer is None:
            self._last = self._buffered()
            self._timer = self._loop.call_later(self.seconds, self._look)

    def resumed(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _look(self) -> None:
        # uvicorn writes nothing while the buffer is over its mark (send() awaits drain()), so it only shrinks.
        now = self._buffered()
        if now < self._last:
            self._last = now
            self._timer = self._loop.call_later(self.seconds, self._look)
        else:
            self._timer = None
            self._on_stall()


def abort_with_reset(transport: asyncio.Transport) -> None:
    """Drop the connection and what its buffers hold: abort() discards the transport's buffer (close() would
    keep it until the client takes it), and a zero linger makes the kernel discard its own and send a reset,
    instead of keeping an orphan socket for minutes."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


class _Refused(Exception):
    """Raised in a parser callback to stop parsing; uvicorn then calls send_400_response."""


class GuardedHttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        # New connections' first requests are parsed a few per loop turn (bot/server/pacing.py): a storm's
        # clients send their handshakes in bursts, hundreds readable at once, 0.2 ms of parsing each.
        self.intake: PerTurn = self.server_state.__dict__.setdefault("tms_intake", PerTurn())
        self.taken_in = False
        self.held: list[bytes] | None = None  # what arrived before the intake took the connection in
        self.head_bytes = 0
        self.reading_head = False
        self.over_capacity = False
        self.refusal: tuple[int, str, dict[str, str]] | None = None
        self.deadline: asyncio.TimerHandle | None = None
        self.refusal_sent = False
        self.send_deadline = SendDeadline(self.loop, limits.send_timeout, self._buffered, self._send_stalled)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.over_capacity = len(self.connections) > self.limits.max_connections
        self._arm(self.limits.header_timeout, "the request head did not arrive in time (http_header_timeout)")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.send_deadline.resumed()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self.send_deadline.paused()

    def resume_writing(self) -> None:
        self.send_deadline.resumed()
        super().resume_writing()

    def _buffered(self) -> int:
        return self.transport.get_write_buffer_size()

    def _send_stalled(self) -> None:
        if self.transport.get_protocol() is not self:  # upgraded meanwhile: the WebSocket has its own deadlines
            return
        logger.info(
            "aborted the connection of %s: its answer took no bytes for %g s (http_send_timeout)",
            f"{self.client[0]}:{self.client[1]}" if self.client else "a client",
            self.limits.send_timeout,
        )
        abort_with_reset(self.transport)

    def data_received(self, data: bytes) -> None:
        if self.refusal is not None:
            return
        if not self.taken_in:
            if self.held is not None:
                self.held.append(data)
                return
            if not self.intake.now_or_later(self.take_in):
                self.held = [data]
                self.transport.pause_reading()
                return
            self.taken_in = True
        self._parse(data)

    def take_in(self) -> bool:
        """The intake's turn for this connection: what it sent so far is parsed, and it is read again.
        A connection that left meanwhile takes no place; one whose parsing fails (a bug) is closed."""
        if self.transport.is_closing():
            return False
        held, self.held, self.taken_in = self.held or [], None, True
        try:
            self.transport.resume_reading()
            for data in held:
                protocol = self.transport.get_protocol()
                if protocol is self:
                    self._parse(data)
                else:  # upgraded to a WebSocket by an earlier part
                    protocol.data_received(data)  # type: ignore[attr-defined]
        except Exception:
            self.transport.abort()
            raise
        return True

    def _parse(self, data: bytes) -> None:
        if self.refusal is not None:
            return
        super().data_received(data)
        if self.reading_head and self.refusal is None:
            self.head_bytes += len(data)
            if self.head_bytes > self.limits.max_header_bytes + self.limits.max_url_bytes:
                self._refuse(431, self._head_too_large())

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_bytes = 0
        self.reading_head = True
        if self.deadline is None:
            self._arm(self.limits.header_timeout, "the request head did not arrive in time (http_header_timeout)")

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_url_bytes:
            self.refusal = (414, f"the URL is over {self.limits.max_url_bytes} bytes (max_url_bytes)", {})
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_bytes += len(name) + len(value) + 4
        if self.head_bytes > self.limits.max_header_bytes:
            self.refusal = (
                431,
                f"the request head is over {self.limits.max_header_bytes} bytes (max_header_bytes)",
                {},
            )
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.reading_head = False
        self._disarm()
        if self.over_capacity:
            why = f"the server holds its maximum of {self.limits.max_connections} connections (max_connections)"
            self.refusal = (503, why, {"Retry-After": "1"})
            raise _Refused
        super().on_headers_complete()
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._arm(self.limits.body_timeout, "the request body did not arrive in time (http_body_timeout)")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _head_too_large(self) -> str:
        return f"the request head is over {self.limits.max_header_bytes} bytes (max_header_bytes)"

    def send_400_response(self, msg: str) -> None:
        if self.refusal is None:
            return super().send_400_response(msg)
        status, detail, headers = self.refusal
        self._answer(status, detail, headers)

    def _refuse(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        self.refusal = (status, detail, headers or {})
        self._answer(status, detail, headers or {})

    def _answer(self, status: int, detail: str, headers: dict[str, str]) -> None:
        """A short JSON answer, then close; none once the application has started its own response."""
        self._disarm()
        if self.transport.is_closing() or self.refusal_sent:
            return
        self.refusal_sent = True
        if self.cycle is None or not self.cycle.response_started:
            body = orjson.dumps({"detail": detail})
            head = [STATUS_LINE[status], b"content-type: application/json\r\nconnection: close\r\n"]
            head += [f"{name}: {value}\r\n".encode() for name, value in headers.items()]
            head.append(b"content-length: %d\r\n\r\n" % len(body))
            self.transport.write(b"".join(head) + body)
            if self.cycle is not None:
                self.cycle.response_started = self.cycle.response_complete = True  # the application's is dropped
        # A lingering close: closing with unread input sends a reset, which can destroy the answer before the
        # client reads it. Half-close, discard what still comes (data_received), and close at the client's
        # end of input or after LINGER_SECONDS.
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.deadline = self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()

    def _arm(self, seconds: float, detail: str) -> None:
        self._disarm()
        self.deadline = self.loop.call_later(seconds, self._refuse, 408, detail)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
