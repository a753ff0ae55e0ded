"""The broker interface: publish and subscribe encoded frames by channel.

The broker is a fast path, never the source of truth: a frame it loses is found by the hub's seq
check and read from the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, Self


class Broker(Protocol):
    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def publish(self, channel: str, payload: bytes) -> None:
        """Send `payload` to every instance subscribed to `channel`.

        Raises:
            BrokerUnavailableError: the broker cannot be reached; the caller logs and carries on.
        """
        ...

    async def subscribe(self, channel: str) -> None:
        """Start receiving `channel`'s payloads from `events()`."""
        ...

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving `channel`; unknown channels are ignored."""
        ...

    def events(self) -> AsyncIterator[tuple[str, bytes]]:
        """(channel, payload) pairs for the subscribed channels, in the order the broker received them."""
        ...


class BrokerUnavailableError(Exception):
    pass
