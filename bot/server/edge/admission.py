"""How many new spectator connections per second this instance takes, whoever they come from (the
per-client limits are in rate_limits.py).

When an instance dies, its spectators all reconnect to the others at once, each with `since` (a history
read). Past `per_second` new connections (a moving window, from the `limits` library), a connection is
refused before any work with 1013 and a retry delay: jittered, and longer the more were refused in the
last second, so the storm comes back at about the rate this instance takes.
"""

from __future__ import annotations

import random
import time
from collections import deque

from limits import RateLimitItemPerSecond
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
