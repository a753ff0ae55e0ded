"""Socket.IO at /socket.io over real sockets, with the original design's Python client (python-socketio):
every connected client gets every job's events and `subscribe_training` narrows them; unknown job ids and
subscriptions past the cap are refused; Engine.IO sessions are capped and a handshake's credential is checked
before a session is made; a revoked key and an expired token are disconnected; a session-limited credential
sees only its own session's jobs.

Job events take the supervisor's own path (what it does with a child's `TMS-EVENT` line: stored in the job's
session and told to its listeners), for job rows made as `POST /api/training/start` makes them, so no test
here waits for a training process."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

import httpx
import orjson
import pytest
import socketio
import websockets

from bot.config import Settings
from bot.server.training.jobs import JobSupervisor
from bot.store.engine import create_engines
from bot.store.jobs import CreateJob
from tests.conftest import TIMEOUT, LiveServer
from tests.e2e.test_auth import SECRET, keys, revoke, token

HANDSHAKE = "/socket.io/?EIO=4&transport=polling"


def jobs_in_store(database_url: str, *sessions: str) -> list[dict[str, Any]]:
    """Job rows as the supervisor writes them when a job starts, one per session given."""
    writer, reader = create_engines(database_url)
    try:
        with writer.begin() as conn:
            return [
                CreateJob(f"job-{secrets.token_hex(6)}", "mock_cache", session, {}, 10, "elsewhere")
                .apply(conn, time.time())
                .result
                for session in sessions
            ]
    finally:
        writer.dispose()
        reader.dispose()


async def announce(live: LiveServer, job: dict[str, Any], episode: int) -> None:
    """A `training_progress` of the job, through the running server's job supervisor."""
    supervisor: JobSupervisor = live.server.lifespan.state["jobs"]
    await supervisor._event(job, "training_progress", {"episode": episode, "reward": 1.0})


class Client:
    """python-socketio's AsyncClient, keeping what it receives in order."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.disconnected = asyncio.Event()
        for event in ("training_progress", "unauthorized", "error"):
            self.sio.on(event, self._keep(event))
        self.sio.on("disconnect", lambda *reason: self.disconnected.set())

    def _keep(self, event: str) -> Any:
        async def keep(data: dict[str, Any]) -> None:
            await self.events.put((event, data))

        return keep

    async def connect(self, live: LiveServer, **options: Any) -> Client:
        await self.sio.connect(live.url, wait_timeout=TIMEOUT, **options)
        return self

    async def next(self) -> tuple[str, dict[str, Any]]:
        async with asyncio.timeout(TIMEOUT):
            return await self.events.get()

    async def next_job(self) -> str:
        event, data = await self.next()
        assert event == "training_progress", (event, data)
        job_id: str = data["job_id"]
        return job_id

    async def call(self, event: str, data: Any) -> dict[str, Any]:
        answer: dict[str, Any] = await self.sio.call(event, data, timeout=TIMEOUT)
        return answer

    async def close(self) -> None:
        await self.sio.disconnect()


@pytest.fixture
async def clients() -> Any:
    opened: list[Client] = []

    async def connect(live: LiveServer, **options: Any) -> Client:
        client = Client()
        opened.append(client)
        return await client.connect(live, **options)

    yield connect
    for client in opened:
        await client.close()


async def test_every_client_gets_every_job_until_it_narrows(live: LiveServer, settings: Settings, clients: Any) -> None:
    """The documented client connects and never subscribes: it gets the events. A job_id narrows to that job,
    `{}` widens back to every job, `unsubscribe_training` without a job_id stops them."""
    a, b = jobs_in_store(settings.database_url, "session-a", "session-b")
    watcher, other = await clients(live), await clients(live)
    await announce(live, a, 1)
    await announce(live, b, 1)
    assert [await watcher.next_job(), await watcher.next_job()] == [a["job_id"], b["job_id"]]
    assert [await other.next_job(), await other.next_job()] == [a["job_id"], b["job_id"]]

    assert await watcher.call("subscribe_training", {"job_id": a["job_id"]}) == {
        "status": "subscribed",
        "job_id": a["job_id"],
    }
    await announce(live, b, 2)
    await announce(live, a, 2)
    assert await watcher.next_job() == a["job_id"]  # b's went before it, to the others only
    assert [await other.next_job(), await other.next_job()] == [b["job_id"], a["job_id"]]

    assert await watcher.call("subscribe_training", {}) == {"status": "subscribed", "job_id": None}
    await announce(live, b, 3)
    assert await watcher.next_job() == b["job_id"]
    assert await other.next_job() == b["job_id"]

    assert await watcher.call("unsubscribe_training", {}) == {"status": "unsubscribed", "job_id": None}
    await announce(live, b, 4)
    assert await other.next_job() == b["job_id"]  # emitted, to every room at once
    await watcher.call("subscribe_training", {"job_id": a["job_id"]})
    await announce(live, a, 3)
    assert await watcher.next_job() == a["job_id"]


async def test_unknown_jobs_are_refused_and_subscriptions_capped(
    server_factory: Any, settings: Settings, clients: Any
) -> None:
    live = await server_factory(settings.model_copy(update={"socketio_max_subscriptions_per_client": 2}))
    one, two, three = jobs_in_store(settings.database_url, "s1", "s2", "s3")
    client = await clients(live)
    for refused, reason in [
        ({"job_id": "job-000000000000"}, "unknown job_id 'job-000000000000'"),
        ({"job_id": 7}, "job_id must be a string, got int"),
        ({"job_id": "j" * 129}, "at most 128 characters"),
    ]:
        answer = await client.call("subscribe_training", refused)
        assert answer["status"] == "error" and reason in answer["message"], answer
    await announce(live, three, 1)
    assert await client.next_job() == three["job_id"]  # the refusals changed nothing: still every job

    for job in (one, two, two):
        assert (await client.call("subscribe_training", {"job_id": job["job_id"]}))["status"] == "subscribed"
    past = await client.call("subscribe_training", {"job_id": three["job_id"]})
    assert past["status"] == "error" and "socketio_max_subscriptions_per_client" in past["message"], past
    await client.call("unsubscribe_training", {"job_id": one["job_id"]})
    assert (await client.call("subscribe_training", {"job_id": three["job_id"]}))["status"] == "subscribed"
    for job in (one, two, three):
        await announce(live, job, 2)
    assert [await client.next_job(), await client.next_job()] == [two["job_id"], three["job_id"]]


async def test_engineio_sessions_are_capped_before_they_are_made(
    server_factory: Any, settings: Settings, clients: Any
) -> None:
    """Past socketio_max_clients a handshake is a 503 naming the setting, however many come, and the
    python-socketio client is refused; a client that leaves makes room."""
    live = await server_factory(settings.model_copy(update={"socketio_max_clients": 3}))
    first, *_ = [await clients(live) for _ in range(3)]
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as http:
        refused = await asyncio.gather(*(http.get(HANDSHAKE) for _ in range(50)))
        assert {r.status_code for r in refused} == {503}
        assert "socketio_max_clients" in refused[0].json()["detail"] and refused[0].headers["retry-after"] == "5"
        with pytest.raises(socketio.exceptions.ConnectionError):
            await Client().connect(live)
        with pytest.raises(websockets.InvalidStatus) as straight:  # a handshake over a WebSocket at once
            await websockets.connect(f"ws://127.0.0.1:{live.port}{HANDSHAKE.replace('polling', 'websocket')}")
        assert straight.value.response.status_code == 503
        await first.close()
        async with asyncio.timeout(TIMEOUT):
            while (answer := await http.get(HANDSHAKE)).status_code == 503:
                await asyncio.sleep(0.05)
        assert answer.status_code == 200 and answer.text.startswith("0{"), answer.text  # an Engine.IO open packet


async def test_a_client_guessing_job_ids_is_disconnected(live: LiveServer, clients: Any) -> None:
    client = await clients(live)
    for guess in range(100):
        answer = await client.call("subscribe_training", {"job_id": f"job-{guess:012x}"})
        assert answer["status"] == "error", answer
    await client.sio.emit("subscribe_training", {"job_id": "job-ffffffffffff"})
    assert await client.next() == ("error", {"message": "more than 100 refused requests: disconnected"})
    async with asyncio.timeout(TIMEOUT):
        await client.disconnected.wait()


@pytest.mark.slow
async def test_a_session_that_never_connects_is_closed(server_factory: Any, settings: Settings) -> None:
    """Handshakes alone (no Socket.IO connect, where a credential may come) hold their place a few seconds."""
    live = await server_factory(settings.model_copy(update={"socketio_max_clients": 2}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as http:
        assert [(await http.get(HANDSHAKE)).status_code for _ in range(3)] == [200, 200, 503]
        async with asyncio.timeout(TIMEOUT):
            while (await http.get(HANDSHAKE)).status_code == 503:
                await asyncio.sleep(0.2)


@pytest.fixture
async def secured(server_factory: Any, settings: Settings) -> LiveServer:
    live: LiveServer = await server_factory(settings.model_copy(update={"enable_auth": True, "jwt_secret_key": SECRET}))
    return live


async def test_a_handshake_credential_is_checked_before_a_session(secured: LiveServer, settings: Settings) -> None:
    reader, writer = keys(settings.database_url, (["read"], None), (["write"], None))
    async with httpx.AsyncClient(base_url=secured.url, timeout=TIMEOUT) as http:
        bad = await http.get(HANDSHAKE, headers={"Authorization": "Bearer tms_not-a-key"})
        assert bad.status_code == 401 and bad.json()["detail"] == "unknown or revoked API key", bad.text
        assert bad.headers["www-authenticate"] == "Bearer"
        unscoped = await http.get(HANDSHAKE, headers={"Authorization": f"Bearer {writer}"})
        assert unscoped.status_code == 403 and "'read'" in unscoped.json()["detail"], unscoped.text
        assert (await http.get(f"{HANDSHAKE}&token={token(exp=time.time() - 5)}")).status_code == 401
        assert (await http.get(f"{HANDSHAKE}&token={reader}")).status_code == 200
        assert (await http.get(HANDSHAKE)).status_code == 200  # its credential may come in the CONNECT


@pytest.mark.slow
async def test_a_polling_post_over_the_message_limit_is_answered_413(live: LiveServer) -> None:
    """Engine.IO over long polling: a POST over 64 KB was read whole, its session closed, and the request
    never answered. It is refused at once (413, JSON), and one that does not say its length gets 411."""
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as http:
        opened = await http.get(HANDSHAKE)
        sid = orjson.loads(opened.text[1:])["sid"]
        url = f"{HANDSHAKE}&sid={sid}"
        assert (await http.post(url, content=b"40")).status_code == 200  # the Socket.IO connect
        event = b'42["subscribe_training",{"job_id":"' + b"j" * 70_000 + b'"}]'
        too_big = await http.post(url, content=event)
        assert too_big.status_code == 413 and too_big.json()["max_body_bytes"] == 65_536, too_big.text

        async def chunks() -> Any:
            yield b'42["subscribe_training",{}]'

        unsized = await http.post(url, content=chunks())
        assert unsized.status_code == 411 and "Content-Length" in unsized.json()["detail"], unsized.text
        assert (await http.post(url, content=b'42["subscribe_training",{}]')).status_code == 200  # still open


async def test_a_revoked_key_is_disconnected(secured: LiveServer, settings: Settings, clients: Any) -> None:
    (reader,) = keys(settings.database_url, (["read"], None))
    (job,) = jobs_in_store(settings.database_url, "watched")
    client = await clients(secured, auth={"token": reader})
    await client.call("subscribe_training", {})  # as the original design's clients do (not needed now)
    await announce(secured, job, 1)
    assert await client.next_job() == job["job_id"]
    revoke(settings.database_url, reader)
    assert await client.next() == ("unauthorized", {"message": "API key revoked"})
    async with asyncio.timeout(TIMEOUT):
        await client.disconnected.wait()


@pytest.mark.slow
async def test_a_client_cannot_send_the_protocols_own_events(
    server_factory: Any, settings: Settings, clients: Any
) -> None:
    """python-socketio ran a client's event named `connect` or `disconnect` with the server's own handler:
    a client restarted its connection (its subscriptions and refusals counted from zero) or took itself off
    the revocation watch and went on receiving a revoked key's events. Such events are refused now."""
    update = {"enable_auth": True, "jwt_secret_key": SECRET, "socketio_max_subscriptions_per_client": 1}
    live = await server_factory(settings.model_copy(update=update))
    (reader,) = keys(settings.database_url, (["read"], None))
    one, two = jobs_in_store(settings.database_url, "s1", "s2")
    client = await clients(live, auth={"token": reader})
    assert (await client.call("subscribe_training", {"job_id": one["job_id"]}))["status"] == "subscribed"
    for event in ("connect", "disconnect"):
        answer = await client.call(event, {})
        assert answer["status"] == "error" and "protocol's own event" in answer["message"], answer
    past = await client.call("subscribe_training", {"job_id": two["job_id"]})  # the cap still counts `one`
    assert past["status"] == "error" and "socketio_max_subscriptions_per_client" in past["message"], past
    revoke(settings.database_url, reader)
    assert await client.next() == ("unauthorized", {"message": "API key revoked"})
    async with asyncio.timeout(TIMEOUT):
        await client.disconnected.wait()


async def test_a_subscription_that_is_no_object_is_refused(live: LiveServer, settings: Settings, clients: Any) -> None:
    """A job id sent bare ("job-typo"), or a list, is refused: it used to be taken as {} and widened a
    client that followed one job to every job's events."""
    one, two = jobs_in_store(settings.database_url, "s1", "s2")
    client = await clients(live)
    assert (await client.call("subscribe_training", {"job_id": one["job_id"]}))["status"] == "subscribed"
    for event in ("subscribe_training", "unsubscribe_training"):
        for bad in (two["job_id"], [one["job_id"]], 7):
            answer = await client.call(event, bad)
            assert answer["status"] == "error" and "takes an object" in answer["message"], (event, bad, answer)
    await announce(live, two, 1)
    await announce(live, one, 1)
    assert await client.next_job() == one["job_id"]  # still one job's events only


async def test_an_expired_token_is_disconnected(secured: LiveServer, settings: Settings, clients: Any) -> None:
    (job,) = jobs_in_store(settings.database_url, "watched")
    client = await clients(secured, headers={"Authorization": f"Bearer {token(exp=time.time() + 3)}"})
    await client.call("subscribe_training", {})
    await announce(secured, job, 1)
    assert await client.next_job() == job["job_id"]
    event, data = await client.next()
    assert (event, data["message"]) == ("unauthorized", "token expired: connect again with a new one")
    async with asyncio.timeout(TIMEOUT):
        await client.disconnected.wait()


@pytest.mark.parametrize("credential", ["key", "token"])
async def test_a_session_limited_credential_sees_only_its_session(
    secured: LiveServer, settings: Settings, clients: Any, credential: str
) -> None:
    mine, theirs = jobs_in_store(settings.database_url, "mine", "theirs")
    limited = keys(settings.database_url, (["read"], "mine"))[0] if credential == "key" else token(session="mine")
    client = await clients(secured, auth={"token": limited})
    assert await client.call("subscribe_training", {}) == {"status": "subscribed", "job_id": None}
    await announce(secured, theirs, 1)
    await announce(secured, mine, 1)
    assert await client.next_job() == mine["job_id"]

    refused = await client.call("subscribe_training", {"job_id": theirs["job_id"]})
    assert refused == {"status": "error", "message": "this credential is limited to session 'mine'"}
    assert (await client.call("subscribe_training", {"job_id": mine["job_id"]}))["status"] == "subscribed"
    assert (await client.call("subscribe_training", {}))["status"] == "subscribed"  # every job it may see
    await announce(secured, theirs, 2)
    await announce(secured, mine, 2)
    assert await client.next_job() == mine["job_id"]
