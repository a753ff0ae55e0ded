"""Brokers, written once and run on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.server.broker import Broker, broker_from_url


@pytest.fixture(params=["memory", "redis"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    async with broker_from_url(url) as opened:
        yield opened


async def subscribed(broker: Broker, events: AsyncIterator[tuple[str, Any]], channel: str) -> None:
    """Wait until the subscription is live (a Redis SUBSCRIBE takes effect asynchronously): a probe comes back."""
    async with asyncio.timeout(5):
        while True:
            await broker.publish(channel, [(-1, "probe", "{}")])
            try:
                async with asyncio.timeout(0.1):
                    if (await anext(events))[1][0][0] == -1:
                        return
            except TimeoutError:
                continue


async def test_subscriber_receives_in_publish_order(broker: Broker) -> None:
    """Frames published on a subscribed channel arrive in order; other channels are not delivered."""
    await broker.subscribe("tms:test:a")
    events = broker.events()
    await subscribed(broker, events, "tms:test:a")
    for i in range(20):
        await broker.publish("tms:test:a", [(i, "training_metrics", f'{{"seq":{i},"text":"a b\\nc"}}')])
        await broker.publish("tms:test:other", [(1, "training_metrics", "{}")])
    received = []
    async with asyncio.timeout(5):
        while len(received) < 20:
            channel, frames = await anext(events)
            assert channel == "tms:test:a"
            received.extend(frame for frame in frames if frame[0] != -1)  # a late probe is no data
    assert received == [(i, "training_metrics", f'{{"seq":{i},"text":"a b\\nc"}}') for i in range(20)]


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="expected memory:// or redis://"):
        broker_from_url("kafka://localhost")
