"""The training daemon's Redis side, when Redis is configured: its live configuration and its event streams.

The original design keeps the daemon's configuration in keys that operators change by hand
(`redis-cli SET rl_v3.training.enabled false`) and appends its events to Redis Streams named after them
(`redis-cli XLEN rl_v3.training.started`). The keys hold what redis-cli writes: `true` or `false`, numbers
as text, a scenario's name. A missing key takes the database's value (bot/store/daemon.py, which the API's
PUT keeps too); a key whose value is not valid keeps the last good one and is logged once per bad value,
so a typo typed into redis-cli never stops the daemon. A Redis that cannot be reached is treated the same
way: the last good values, one warning until it answers again.

Each stream is capped near STREAM_MAXLEN entries (`XADD ... MAXLEN ~ 10000`): Redis drops the oldest
entries, a whole internal node at a time, so a stream may briefly hold a few dozen more.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import orjson

from bot.frames import iso

logger = logging.getLogger("bot.training.daemon")

FIELDS = ("enabled", "interval_minutes", "episodes_per_run", "scenario")
KEYS = {field: f"rl_v3.training.{field}" for field in FIELDS}
STREAM_MAXLEN = 10_000
# What the API accepts too (bot/server/api/training.py, DaemonConfigUpdate).
INTERVAL_MINUTES = (0.01, 525_600.0)  # up to a year
EPISODES_PER_RUN = (1, 1_000_000)
SCENARIO_MAX_LENGTH = 64
BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


class DaemonRedisError(Exception):
    """Redis could not be reached or refused a command; nothing was written."""


def parse(field: str, raw: bytes) -> Any:
    """A key's value as the daemon uses it; ValueError naming the key, the value and what would be valid."""
    key = KEYS[field]
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise ValueError(f"{key} has value {raw!r}: not UTF-8 text") from None
    value = text.strip()
    if field == "enabled":
        if value.lower() not in BOOLEANS:
            raise ValueError(f"{key} has value {text!r}: expected true or false")
        return BOOLEANS[value.lower()]
    if field == "interval_minutes":
        low, high = INTERVAL_MINUTES
        try:
            minutes = float(value)
        except ValueError:
            minutes = math.nan
        if not low <= minutes <= high:  # NaN fails both
            raise ValueError(f"{key} has value {text!r}: expected a number of minutes from {low} to {high:g}")
        return minutes
    if field == "episodes_per_run":
        low_episodes, high_episodes = EPISODES_PER_RUN
        if not value.isascii() or not value.isdigit() or not low_episodes <= int(value) <= high_episodes:
            raise ValueError(
                f"{key} has value {text!r}: expected a whole number from {low_episodes} to {high_episodes}"
            )
        return int(value)
    if not 1 <= len(value) <= SCENARIO_MAX_LENGTH:
        raise ValueError(
            f"{key} has value {text!r}: expected a scenario's name of 1 to {SCENARIO_MAX_LENGTH} characters"
        )
    return value


def encode(value: Any) -> str:
    """A value as redis-cli would write it: `true`/`false`, numbers and names as plain text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class DaemonRedis:
    """The daemon's configuration keys and event streams on one Redis client of its own."""

    def __init__(self, url: str, *, timeout: float) -> None:
        import redis.asyncio as redis  # imported here: the redis extra is optional

        self._errors = (redis.RedisError, OSError, TimeoutError)
        # Every call is bounded, as the broker's are: a stalled Redis must not hold the daemon's loop.
        self._timeout = max(timeout, 2.0)
        self._client: Any = redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=self._timeout)
        self._good: dict[str, Any] = {}  # the last good value read from each key
        self._warned: dict[str, bytes] = {}  # the bad value already logged, per field
        self._unreachable = False

    async def aclose(self) -> None:
        await self._client.aclose()

    async def overlay(self, base: dict[str, Any], scenario_error: Callable[[str], str | None]) -> dict[str, Any]:
        """The configuration: Redis's keys over `base` (the database's); `scenario_error` says what is wrong
        with a scenario's name (None: nothing). Never raises for Redis's sake."""
        try:
            async with asyncio.timeout(self._timeout * 2):
                values = await self._client.mget([KEYS[field] for field in FIELDS])
        except self._errors as exc:
            if not self._unreachable:
                logger.warning("the daemon's configuration in Redis cannot be read, keeping its last values: %s", exc)
            self._unreachable = True
            return {**base, **self._good, "source": "redis"}
        if self._unreachable:
            logger.info("the daemon's configuration in Redis can be read again")
        self._unreachable = False
        for field, raw in zip(FIELDS, values, strict=True):
            if raw is None:  # never set, or deleted: the database's value
                self._good.pop(field, None)
                self._warned.pop(field, None)
                continue
            try:
                value = parse(field, raw)
                problem = scenario_error(value) if field == "scenario" else None
                if problem is not None:
                    raise ValueError(f"{KEYS[field]} has value {raw.decode()!r}: {problem}")
            except ValueError as exc:
                if self._warned.get(field) != raw:
                    kept = self._good.get(field, base[field])
                    logger.warning("%s; the training daemon keeps %s = %r", exc, KEYS[field], kept)
                    self._warned[field] = raw
                continue
            self._good[field] = value
            self._warned.pop(field, None)
        return {**base, **self._good, "source": "redis"}

    async def write(self, changes: dict[str, Any]) -> None:
        """Set these keys, all or none (one MSET)."""
        mapping = {KEYS[field]: encode(value) for field, value in changes.items() if field in KEYS}
        if not mapping:
            return
        try:
            async with asyncio.timeout(self._timeout * 2):
                await self._client.mset(mapping)
        except self._errors as exc:
            raise DaemonRedisError(f"Redis did not take the daemon's configuration: {exc or 'no answer'}") from exc

    async def append(self, event: str, payload: dict[str, Any], trace_id: str) -> None:
        """One entry on the stream named `event`, as the original design's event bus writes them: the payload
        as JSON, its type, when, and which server sent it."""
        entry = {
            "event_type": event,
            "payload": orjson.dumps(payload),
            "trace_id": trace_id,
            "timestamp": iso(time.time()),
            "source": "training-metrics-server",
        }
        try:
            async with asyncio.timeout(self._timeout * 2):
                await self._client.xadd(event, entry, maxlen=STREAM_MAXLEN, approximate=True)
        except self._errors as exc:
            raise DaemonRedisError(f"Redis did not take the {event} event: {exc or 'no answer'}") from exc
