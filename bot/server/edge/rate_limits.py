"""Rate limits on what one client can ask of the server, counted by the `limits` library.

With `enable_rate_limiting` (off by default), each client gets its own budget per rule: ingest requests,
spectator connections, spectator messages and room password attempts. A client is its credential once the
credential is verified (with auth on: a key's id or a token's subject, so one trainer's limit follows it
whatever address it comes from), and else its address. Never an unverified header: a client that made up a
new `Authorization` per request would get a new budget each time (issue #25.6); with auth off no header is a
credential at all. Past a rule, HTTP answers 429 with Retry-After and the WebSocket closes with 4429 and
`retry_after`, before any other work, so a client over its limit costs next to nothing.

The counters live in memory on one instance, in Redis when `REDIS_URL` is set, so a limit holds across
instances. A counter store that fails or is slow lets the request through (after `broker_timeout`): a
limit exists to protect the server, and refusing everyone while Redis is away would be the outage itself.

The back-off on wrong room passwords, per room and client, is always on (RoomPasswordGuard).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from limits import RateLimitItem, RateLimitItemPerMinute, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from bot.server.edge.auth import ANYONE, Principal

logger = logging.getLogger(__name__)

RULES = ("ingest", "ws_connect", "ws_message", "room_password")
WARN_EVERY_SECONDS = 30.0


class Counters:
    """Where the limits' counters live: this process's memory, or Redis (a connection pool of our own, so
    that it is closed with the server)."""

    def __init__(self, redis_url: str | None) -> None:
        self.pool: Any = None
        self.storage: Storage = MemoryStorage()
        if redis_url is not None:
            import redis.asyncio  # the `redis` extra; only when Redis is configured

            self.pool = redis.asyncio.ConnectionPool.from_url(redis_url)
            uri = f"async+{redis_url}"
            self.storage = RedisStorage(
                uri, implementation="redispy", key_prefix="tms-limits", connection_pool=self.pool
            )

    async def aclose(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()


def client_key(principal: Principal | None, address: str | None) -> str:
    """Who is asking: the verified credential (`principal`, from Authenticator; None or ANYONE when there is
    none, or auth is off) as a digest of its subject, else the address."""
    if principal is not None and principal is not ANYONE:
        return "credential:" + hashlib.sha256(principal.subject.encode()).hexdigest()[:32]
    return f"address:{address or 'unknown'}"


class RateLimitedError(Exception):
    """HTTP 429 with Retry-After: this client is over one of its rate limits."""

    def __init__(self, rule: str, limit: str, retry_after: float) -> None:
        super().__init__(f"rate limit {rule} ({limit}) reached: retry in {retry_after:g} s")
        self.rule = rule
        self.limit = limit
        self.retry_after = retry_after


class RateLimits:
    def __init__(self, enabled: bool, rules: Mapping[str, str], storage: Storage, timeout: float) -> None:
        self.enabled = enabled
        self.items: dict[str, RateLimitItem] = {name: parse(rules[name]) for name in RULES}
        self.limiter = MovingWindowRateLimiter(storage)
        self.timeout = timeout
        self.hits = 0  # requests refused by a limit, for /status
        self._warned_at = -math.inf

    async def check(self, rule: str, who: str) -> float | None:
        """Count one request of `who` under `rule`: None if it may go on, else the seconds to wait."""
        if not self.enabled:
            return None
        item = self.items[rule]
        try:
            async with asyncio.timeout(self.timeout):
                if await self.limiter.hit(item, rule, who):
                    return None
                stats = await self.limiter.get_window_stats(item, rule, who)
        except Exception as exc:  # the counters' store is away: let the request through (see above)
            self._warn(exc)
            return None
        self.hits += 1
        return round(max(0.1, stats.reset_time - time.time()), 1)

    async def enforce(self, rule: str, who: str) -> None:
        """check(), raising RateLimitedError (429) past the limit."""
        if (wait := await self.check(rule, who)) is not None:
            raise RateLimitedError(rule, str(self.items[rule]), wait)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            logger.warning("rate limits not counted (letting requests through): %s: %s", type(exc).__name__, exc)


ROOM_FAILURES = 5  # wrong passwords for one room from one client per minute, before that client waits
ROOM_CEILING = 100  # wrong passwords for one room per minute from all clients together: the last resort


class RoomPasswordGuard:
    """A back-off on wrong room passwords: each check is a 16 MiB scrypt (about 40 ms of a core), so guessing
    is both an attack on the room and on the server's CPU. Past ROOM_FAILURES wrong passwords for one room
    from one client (its address: a room password is no credential) within a minute, that client's attempts
    at that room are refused without a check (4429, with the seconds until one is allowed again) until the
    oldest failure leaves the window. It slows the guesser, not the room: one wrong guess every 0.5 s used to
    lock the room for everyone, refusing 22 of 23 right passwords (issue #25.8). Past ROOM_CEILING wrong
    passwords for the room from everyone within a minute (guessing from many addresses), every new
    password for it waits; a password that was right before never does (rooms.py remembers it).
    Shares the rate limits' store: with Redis, the back-off holds across instances.

    An attempt takes its place in both windows before its check, in the limiter's one atomic step (hit):
    testing first and counting the failure after the scrypt let 30 wrong passwords sent at once all be
    checked (review 1, finding 3). A right password gives the client's places for the room back
    (succeeded), so only wrong ones count; the room-wide window keeps it, which costs the room one of its
    ROOM_CEILING at most once per password and instance, since a right password is remembered."""

    def __init__(
        self,
        storage: Storage,
        timeout: float,
        failures_per_minute: int = ROOM_FAILURES,
        room_ceiling_per_minute: int = ROOM_CEILING,
    ) -> None:
        self._limiter = MovingWindowRateLimiter(storage)
        self._client = RateLimitItemPerMinute(failures_per_minute)
        self._room = RateLimitItemPerMinute(room_ceiling_per_minute)
        self._timeout = timeout

    async def attempt(self, room: str, who: str) -> float | None:
        """None: `who`'s password for `room` may be checked now, and has taken its place in the windows.
        Else the seconds until one may, and nothing was counted."""
        try:
            async with asyncio.timeout(self._timeout):
                # The room's window is only tested first: a client past its own limit must not use up the
                # room's, or one guesser would lock the room for every new password again.
                if not await self._limiter.test(self._room, "room-all", room):
                    return await self._wait(room, who)
                if not await self._limiter.hit(self._client, "room", room, who):
                    return await self._wait(room, who)
                if not await self._limiter.hit(self._room, "room-all", room):
                    return await self._wait(room, who)
        except Exception:
            logger.warning("room password back-off not counted; checking the password", exc_info=True)
        return None

    async def succeeded(self, room: str, who: str) -> None:
        """`who`'s password for `room` was right: give back its places in its window for the room. The
        window is cleared, not just this attempt's place (a moving window cannot drop one entry): a client
        that knows the password is no guesser."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._limiter.clear(self._client, "room", room, who)
        except Exception:
            logger.warning("room password back-off not given back", exc_info=True)

    async def _wait(self, room: str, who: str) -> float:
        """The seconds until both of `who`'s windows for `room` have a place again."""
        waits = [0.1]
        for item, identifiers in ((self._client, ("room", room, who)), (self._room, ("room-all", room))):
            stats = await self._limiter.get_window_stats(item, *identifiers)
            if stats.remaining <= 0:
                waits.append(round(max(0.1, stats.reset_time - time.time()), 1))
        return max(waits)
