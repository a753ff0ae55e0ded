"""The Redis broker: several server instances share one live stream through Redis pub/sub."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, Self

from bot.server.broker.base import BrokerUnavailableError

logger = logging.getLogger(__name__)


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

    async def publish(self, channel: str, payload: bytes) -> None:
        try:
            await self._client.publish(channel, payload)
        except self._redis_errors as exc:
            raise BrokerUnavailableError(str(exc)) from exc

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        await self._pubsub.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        await self._pubsub.unsubscribe(channel)

    async def events(self) -> AsyncIterator[tuple[str, bytes]]:
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
                yield message["channel"].decode(), message["data"]
