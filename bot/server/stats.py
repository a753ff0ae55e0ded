"""The server's counters of messages in and out: shared by the service (ingest), the hub and the fast path."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Stats:
    started_at: float = field(default_factory=time.time)
    messages_in: int = 0
    messages_out: int = 0
    direct_out: int = 0  # of messages_out, those the fan-out fast path wrote (bot/server/live/direct.py)
