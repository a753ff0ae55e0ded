"""The Redis broker: several server instances share one live stream through Redis pub/sub."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Self

from bot.server.broker.base import BrokerUnavailableError, Frame

logger = logging.getLogger(__name__)


def encode_payload(frames: Sequence[Frame]) -> bytes:
    """One Redis message per commit and session: a line per frame, `seq type frame`, so no instance parses
    JSON. Frames are single-line JSON (newlines inside strings are escaped), so a newline separates them."""
    return "\n".join(f"{seq} {message_type} {frame}" for seq, message_type, frame in frames).encode()


def decode_payload(payload: bytes) -> list[Frame]:
    frames = []
    for line in payload.decode().split("\n"):
        seq, message_type, frame = line.split(" ", 2)
        frames.append((int(seq), message_type, frame))
    return frames


class RedisBroker:
    def __init__(self, url: str) -> None:
        import redis.asyncio as redis  # imported here: the redis extra is optional

        self._redis_errors = (redis.RedisError, OSError)
        self._client: Any = redis.from_url(url)
        self._pubsub: Any = self._client.pubsub(ignore_subscribe_messages=True)
        self._channels: set[str] = set()

    async def __aenter__(self) -> Self:
        try:
            await self._client.ping()
        except self._redis_errors as exc:
            raise BrokerUnavailableError(f"redis broker cannot be reached: {exc}") from exc
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._pubsub.aclose()
        await self._client.aclose()

    async def publish(self, channel: str, frames: Sequence[Frame]) -> None:
        try:
            await self._client.publish(channel, encode_payload(frames))
        except self._redis_errors as exc:
            raise BrokerUnavailableError(str(exc)) from exc

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        try:
            await self._pubsub.subscribe(channel)
            # redis-py's subscribe does not fail when Redis is away (it would just never deliver); a ping on
            # the same connection does. Its pong comes back through events(), which skips it.
            await self._pubsub.ping()
        except self._redis_errors as exc:
            self._channels.discard(channel)
            raise BrokerUnavailableError(f"redis subscribe to {channel!r} failed: {exc}") from exc

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        try:
            await self._pubsub.unsubscribe(channel)
        except self._redis_errors as exc:
            raise BrokerUnavailableError(f"redis unsubscribe from {channel!r} failed: {exc}") from exc

    async def events(self) -> AsyncIterator[tuple[str, Sequence[Frame]]]:
        while True:
            if not self._channels:
                # redis-py does not read a pubsub connection with no channels subscribed; wait for one.
                await asyncio.sleep(0.05)
                continue
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except self._redis_errors as exc:
                logger.warning("redis broker read failed, retrying: %s", exc)
                await asyncio.sleep(0.5)
                continue
            if message is not None and message["type"] == "message":
                try:
                    frames = decode_payload(message["data"])
                except ValueError:
                    logger.warning("redis broker: skipped a malformed message on %s", message["channel"])
                    continue
                yield message["channel"].decode(), frames
