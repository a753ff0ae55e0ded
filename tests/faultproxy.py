"""A TCP proxy on 127.0.0.1 that can silence connections (the fault a Redis failover leaves behind) or cut
them (Redis, or the way to it, gone for a while).

A silenced connection stays open and keeps taking the client's bytes, but nothing the server sends reaches
the client any more: a subscription that stops delivering without an error. A cut resets every connection
and refuses new ones until `restore()`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Self


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: list[_Link] = []
        self.down = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for link in self._links:
            link.close()
            for writer in (link.client, link.upstream):
                with contextlib.suppress(ConnectionError, OSError):
                    await writer.wait_closed()
        await self._server.wait_closed()

    def silence(self, which: Callable[[bytes], bool]) -> int:
        """Silence every open connection whose client has sent bytes for which `which` is true; how many."""
        chosen = [link for link in self._links if which(bytes(link.sent))]
        for link in chosen:
            link.silenced = True
        return len(chosen)

    def cut(self) -> None:
        """Reset every connection, and refuse new ones until restore()."""
        self.down = True
        for link in self._links:
            for writer in (link.client, link.upstream):
                writer.transport.abort()

    def restore(self) -> None:
        self.down = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            writer.close()  # marks the writer closed (the transport is gone already)
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        link = _Link(writer, up_writer)
        self._links.append(link)
        await asyncio.gather(link.pump(reader, up_writer, record=True), link.pump(up_reader, writer, record=False))


class _Link:
    def __init__(self, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter) -> None:
        self.client, self.upstream = client, upstream
        self.sent = bytearray()  # what the client sent, to choose connections by
        self.silenced = False

    async def pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, record: bool) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                if record:
                    self.sent += data[: max(0, 4096 - len(self.sent))]
                elif self.silenced:
                    continue
                sink.write(data)
                await sink.drain()
        self.close()

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            writer.close()
