"""Brokers, written once and run on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.server.broker import Broker, broker_from_url


@pytest.fixture(params=["memory", "redis"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    async with broker_from_url(url) as opened:
        yield opened


async def test_subscriber_receives_in_publish_order(broker: Broker) -> None:
    """Frames published on a subscribed channel arrive in order; other channels are not delivered."""
    await broker.subscribe("tms:test:a")
    await asyncio.sleep(0.05)  # a Redis SUBSCRIBE takes effect asynchronously
    for i in range(20):
        await broker.publish("tms:test:a", [(i, "training_metrics", f'{{"seq":{i},"text":"a b\\nc"}}')])
        await broker.publish("tms:test:other", [(1, "training_metrics", "{}")])
    events = broker.events()
    received = []
    async with asyncio.timeout(5):
        while len(received) < 20:
            channel, frames = await anext(events)
            assert channel == "tms:test:a"
            received.extend(frames)
    assert received == [(i, "training_metrics", f'{{"seq":{i},"text":"a b\\nc"}}') for i in range(20)]


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="expected memory:// or redis://"):
        broker_from_url("kafka://localhost")
