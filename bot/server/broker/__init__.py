"""Brokers chosen by URL: memory:// (default, one instance) or redis:// (several instances)."""

from __future__ import annotations

from bot.server.broker.base import CHANNEL_PREFIX, Broker, BrokerUnavailableError, channel_for, parse_channel
from bot.server.broker.memory import MemoryBroker
from bot.server.supervisor import Supervisor

__all__ = [
    "CHANNEL_PREFIX",
    "Broker",
    "BrokerUnavailableError",
    "MemoryBroker",
    "broker_from_url",
    "channel_for",
    "parse_channel",
]


def broker_from_url(
    url: str | None, *, timeout: float = 0.5, probe_interval: float = 1.0, supervisor: Supervisor | None = None
) -> Broker:
    scheme = (url or "memory://").split("://", 1)[0]
    if scheme == "memory":
        return MemoryBroker()
    if scheme in ("redis", "rediss", "unix"):
        from bot.server.broker.redis import RedisBroker

        return RedisBroker(url or "", timeout=timeout, probe_interval=probe_interval, supervisor=supervisor)
    raise ValueError(f"unsupported broker URL {url!r}; expected memory:// or redis://")
