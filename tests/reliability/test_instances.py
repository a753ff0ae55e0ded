"""Several instances on one PostgreSQL and one Redis: every spectator, on either instance, receives every
message once and in seq order, with pushes alternating between instances (and racing on one session),
and when one instance is killed under load. Checked with the history checker."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest
import websockets

from tests.conftest import TIMEOUT
from tests.e2e.test_deploy import free_port
from tests.reliability.checker import Ack, check
from tests.reliability.harness import RecordingSpectator, ServerProcess, stored

pytestmark = pytest.mark.slow

BATCH = 10


async def push(clients: list[httpx.AsyncClient], turn: int, session_id: str, key: str, batch: int) -> Ack:
    """Push one batch to the instance whose turn it is; if that one is gone, the same batch (same key) to the
    next one, as a client behind a load balancer would retry."""
    body = [{"episode": batch * BATCH + i, "current_reward": float(i)} for i in range(BATCH)]
    for attempt in range(len(clients) * 3):
        client = clients[(turn + attempt) % len(clients)]
        try:
            response = await client.post(
                f"/api/training/sessions/{session_id}/metrics", json=body, headers={"Idempotency-Key": key}
            )
        except httpx.TransportError:
            continue
        assert response.status_code == 200, response.text
        answer = response.json()
        return Ack(session_id, key, answer["first_seq"], answer["last_seq"])
    raise AssertionError(f"no instance took batch {key}")


async def follow(spectator: RecordingSpectator, until: int, fallback: str) -> None:
    """Receive up to seq `until`; when the instance goes away, reconnect to `fallback` with since."""
    while spectator.last < until:
        try:
            await spectator.receive(until=until)
        except (websockets.ConnectionClosed, OSError):
            spectator.move(fallback)
            await spectator.connect()


async def test_fifty_spectators_on_two_instances_get_every_message_once_in_order(
    postgres_url: str, redis_url: str
) -> None:
    """Two server processes, one PostgreSQL, one Redis: 50 spectators spread over both, four writers whose
    pushes alternate between the instances, two of them on each session (racing on both instances)."""
    env = {"MAX_CONNECTIONS_PER_SESSION": "100"}
    instances = [ServerProcess(postgres_url, free_port(), env=env, redis_url=redis_url) for _ in range(2)]
    for instance in instances:
        await asyncio.to_thread(instance.start)
    sessions, batches = ["shared-a", "shared-b"], 25
    clients = [httpx.AsyncClient(base_url=instance.url, timeout=TIMEOUT) for instance in instances]
    try:
        async with contextlib.AsyncExitStack() as stack:
            for client in clients:
                await stack.enter_async_context(client)
            for session_id in sessions:
                created = await clients[0].post("/api/training/sessions", json={"training_id": session_id})
                assert created.status_code == 201
            spectators = [RecordingSpectator(instances[i % 2].url, sessions[i // 25]) for i in range(50)]
            for spectator in spectators:
                await spectator.connect()
                stack.push_async_callback(spectator.close)

            async def writer(index: int, session_id: str) -> list[Ack]:
                return [await push(clients, index + n, session_id, f"w{index}-{n}", n) for n in range(batches)]

            written = await asyncio.gather(*(writer(i, sessions[i // 2]) for i in range(4)))
            total = 2 * batches * BATCH
            await asyncio.gather(*(spectator.receive(until=total) for spectator in spectators))
            history = {s: [m["seq"] for m in await stored(instances[0].url, s)] for s in sessions}
    finally:
        for instance in instances:
            instance.stop()
    report = check([ack for acks in written for ack in acks], history, [s.log for s in spectators])
    assert all(r.ok for r in report.values()), report
    assert all(seqs == list(range(1, total + 1)) for seqs in history.values())


async def test_an_instance_killed_under_load_costs_no_spectator_a_message(postgres_url: str, redis_url: str) -> None:
    """SIGKILL one of two instances mid-run: the survivor's spectators go on without noticing (one connection
    each, no gap); the killed one's reconnect to the survivor with since and miss nothing."""
    instances = [ServerProcess(postgres_url, free_port(), redis_url=redis_url) for _ in range(2)]
    for instance in instances:
        await asyncio.to_thread(instance.start)
    sessions, batches = ["survive-a", "survive-b"], 60
    total = batches * BATCH
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as setup:
            for session_id in sessions:
                response = await setup.post(
                    f"{instances[0].url}/api/training/sessions", json={"training_id": session_id}
                )
                assert response.status_code == 201
        spectators = [RecordingSpectator(instances[i % 2].url, sessions[i // 10]) for i in range(20)]
        for spectator in spectators:
            await spectator.connect()
        clients = [httpx.AsyncClient(base_url=instance.url, timeout=TIMEOUT) for instance in instances]

        async def writer(index: int) -> list[Ack]:
            acks = []
            for n in range(batches):
                if index == 0 and n == batches // 3:
                    await asyncio.to_thread(instances[1].kill9)
                acks.append(await push(clients, n, sessions[index], f"k{index}-{n}", n))
                await asyncio.sleep(0.005)
            return acks

        followers = [follow(s, total, instances[0].url) for s in spectators]
        written, *_ = await asyncio.gather(asyncio.gather(writer(0), writer(1)), *followers)
        history = {s: [m["seq"] for m in await stored(instances[0].url, s)] for s in sessions}
        for client in clients:
            await client.aclose()
        for spectator in spectators:
            with contextlib.suppress(Exception):
                await spectator.close()
    finally:
        for instance in instances:
            instance.stop()
    report = check([ack for acks in written for ack in acks], history, [s.log for s in spectators])
    assert all(r.ok for r in report.values()), report
    survivors = [s for i, s in enumerate(spectators) if i % 2 == 0]
    assert all([kind for kind, _ in s.log.events].count("connect") == 1 for s in survivors)
    moved = [s for i, s in enumerate(spectators) if i % 2 == 1]
    assert all([kind for kind, _ in s.log.events].count("connect") == 2 for s in moved)
