"""Faults at the broker: a slow, stalled or restarted Redis never holds ingest, and no spectator misses a message."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import orjson
import pytest
import websockets

from bot.config import Settings
from tests.conftest import TIMEOUT, PrivateRedis, connect_and_sync, create_session, recv_data
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.slow


async def health_until(client: httpx.AsyncClient, status: str) -> dict[str, Any]:
    """Poll /health until it reports `status` (bounded by TIMEOUT); every answer must be a 200."""
    async with asyncio.timeout(TIMEOUT):
        while True:
            response = await client.get("/health")
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if body["status"] == status:
                return body
            await asyncio.sleep(0.05)


async def push(client: httpx.AsyncClient, session_id: str, episode: int) -> int:
    response = await client.post(f"/api/training/sessions/{session_id}/metrics", json={"episode": episode})
    assert response.status_code == 200, response.text
    last_seq: int = response.json()["last_seq"]
    return last_seq


async def test_a_stalled_redis_never_holds_ingest(
    server_factory: Any, settings: Settings, private_redis: PrivateRedis, spectators: Any
) -> None:
    """Redis stopped with SIGSTOP (connections open, nothing answers): pushes are still acknowledged, the
    spectator still gets every message in order (from the store), /health says `degraded` and why; once
    Redis answers again the live path and `ok` come back by themselves."""
    live = await server_factory(settings.model_copy(update={"redis_url": private_redis.url, "broker_timeout": 0.2}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "stalled-redis")
        ws = await connect_and_sync(spectators, live.ws_url(session_id))
        assert (await health_until(client, "ok"))["broker"] == "ok"
        private_redis.pause()
        try:
            assert [await push(client, session_id, episode) for episode in range(1, 4)] == [1, 2, 3]
            assert [m["seq"] for m in await recv_data(ws, 3)] == [1, 2, 3]
            degraded = await health_until(client, "degraded")
            assert degraded["database"] == "ok" and "redis" in degraded["broker"], degraded
        finally:
            private_redis.resume()
        await health_until(client, "ok")
        assert await push(client, session_id, 4) == 4
        assert [m["seq"] for m in await recv_data(ws, 1)] == [4]


async def test_redis_restarted_under_pushes_loses_nothing(
    server_factory: Any, settings: Settings, private_redis: PrivateRedis, spectators: Any
) -> None:
    """Redis killed, then started again on its port while pushes go on: every push is acknowledged, both
    instances' spectators receive every message once and in order, /health is `degraded` meanwhile."""
    changed = {"redis_url": private_redis.url, "broker_timeout": 0.2, "broker_probe_interval": 0.2}
    first = await server_factory(settings.model_copy(update=changed))
    second = await server_factory(settings.model_copy(update=changed))
    async with httpx.AsyncClient(base_url=first.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "restarted-redis")
        watchers = [await connect_and_sync(spectators, live.ws_url(session_id)) for live in (first, second)]
        assert await push(client, session_id, 1) == 1
        await asyncio.to_thread(private_redis.stop)
        assert [await push(client, session_id, episode) for episode in range(2, 5)] == [2, 3, 4]
        assert (await health_until(client, "degraded"))["database"] == "ok"
        await asyncio.to_thread(private_redis.start)
        await health_until(client, "ok")
        async with httpx.AsyncClient(base_url=second.url, timeout=TIMEOUT) as other:
            await health_until(other, "ok")
            assert [await push(other, session_id, episode) for episode in range(5, 7)] == [5, 6]
        for ws in watchers:
            assert [m["seq"] for m in await recv_data(ws, 6)] == [1, 2, 3, 4, 5, 6]


async def test_a_silent_subscription_is_found_and_rebuilt(
    server_factory: Any, settings: Settings, private_redis: PrivateRedis, spectators: Any
) -> None:
    """The subscription's connection stays open but stops delivering (what a failover can leave): the probe
    finds it within two intervals, /health says so, the subscription is rebuilt, and the spectator gets
    what was pushed meanwhile, in order, from the store."""
    async with FaultProxy(private_redis.port) as proxy:
        live = await server_factory(settings.model_copy(update={"redis_url": proxy.url, "broker_probe_interval": 0.2}))
        async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
            session_id = await create_session(client, "silent-subscription")
            ws = await connect_and_sync(spectators, live.ws_url(session_id))
            assert await push(client, session_id, 1) == 1
            assert [m["seq"] for m in await recv_data(ws, 1)] == [1]
            assert proxy.silence(lambda sent: b"SUBSCRIBE" in sent.upper()) == 1
            assert [await push(client, session_id, episode) for episode in (2, 3)] == [2, 3]
            degraded = await health_until(client, "degraded")
            assert "probe" in degraded["broker"], degraded
            assert [m["seq"] for m in await recv_data(ws, 2)] == [2, 3]
            await health_until(client, "ok")
            assert await push(client, session_id, 4) == 4
            assert [m["seq"] for m in await recv_data(ws, 1)] == [4]


async def test_a_killed_pubsub_connection_loses_nothing(
    server_factory: Any, settings: Settings, private_redis: PrivateRedis, spectators: Any
) -> None:
    """`CLIENT KILL TYPE pubsub` under pushes: every message still reaches the spectator once, in order."""
    import redis.asyncio as redis

    changed = {"redis_url": private_redis.url, "broker_probe_interval": 0.2}
    live = await server_factory(settings.model_copy(update=changed))
    admin = redis.from_url(private_redis.url)
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client, admin:
        session_id = await create_session(client, "killed-pubsub")
        ws = await connect_and_sync(spectators, live.ws_url(session_id))
        assert [await push(client, session_id, episode) for episode in (1, 2)] == [1, 2]
        assert await admin.client_kill_filter(_type="pubsub") >= 1
        assert [await push(client, session_id, episode) for episode in range(3, 6)] == [3, 4, 5]
        assert [m["seq"] for m in await recv_data(ws, 5)] == [1, 2, 3, 4, 5]
        await health_until(client, "ok")
        assert await push(client, session_id, 6) == 6
        assert [m["seq"] for m in await recv_data(ws, 1)] == [6]


@pytest.mark.parametrize("recreated", [True, False], ids=["recreated", "deleted"])
async def test_a_session_deleted_while_an_instance_is_cut_off_never_feeds_its_spectators_another_run(
    server_factory: Any, postgres_url: str, private_redis: PrivateRedis, spectators: Any, recreated: bool
) -> None:
    """Two instances; A's Redis connections fall silent (its `session_deleted` frame is lost). B deletes the
    session (and creates it again, and pushes): A's spectator of the old incarnation is closed with 4410 by
    A's own look at the store, and is never fed the new incarnation's seqs as if they followed its own."""
    settings = Settings(database_url=postgres_url, ingest_processes=0, broker_probe_interval=60.0)
    async with FaultProxy(private_redis.port) as proxy:
        a = await server_factory(settings.model_copy(update={"redis_url": proxy.url}))
        b = await server_factory(settings.model_copy(update={"redis_url": private_redis.url}))
        async with httpx.AsyncClient(base_url=b.url, timeout=TIMEOUT) as on_b:
            session_id = await create_session(on_b, "cut-off")
            ws = await connect_and_sync(spectators, a.ws_url(session_id))
            assert [await push(on_b, session_id, episode) for episode in (1, 2)] == [1, 2]
            assert [m["seq"] for m in await recv_data(ws, 2)] == [1, 2]
            assert proxy.silence(lambda sent: True) >= 1  # every connection A has to Redis
            assert (await on_b.delete(f"/api/training/sessions/{session_id}")).status_code == 200
            if recreated:
                await create_session(on_b, "cut-off")
                assert [await push(on_b, session_id, 100 + episode) for episode in range(1, 7)] == list(range(1, 7))
            fed: list[dict[str, Any]] = []
            async with asyncio.timeout(TIMEOUT):
                with contextlib.suppress(websockets.ConnectionClosed):
                    while True:
                        message = orjson.loads(await ws.recv())
                        if message.get("seq") is not None:
                            fed.append(message)
            assert ws.close_code == 4410, (ws.close_code, ws.close_reason)
            assert fed == [], fed  # nothing of the new incarnation, and nothing after the old one's seq 2


async def test_a_spectator_that_leaves_while_redis_is_cut_off_leaves_no_subscription_behind(
    server_factory: Any, settings: Settings, private_redis: PrivateRedis, spectators: Any
) -> None:
    """A spectator leaves while the instance's connections to Redis are cut: its unsubscribe fails, and redis-py
    subscribed again to every channel it still knew once it reconnected, so the instance kept receiving (and
    dropping) that session's frames for good, one more channel per cut. Now the subscription is rebuilt
    with the channels still watched only."""
    import redis.asyncio as redis

    async with FaultProxy(private_redis.port) as proxy:
        changed = {"redis_url": proxy.url, "broker_probe_interval": 0.2}
        live = await server_factory(settings.model_copy(update=changed))
        admin = redis.from_url(private_redis.url)
        async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client, admin:
            session_id = await create_session(client, "left-during-cut")
            ws = await connect_and_sync(spectators, live.ws_url(session_id))
            assert len(await admin.pubsub_channels("tms:session:*")) == 1
            proxy.cut()
            await health_until(client, "degraded")  # the broker's connections found broken
            await ws.close()
            async with asyncio.timeout(TIMEOUT):
                while (await client.get("/status")).json()["spectators"]["total"]:
                    await asyncio.sleep(0.05)
            proxy.restore()
            await health_until(client, "ok")
            async with asyncio.timeout(TIMEOUT):
                while await admin.pubsub_channels("tms:session:*"):
                    await asyncio.sleep(0.1)
