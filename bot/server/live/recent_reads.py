"""One read serves every reader of a session for a moment. The run panel's summary and policy are polled by
every open page, and a thousand pages watching one session must not mean a thousand reads of its history:
an answer (or the read under way) is shared for `ttl` seconds. A failed read is not kept.

A commit to the session forgets its shared answers (`forget`), so a reader never misses a push that was
acknowledged before it asked, nor gets a deleted session's answer after it was created again: the sharing
then merges the readers between two commits, and those of one read under way."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

MAX_HELD = 1000  # answers held before the expired ones are dropped


class RecentReads:
    def __init__(self, ttl: float = 2.0) -> None:
        self.ttl = ttl
        self._held: dict[Hashable, tuple[float, asyncio.Future[Any], str]] = {}
        self._keys: dict[str, set[Hashable]] = {}  # group (a session id) -> its keys held

    async def get(self, key: Hashable, read: Callable[[], Awaitable[Any]], group: str = "") -> Any:
        now = time.monotonic()
        held = self._held.get(key)
        if held is None or held[0] < now:
            if len(self._held) >= MAX_HELD:
                self._held = {k: v for k, v in self._held.items() if v[0] >= now}
                self._keys = {}
                for kept, (_, _, kept_group) in self._held.items():
                    self._keys.setdefault(kept_group, set()).add(kept)
            future = asyncio.ensure_future(read())
            future.add_done_callback(lambda done: self._forget_failure(key, done))
            held = self._held[key] = (now + self.ttl, future, group)
            self._keys.setdefault(group, set()).add(key)
        # Shielded: a reader that goes away does not cancel the read the others wait for.
        return await asyncio.shield(held[1])

    def forget(self, group: str) -> None:
        """The group's data changed: its next reader reads again (one under way still serves its own)."""
        for key in self._keys.pop(group, ()):
            self._held.pop(key, None)

    def _forget_failure(self, key: Hashable, done: asyncio.Future[Any]) -> None:
        if (done.cancelled() or done.exception() is not None) and (held := self._held.get(key)) is not None:
            if held[1] is done:
                del self._held[key]
