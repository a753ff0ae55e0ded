"""The broker interface: publish and subscribe a commit's frames by channel.

The broker is a fast path, never the source of truth: a frame it loses is found by the hub's seq
check and read from the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol, Self

# (seq, type, frame): a frame as stored and sent, with what the hub orders and filters it by.
Frame = tuple[int, str, str]

CHANNEL_PREFIX = "tms:session:"


def channel_for(session_id: str, epoch: str) -> str:
    """The channel an incarnation of a session (its epoch) has its frames travel on: services publish there,
    hubs subscribe. One per incarnation, so that a hub that missed a `session_deleted` frame never takes the
    next incarnation's seqs for the ones after its own."""
    return f"{CHANNEL_PREFIX}{epoch}:{session_id}"


def parse_channel(channel: str) -> tuple[str, str]:
    """(session id, epoch) of a channel made by channel_for (an epoch is hex: no colon in it)."""
    epoch, _, session_id = channel[len(CHANNEL_PREFIX) :].partition(":")
    return session_id, epoch


class Broker(Protocol):
    name: str  # for logs and /health: "memory", or "redis at host:port"

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def publish(self, channel: str, frames: Sequence[Frame]) -> None:
        """Send one commit's frames (in seq order) to every instance subscribed to `channel`.

        Raises:
            BrokerUnavailableError: the broker cannot be reached; the caller logs and carries on.
        """
        ...

    async def publish_all(self, messages: Sequence[tuple[str, Sequence[Frame]]]) -> None:
        """publish() each (channel, frames) in order, in as few round trips as the broker allows; with no
        messages, a round trip to the broker all the same.

        Raises:
            BrokerUnavailableError: the broker cannot be reached.
        """
        ...

    def problem(self) -> str | None:
        """Why the broker's subscription side is not delivering (None: it is, as far as can be told)."""
        ...

    async def subscribe(self, channel: str) -> None:
        """Start receiving `channel`'s frames from `events()`.

        Raises:
            BrokerUnavailableError: the broker cannot be reached; the spectator that asked is told.
        """
        ...

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving `channel`; unknown channels are ignored.

        Raises:
            BrokerUnavailableError: the broker cannot be reached.
        """
        ...

    def events(self) -> AsyncIterator[tuple[str, Sequence[Frame]]]:
        """(channel, frames) pairs for the subscribed channels, in the order the broker received them."""
        ...


class BrokerUnavailableError(Exception):
    pass
