"""Accepting new connections a few per event-loop turn, so a burst of them cannot stall the live stream.

uvloop (as libuv) accepts every connection waiting in the kernel's queue in one go, and asyncio up to the
listen backlog (2,048 for uvicorn). In a reconnect storm that is 2,000 connections whose handshakes, joins
and first writes then all run in the same few loop turns: a live push arriving meanwhile waited 0.5-0.9 s
behind them (bench/instances.py). Accepted a few per turn, their work is spread over many short turns, and
the live push is served between them. Connections wait in the kernel's queue meanwhile, as they would
under any load; the rate of accepts stays the server's own rate of joins.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

logger = logging.getLogger(__name__)

PER_TURN = 4  # connections accepted per event-loop turn
RETRY_SECONDS = 1.0  # after running out of file descriptors or memory (asyncio waits as long)
OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class PacedAcceptor:
    """Serves `protocol_factory` on a listening socket, accepting at most `per_turn` connections a turn."""

    def __init__(
        self, sock: socket.socket, protocol_factory: Callable[[], asyncio.Protocol], per_turn: int = PER_TURN
    ) -> None:
        self.sock = sock
        self.protocol_factory = protocol_factory
        self.per_turn = per_turn
        self._loop = asyncio.get_running_loop()
        self._starting: set[asyncio.Task[None]] = set()
        self._retry: asyncio.TimerHandle | None = None
        sock.setblocking(False)

    @classmethod
    def take_over(
        cls, server: asyncio.AbstractServer, protocol_factory: Callable[[], asyncio.Protocol]
    ) -> list[PacedAcceptor]:
        """Acceptors for a started asyncio (or uvloop) server's listening TCP sockets, which it stops serving:
        they stay open, and what waits in their queues is accepted here. (Closing a Unix socket's server
        removes its file on Python 3.13: bot serve takes over TCP servers only, and not SSL ones.)"""
        sockets = [s.dup() for s in getattr(server, "sockets", None) or ()]
        server.close()
        acceptors = [cls(sock, protocol_factory) for sock in sockets]
        for acceptor in acceptors:
            acceptor.start()
        return acceptors

    def start(self) -> None:
        self._retry = None
        self._loop.add_reader(self.sock.fileno(), self._accept)

    def close(self) -> None:
        """No more connections: the listening socket is closed (those accepted are the server's to end)."""
        if self._retry is not None:
            self._retry.cancel()
        if self.sock.fileno() != -1:
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()

    def _accept(self) -> None:
        for _ in range(self.per_turn):
            try:
                conn, _address = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in OUT_OF_RESOURCES:
                    raise
                logger.error("could not accept a connection (%s): trying again in %g s", exc, RETRY_SECONDS)
                self._loop.remove_reader(self.sock.fileno())
                self._retry = self._loop.call_later(RETRY_SECONDS, self.start)
                return
            conn.setblocking(False)
            if conn.family in (socket.AF_INET, socket.AF_INET6):
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = self._loop.create_task(self._connect(conn))
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(self.protocol_factory, conn)
        except OSError:
            conn.close()  # it went away before its transport was made
        except Exception:
            logger.exception("could not serve an accepted connection; it is closed")
            conn.close()
