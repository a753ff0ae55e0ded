"""Who may come in how often: spectator connections per second, and wrong room passwords per room.

Room passwords: each check is a 16 MiB scrypt (about 40 ms of a core), so guessing is both an attack on
the room and on the server's CPU. Past `ROOM_FAILURES` wrong passwords for one room within a minute, that
room's attempts are refused without a check (4429, with the seconds until one is allowed again) until the
oldest failure leaves the window: a back-off per room, whoever the guesser is.

Connections:

When an instance dies, its spectators all reconnect to the others at once, each with `since` (a history
read). Past `per_second` new connections (a moving window, from the `limits` library), a connection is
refused before any work with 1013 and a retry delay: jittered, and longer the more were refused in the
last second, so the storm comes back at about the rate this instance takes.
"""

from __future__ import annotations

import random
import time
from collections import deque

from limits import RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class ConnectRate:
    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._item = RateLimitItemPerSecond(max(1, per_second))
        self._refused: deque[float] = deque()

    def admit(self) -> float | None:
        """None: take the connection. Else the seconds the client is advised to wait before it retries."""
        if self.per_second <= 0 or self._limiter.hit(self._item, "ws-connect"):
            return None
        now = time.monotonic()
        self._refused.append(now)
        while self._refused and self._refused[0] < now - 1.0:
            self._refused.popleft()
        # The refused of the last second come back spread over as many seconds as this instance needs for them.
        return round(random.uniform(0.25, 1.0) * max(1.0, len(self._refused) / self.per_second) + 0.05, 3)


ROOM_FAILURES = 5  # wrong passwords per room per minute before the room's attempts wait


class RoomPasswordGuard:
    def __init__(self, failures_per_minute: int = ROOM_FAILURES) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._item = RateLimitItemPerMinute(failures_per_minute)

    def wait(self, room: str) -> float | None:
        """None: a password for `room` may be checked now. Else the seconds until one may."""
        if self._limiter.test(self._item, "room", room):
            return None
        reset, _ = self._limiter.get_window_stats(self._item, "room", room)
        return round(max(0.1, reset - time.time()), 1)

    def failed(self, room: str) -> None:
        self._limiter.hit(self._item, "room", room)
