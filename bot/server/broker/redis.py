"""The Redis broker: several server instances share one live stream through Redis pub/sub."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Self

from bot.server.broker.base import BrokerUnavailableError, Frame
from bot.server.supervisor import Supervisor

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
    """Publishes on the shared client; receives on one pubsub connection, watched by a probe round trip.

    Each instance publishes a probe on a channel of its own every `probe_interval` and expects it back on
    its subscription. A subscription that stopped delivering without an error (after a Redis failover, or
    `CLIENT KILL TYPE pubsub`) is found within two intervals, reported by problem() and rebuilt; hubs
    read what it missed meanwhile from the store.
    """

    def __init__(
        self, url: str, *, timeout: float = 0.5, probe_interval: float = 1.0, supervisor: Supervisor | None = None
    ) -> None:
        self.supervisor = supervisor or Supervisor()
        import redis.asyncio as redis  # imported here: the redis extra is optional

        self._redis_errors = (redis.RedisError, OSError)
        # Every call is bounded: older redis-py versions wait forever on a stalled server otherwise.
        self._client: Any = redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=max(timeout, 2.0))
        self._pubsub: Any = self._new_pubsub()
        self._channels: set[str] = set()
        self._timeout = timeout
        self._probe_interval = probe_interval
        self._probe_channel = f"tms:probe:{secrets.token_hex(8)}"
        self._probe_sent = 0.0  # monotonic time of the oldest probe not seen back; 0: none outstanding
        self._problem: str | None = None
        self._rebuild_wanted = False
        self._prober: asyncio.Task[None] | None = None
        pool = self._client.connection_pool.connection_kwargs
        self.name = f"redis at {pool.get('host', '?')}:{pool.get('port', '?')}"

    def _new_pubsub(self) -> Any:
        return self._client.pubsub(ignore_subscribe_messages=True)

    async def __aenter__(self) -> Self:
        try:
            async with asyncio.timeout(self._timeout * 4):
                await self._client.ping()
                await self._subscribe(self._pubsub, self._probe_channel)
        except (TimeoutError, *self._redis_errors) as exc:
            await self._client.aclose()
            raise BrokerUnavailableError(f"{self.name} cannot be reached: {exc or 'no answer'}") from exc
        self._prober = self.supervisor.spawn("broker.probe", self._probe_loop)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._prober is not None:
            await self.supervisor.stop([self._prober])
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()
        await self._client.aclose()

    def problem(self) -> str | None:
        return self._problem

    async def publish(self, channel: str, frames: Sequence[Frame]) -> None:
        await self.publish_all([(channel, frames)])

    async def publish_all(self, messages: Sequence[tuple[str, Sequence[Frame]]]) -> None:
        try:
            if not messages:
                await self._client.ping()
                return
            async with self._client.pipeline(transaction=False) as pipe:
                for channel, frames in messages:
                    pipe.publish(channel, encode_payload(frames))
                await pipe.execute()
        except self._redis_errors as exc:
            raise BrokerUnavailableError(str(exc)) from exc

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        try:
            async with asyncio.timeout(self._timeout * 4):
                await self._subscribe(self._pubsub, channel)
        except (TimeoutError, *self._redis_errors) as exc:
            self._channels.discard(channel)
            raise BrokerUnavailableError(f"redis subscribe to {channel!r} failed: {exc or 'no answer'}") from exc

    async def _subscribe(self, pubsub: Any, *channels: str) -> None:
        await pubsub.subscribe(*channels)
        # redis-py's subscribe does not fail when Redis is away (it would just never deliver); a ping on
        # the same connection does. Its pong comes back through events(), which skips it.
        await pubsub.ping()

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        try:
            async with asyncio.timeout(self._timeout * 4):
                await self._pubsub.unsubscribe(channel)
        except (TimeoutError, *self._redis_errors) as exc:
            # redis-py's connection still lists the channel, and subscribes to it again when it reconnects: the
            # instance would receive (and drop) that session's frames for good. A rebuilt connection subscribes
            # to the channels still watched only.
            self._rebuild_wanted = True
            raise BrokerUnavailableError(f"redis unsubscribe from {channel!r} failed: {exc or 'no answer'}") from exc

    async def events(self) -> AsyncIterator[tuple[str, Sequence[Frame]]]:
        failing = False
        while True:
            if self._rebuild_wanted:  # here, not in the prober: only this loop reads the pubsub connection
                await self._rebuild()
            try:
                message = await self._pubsub.get_message(timeout=min(1.0, self._probe_interval))
            except Exception as exc:  # a broken connection: redis-py reconnects; the probe watches it
                if not failing:
                    logger.warning("redis broker read failed, retrying until it works: %s", exc)
                failing = True
                await asyncio.sleep(min(0.5, self._probe_interval))
                continue
            failing = False
            if message is None or message["type"] != "message":
                continue
            channel = message["channel"].decode()
            if channel == self._probe_channel:
                self._probe_back()
                continue
            try:
                frames = decode_payload(message["data"])
            except ValueError:
                logger.warning("redis broker: skipped a malformed message on %s", channel)
                continue
            yield channel, frames

    def _probe_back(self) -> None:
        self._probe_sent = 0.0
        if self._problem is not None:
            logger.info("%s delivers again", self.name)
        self._problem = None

    async def _probe_loop(self) -> None:
        while True:
            await asyncio.sleep(self._probe_interval)
            now = time.monotonic()
            if self._probe_sent and now - self._probe_sent > 2 * self._probe_interval:
                self._problem = f"{self.name}: the subscription brought no probe back in {2 * self._probe_interval:g} s"
                logger.warning("%s; rebuilding it (spectators get what it missed from the store)", self._problem)
                self._rebuild_wanted = True
                self._probe_sent = 0.0
            try:
                async with asyncio.timeout(self._timeout * 4):
                    await self._client.publish(self._probe_channel, b"probe")
            except (TimeoutError, *self._redis_errors) as exc:
                self._problem = f"{self.name}: probe not sent: {exc or 'no answer'}"
                continue
            if not self._probe_sent:
                self._probe_sent = now

    async def _rebuild(self) -> None:
        """A new subscription connection for every channel; the old one is closed."""
        self._rebuild_wanted = False
        old, self._pubsub = self._pubsub, self._new_pubsub()
        with contextlib.suppress(Exception):
            await old.aclose()
        try:
            async with asyncio.timeout(self._timeout * 4):
                await self._subscribe(self._pubsub, self._probe_channel, *self._channels)
        except (TimeoutError, *self._redis_errors) as exc:
            self._problem = f"{self.name}: subscription could not be rebuilt: {exc or 'no answer'}"
            return
