"""End to end over real sockets: engines push over HTTP, spectators watch over WebSocket."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets

from bot.config import Settings
from bot.schemas import MESSAGE_TYPES
from tests.conftest import (
    TIMEOUT,
    LiveServer,
    close_code,
    connect_and_sync,
    create_session,
    push_wide,
    recv_data,
    recv_json,
    recv_until,
)

DECISION = {"action_probabilities": {"left": 0.25, "right": 0.75}, "q_values": [0.1, 0.4], "selected_action": "right"}
GRAPH = {"graph_id": "reward_progress", "title": "Reward", "data_points": {"reward": [{"value": 1.5}]}}


async def push_all_three(client: httpx.AsyncClient, session_id: str) -> None:
    base = f"/api/training/sessions/{session_id}"
    for path, body in (
        ("metrics", {"episode": 1, "current_reward": 1.5, "epsilon": 0.9}),
        ("bot_decision", DECISION),
        ("graph_update", GRAPH),
    ):
        response = await client.post(f"{base}/{path}", json=body)
        assert response.status_code == 200, response.text


async def test_spectators_receive_pushes_in_order_with_subscriptions(
    live: LiveServer, client: httpx.AsyncClient, spectators: Any
) -> None:
    """The full spectator gets all three types in order with consecutive seq; the metrics-only one gets metrics."""
    session_id = await create_session(client, "run-1", algorithm="DQN")
    everything = await connect_and_sync(spectators, live.ws_url(session_id, "user_name=alice"))
    metrics_only = await connect_and_sync(spectators, live.ws_url(session_id, "types=training_metrics"))
    await push_all_three(client, session_id)

    received = await recv_data(everything, 3)
    assert [m["type"] for m in received] == ["training_metrics", "bot_decision", "graph_update"]
    assert [m["seq"] for m in received] == [1, 2, 3]
    assert received[0]["data"]["current_reward"] == 1.5
    assert received[1]["data"]["action_probabilities"] == {"left": 0.25, "right": 0.75}
    assert all(m["session_id"] == session_id for m in received)

    only = await recv_data(metrics_only, 1)
    assert only[0]["type"] == "training_metrics" and only[0]["seq"] == 1
    await metrics_only.send(orjson.dumps({"type": "ping"}).decode())
    assert (await recv_until(metrics_only, "pong"))["type"] == "pong"  # nothing else was queued before it

    history = (await client.get(f"/api/training/sessions/{session_id}/history")).json()
    assert [m["seq"] for m in history["messages"]] == [1, 2, 3]
    assert history["messages"] == received


@pytest.mark.parametrize(
    "ws",
    [
        "websockets-sansio",
        pytest.param(
            "websockets",  # uvicorn's legacy-websockets protocol warns that it is deprecated: not ours to fix
            marks=[
                pytest.mark.filterwarnings("ignore:websockets.legacy is deprecated:DeprecationWarning"),
                pytest.mark.filterwarnings("ignore:The `websockets` implementation is deprecated"),
                pytest.mark.filterwarnings("ignore:remove second argument of ws_handler:DeprecationWarning"),
            ],
        ),
        "wsproto",
    ],
)
async def test_every_websocket_protocol_delivers_the_stored_bytes(
    server_factory: Any, settings: Settings, spectators: Any, ws: str
) -> None:
    """The fast path (websockets-sansio, what `bot serve` runs) and the ASGI path (any other protocol)
    deliver the same bytes: every live frame is byte for byte the frame replayed from the store."""
    live = await server_factory(settings, ws=ws)
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "bytes")
        watcher = await connect_and_sync(spectators, live.ws_url(session_id, "types=training_metrics"))
        for batch in range(5):
            body = [{"episode": batch * 20 + i, "current_reward": i / 3, "loss_value": "NaN"} for i in range(20)]
            assert (await client.post(f"/api/training/sessions/{session_id}/metrics", json=body)).status_code == 200
        async with asyncio.timeout(TIMEOUT):
            live_frames = [await watcher.recv() for _ in range(100)]
        replay = await spectators(live.ws_url(session_id, "since=0&types=training_metrics"))
        async with asyncio.timeout(TIMEOUT):
            replayed = [frame for frame in [await replay.recv() for _ in range(102)] if '"seq":null' not in frame]
        fast = (await client.get("/status")).json()["messages_out_fast_path"]
    assert live_frames == replayed and len(live_frames) == 100
    assert (fast > 0) == (ws == "websockets-sansio")


async def test_a_join_is_written_at_once(live: LiveServer, client: httpx.AsyncClient, spectators: Any) -> None:
    """Welcome, snapshot and each replay page leave in one write each (the fast path counts them): a storm of
    joins had spent a third of the server's time on a write per frame."""
    session_id = await create_session(client, "one-write-joins")
    body = [{"episode": i, "current_reward": i / 7} for i in range(120)]
    assert (await client.post(f"/api/training/sessions/{session_id}/metrics", json=body)).status_code == 200
    before = (await client.get("/status")).json()["messages_out_fast_path"]
    ws = await spectators(live.ws_url(session_id, "since=20&types=training_metrics"))
    async with asyncio.timeout(TIMEOUT):
        frames = [orjson.loads(await ws.recv()) for _ in range(102)]
    after = (await client.get("/status")).json()["messages_out_fast_path"]
    assert [frame["type"] for frame in frames[:2]] == ["connection_status", "snapshot"]
    assert [frame["seq"] for frame in frames[2:]] == list(range(21, 121))
    assert after - before == 102


async def test_reconnect_with_since_misses_nothing(
    live: LiveServer, client: httpx.AsyncClient, spectators: Any
) -> None:
    """A spectator that drops and comes back with since=<last seq> gets the gap from the store, then live."""
    session_id = await create_session(client, "run-since")
    metrics = f"/api/training/sessions/{session_id}/metrics"
    ws = await connect_and_sync(spectators, live.ws_url(session_id))
    await client.post(metrics, json=[{"episode": i} for i in range(5)])
    first = await recv_data(ws, 5)
    epoch = (await client.get(f"/api/training/sessions/{session_id}")).json()["epoch"]
    await ws.close()

    await client.post(metrics, json=[{"episode": i} for i in range(5, 2005)])  # missed while away
    back = await spectators(live.ws_url(session_id, f"since={first[-1]['seq']}&epoch={epoch}"))
    await client.post(metrics, json=[{"episode": i} for i in range(2005, 2010)])  # live after the replay
    rest = await recv_data(back, 2005)
    assert [m["seq"] for m in first + rest] == list(range(1, 2011))
    assert [m["data"]["episode"] for m in rest] == list(range(5, 2010))


async def test_history_survives_restart(server_factory: Any, settings: Settings) -> None:
    """A server restarted on the same database file serves the same history and continues the seq."""
    first = await server_factory(settings)
    async with httpx.AsyncClient(base_url=first.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "durable")
        await push_all_three(client, session_id)
        before = (await client.get(f"/api/training/sessions/{session_id}/history")).json()
    await first.stop()

    second = await server_factory(settings)
    async with httpx.AsyncClient(base_url=second.url, timeout=TIMEOUT) as client:
        after = (await client.get(f"/api/training/sessions/{session_id}/history")).json()
        assert after == before and after["count"] == 3
        pushed = (await client.post(f"/api/training/sessions/{session_id}/metrics", json={"episode": 2})).json()
        assert (pushed["first_seq"], pushed["last_seq"]) == (4, 4)


async def test_connection_limit_refuses_only_the_extra_spectator(
    live: LiveServer, client: httpx.AsyncClient, spectators: Any, settings: Settings
) -> None:
    """With the limit reached, one more spectator gets an error and close 4429; the others keep watching."""
    session_id = await create_session(client, "popular")
    watchers = [
        await connect_and_sync(spectators, live.ws_url(session_id)) for _ in range(settings.max_connections_per_session)
    ]
    extra = await spectators(live.ws_url(session_id))
    error = await recv_json(extra)
    assert error["type"] == "error" and error["data"]["code"] == "session_full"
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await recv_json(extra)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
    assert "session full" in closed.value.rcvd.reason

    await client.post(f"/api/training/sessions/{session_id}/metrics", json={"episode": 7})
    for ws in watchers:
        assert (await recv_data(ws, 1))[0]["data"]["episode"] == 7


async def test_join_and_leave_are_announced(live: LiveServer, client: httpx.AsyncClient, spectators: Any) -> None:
    """Spectators are told the new count when another joins or leaves."""
    session_id = await create_session(client, "social")
    first = await connect_and_sync(spectators, live.ws_url(session_id))
    second = await connect_and_sync(spectators, live.ws_url(session_id, "user_name=bob"))
    joined = await recv_until(first, "connection_status")
    assert joined["data"]["event"] == "joined" and joined["data"]["spectator_count"] == 2
    assert joined["data"]["user_name"] == "bob"
    assert (await client.get(f"/api/training/sessions/{session_id}")).json()["spectators"] == 2
    await second.close()
    left = await recv_until(first, "connection_status")
    assert left["data"]["event"] == "left" and left["data"]["spectator_count"] == 1


async def test_unknown_session_gets_error_and_4404(live: LiveServer, spectators: Any) -> None:
    """Connecting to a session that does not exist: an error message, then close code 4404."""
    ws = await spectators(live.ws_url("nope"))
    error = await recv_json(ws)
    assert error["type"] == "error" and error["data"]["code"] == "session_not_found"
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await recv_json(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4404


@pytest.mark.parametrize(
    "query",
    [
        "since=abc",
        "since=-1",
        "since=%C2%B2",  # "²": str.isdigit() says yes, int() says no
        "since=9223372036854775808",
        "types=nonsense",
        "types=training_metrics,bogus",
        "user_name=" + "u" * 129,
    ],
)
async def test_bad_query_gets_error_and_4400(
    live: LiveServer, client: httpx.AsyncClient, spectators: Any, query: str
) -> None:
    """A bad query parameter is named in an error message, then the connection closes with 4400."""
    session_id = await create_session(client)
    ws = await spectators(live.ws_url(session_id, query))
    error = await recv_json(ws)
    assert error["type"] == "error" and error["data"]["code"] == "invalid_parameter"
    assert query.split("=")[0] in error["data"]["message"]
    assert await close_code(ws) == 4400


async def test_bad_client_messages_get_errors_and_the_connection_stays(
    live: LiveServer, client: httpx.AsyncClient, spectators: Any
) -> None:
    """Malformed JSON, unknown types and bad subscriptions each get an error; the spectator still gets data."""
    session_id = await create_session(client)
    ws = await connect_and_sync(spectators, live.ws_url(session_id))
    for raw, code in (
        ("{not json", "invalid_json"),
        ('["a list"]', "invalid_message"),
        ('{"type": "dance"}', "unknown_message_type"),
        ('{"type": "subscribe", "types": ["bogus"]}', "invalid_types"),
        ('{"type": "subscribe"}', "invalid_types"),
        (orjson.dumps({"type": "ping", "data": "x" * 300}).decode(), "ping_too_big"),
    ):
        await ws.send(raw)
        error = await recv_until(ws, "error")
        assert error["data"]["code"] == code, (raw, error)
    await ws.send('{"type": "unsubscribe", "types": ["bot_decision"]}')
    everything_but_decisions = sorted(set(MESSAGE_TYPES) - {"bot_decision"})
    assert (await recv_until(ws, "subscriptions"))["data"]["types"] == everything_but_decisions
    await push_all_three(client, session_id)
    received = await recv_data(ws, 2)
    assert [m["type"] for m in received] == ["training_metrics", "graph_update"]


async def test_snapshot_holds_latest_metrics_and_graphs(
    live: LiveServer, client: httpx.AsyncClient, spectators: Any
) -> None:
    """A new spectator first sees the session, its latest metrics and its current graphs."""
    session_id = await create_session(client, "snap", algorithm="PPO")
    await push_all_three(client, session_id)
    ws = await spectators(live.ws_url(session_id))
    welcome = await recv_json(ws)
    assert welcome["data"]["spectator_count"] == 1 and welcome["data"]["last_seq"] == 3
    assert welcome["data"]["epoch"]
    snapshot = await recv_json(ws)
    assert snapshot["type"] == "snapshot"
    assert snapshot["data"]["session"]["algorithm"] == "PPO"
    assert snapshot["data"]["latest_metrics"]["current_reward"] == 1.5
    assert snapshot["data"]["latest_decision"]["selected_action"] == "right"
    assert snapshot["data"]["graphs"][0]["graph_id"] == "reward_progress"
    assert snapshot["data"]["graphs"][0]["data_points"]["reward"][0]["value"] == 1.5


async def test_an_oversized_spectator_message_closes_with_1009(
    live: LiveServer, client: httpx.AsyncClient, spectators: Any
) -> None:
    """A spectator's message past 64 KB is refused by the protocol (1009), never buffered; a small ping's
    data comes back in its pong."""
    session_id = await create_session(client)
    ws = await connect_and_sync(spectators, live.ws_url(session_id))
    await ws.send(orjson.dumps({"type": "ping", "data": {"n": 1}}).decode())
    assert (await recv_until(ws, "pong"))["data"]["echo"] == {"n": 1}
    await ws.send(orjson.dumps({"type": "ping", "data": "x" * 70_000}).decode())
    assert await close_code(ws) == 1009


async def test_snapshot_graphs_are_bounded_and_the_whole_graph_is_one_request_away(
    live: LiveServer, client: httpx.AsyncClient, spectators: Any
) -> None:
    """A join's snapshot carries the newest 1,000 points of each series, whatever the graph holds (a join
    costs the same for any graph); GET .../graphs has every point the graph keeps."""
    session_id = await create_session(client, "big-graph")
    points = [{"value": float(v)} for v in range(1500)]
    body = {"graph_id": "g", "max_points": 2000, "data_points": {"reward": points}}
    assert (await client.post(f"/api/training/sessions/{session_id}/graph_update", json=body)).status_code == 200
    ws = await spectators(live.ws_url(session_id))
    snapshot = await recv_until(ws, "snapshot")
    [graph] = snapshot["data"]["graphs"]
    assert [p["value"] for p in graph["data_points"]["reward"]] == [float(v) for v in range(500, 1500)]
    [whole] = (await client.get(f"/api/training/sessions/{session_id}/graphs")).json()["graphs"]
    assert len(whole["data_points"]["reward"]) == 1500


async def test_status_change_reaches_spectators(live: LiveServer, client: httpx.AsyncClient, spectators: Any) -> None:
    """PUT status is stored in the stream and broadcast as training_status."""
    session_id = await create_session(client, "lifecycle")
    ws = await connect_and_sync(spectators, live.ws_url(session_id))
    response = await client.put(f"/api/training/sessions/{session_id}", json={"status": "running"})
    assert response.status_code == 200 and response.json()["status"] == "running"
    message = (await recv_data(ws, 1))[0]
    assert message["type"] == "training_status" and message["seq"] == 1
    assert message["data"] == {"status": "running", "previous_status": "created", "message": None}


async def test_delete_closes_spectators_and_recreate_resets_epoch(
    live: LiveServer, client: httpx.AsyncClient, spectators: Any
) -> None:
    """Delete closes spectators with 4410; one returning with the old epoch gets `reset`, never old data."""
    session_id = await create_session(client, "reused")
    ws = await connect_and_sync(spectators, live.ws_url(session_id))
    await client.post(f"/api/training/sessions/{session_id}/metrics", json=[{"episode": 1}, {"episode": 2}])
    old = await recv_data(ws, 2)
    old_epoch = (await client.get(f"/api/training/sessions/{session_id}")).json()["epoch"]
    assert (await client.delete(f"/api/training/sessions/{session_id}")).status_code == 200
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await recv_json(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4410

    await create_session(client, "reused")
    await client.post(f"/api/training/sessions/{session_id}/metrics", json={"episode": 100})
    back = await spectators(live.ws_url(session_id, f"since={old[-1]['seq']}&epoch={old_epoch}"))
    await recv_until(back, "connection_status")
    reset = await recv_json(back)
    assert reset["type"] == "reset" and reset["data"]["epoch"] != old_epoch
    assert reset["data"]["reason"].startswith("epoch changed")
    fresh = await recv_data(back, 1)
    assert fresh[0]["seq"] == 1 and fresh[0]["data"]["episode"] == 100

    # Without an epoch, a since past the last seq is reset too, and the reason says so (not "epoch changed").
    ahead = await spectators(live.ws_url(session_id, "since=999"))
    await recv_until(ahead, "connection_status")
    reset = await recv_json(ahead)
    assert reset["type"] == "reset" and reset["data"]["reason"] == "since=999 is beyond this session's last seq 1"


async def test_recreated_session_streams_live_while_an_old_spectator_lingers(
    server_factory: Any, settings: Settings, spectators: Any
) -> None:
    """A spectator of the deleted incarnation that still hangs on (stalled, its close not delivered) does not
    stop the new incarnation's frames: a new spectator gets seq 1, 2, 3, ... live."""
    live = await server_factory(settings.model_copy(update={"ws_send_buffer": 8192, "slow_spectator_timeout": 60}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "again")
        stalled = await spectators(live.ws_url(session_id), sock=stalled_socket(live.port), max_queue=1)
        stalled.transport.pause_reading()
        await push_wide(client, session_id)
        assert (await client.delete(f"/api/training/sessions/{session_id}")).status_code == 200

        await create_session(client, "again")
        fresh = await connect_and_sync(spectators, live.ws_url(session_id))
        await client.post(f"/api/training/sessions/{session_id}/metrics", json=[{"episode": i} for i in range(10)])
        received = await recv_data(fresh, 10)
        assert [m["seq"] for m in received] == list(range(1, 11))
        assert [m["data"]["episode"] for m in received] == list(range(10))
        stalled.transport.abort()  # a peer that stopped reading: no closing handshake to wait for


def established(server_port: int, client_port: int) -> bool:
    """Whether the server's side of this TCP connection is still open (Linux: /proc/net/tcp, state 01)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, remote, state = line.split()[1:4]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
            return state == "01"
    return False


@pytest.mark.slow  # the slow timeout and the close's grace period run out
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the kernel's TCP table (Linux)")
async def test_a_cut_off_spectator_frees_its_slot_and_its_connection_without_new_data(
    server_factory: Any, settings: Settings, spectators: Any
) -> None:
    """A spectator that stopped reading and fell behind is closed, and its connection aborted, even when no
    more data arrives after it fell behind: it leaves the count, its TCP connection is gone, its slot is free."""
    update = {"ws_send_buffer": 8192, "max_connections_per_session": 1, "slow_spectator_timeout": 1.0}
    live = await server_factory(settings.model_copy(update=update))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "cut")
        sock = stalled_socket(live.port)
        client_port = sock.getsockname()[1]
        stalled = await spectators(live.ws_url(session_id), sock=sock, max_queue=1)
        stalled.transport.pause_reading()
        body = orjson.dumps([{"episode": i, "algorithm": "x" * 60} for i in range(1000)])
        for _ in range(3):  # quickly past its buffers and its queue; then nothing more is pushed
            response = await client.post(
                f"/api/training/sessions/{session_id}/metrics",
                content=body,
                headers={"Content-Type": "application/json"},
            )
            assert response.status_code == 200
        async with asyncio.timeout(3 * TIMEOUT):
            while (await client.get(f"/api/training/sessions/{session_id}")).json()["spectators"] != 0:
                await asyncio.sleep(0.1)
            while established(live.port, client_port):
                await asyncio.sleep(0.1)
        again = await connect_and_sync(spectators, live.ws_url(session_id))  # the freed slot
        await client.post(f"/api/training/sessions/{session_id}/metrics", json={"episode": 5000})
        assert (await recv_data(again, 1))[0]["seq"] == 3001
        stalled.transport.abort()  # its peer is gone: no closing handshake to wait for


def stalled_socket(port: int) -> socket.socket:
    """A client socket with a tiny receive buffer, so that a spectator that stops reading backs up fast."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


@pytest.mark.parametrize(
    "bound",
    [{"max_backlog": 1000}, {"max_backlog": 1_000_000, "max_backlog_bytes": 20_000}],
    ids=["frames", "bytes"],
)
async def test_stalled_spectator_is_told_and_closed_without_delaying_others(
    server_factory: Any, settings: Settings, spectators: Any, bound: dict[str, int]
) -> None:
    """A spectator that stops reading loses frames (it gets `lag`) and is closed with 4008; the rest see all.
    The server caps each spectator's kernel send buffer (here 8 KB), so the stalled one backs up soon; its
    queue is bounded in frames, and in bytes when many frames would fit."""
    live = await server_factory(settings.model_copy(update={"ws_send_buffer": 8192, **bound}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "busy")
        fast = await connect_and_sync(spectators, live.ws_url(session_id))
        stalled = await spectators(live.ws_url(session_id), sock=stalled_socket(live.port), max_queue=1)
        stalled.transport.pause_reading()  # a real client that stops reading: its kernel buffer fills up

        total = 40 * 50
        reading = asyncio.create_task(recv_data(fast, total, timeout=3 * TIMEOUT))
        for batch in range(40):
            body = [{"episode": batch * 50 + i, "algorithm": "x" * 60} for i in range(50)]
            response = await client.post(f"/api/training/sessions/{session_id}/metrics", json=body)
            assert response.status_code == 200
            await asyncio.sleep(0.05)  # 2 s of pushes: the slow-spectator timeout elapses while they continue

    received = await reading
    assert [m["seq"] for m in received] == list(range(1, total + 1))

    stalled.transport.resume_reading()
    seen: list[str] = []
    with pytest.raises(websockets.ConnectionClosed) as closed:
        async with asyncio.timeout(TIMEOUT):
            while True:
                seen.append(orjson.loads(await stalled.recv())["type"])
    assert "lag" in seen
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4008
    assert "too slow" in closed.value.rcvd.reason


async def test_a_spectator_that_sends_and_never_reads_its_replies_is_closed(
    server_factory: Any, settings: Settings, spectators: Any
) -> None:
    """Pings as fast as it can, never reading a pong: the server stops reading it once its replies back up,
    so they pile up in neither the server's memory nor its CPU, and closes it after the slow timeout."""
    live = await server_factory(settings.model_copy(update={"ws_send_buffer": 8192}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "pinger")
        other = await connect_and_sync(spectators, live.ws_url(session_id))
        pinger = await spectators(live.ws_url(session_id), sock=stalled_socket(live.port), max_queue=1)
        pinger.transport.pause_reading()
        ping = orjson.dumps({"type": "ping", "data": "x" * 200}).decode()
        with contextlib.suppress(TimeoutError, websockets.ConnectionClosed):
            async with asyncio.timeout(3.0):  # its sends block once the server stops reading it
                for _ in range(20_000):
                    await pinger.send(ping)
        async with asyncio.timeout(3 * TIMEOUT):
            while (await client.get(f"/api/training/sessions/{session_id}")).json()["spectators"] != 1:
                await asyncio.sleep(0.1)
        await client.post(f"/api/training/sessions/{session_id}/metrics", json={"episode": 1})
        assert (await recv_data(other, 1))[0]["data"]["episode"] == 1
        pinger.transport.abort()


def handshake_only(port: int, path: str) -> socket.socket:
    """A raw client that sends a WebSocket upgrade and then never reads a byte, with a tiny receive buffer:
    whatever the server sends after the 101 backs up in the server's buffers at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    return sock


@pytest.mark.slow  # the join deadline and the close's grace period run out
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the kernel's TCP table (Linux)")
@pytest.mark.parametrize("join", ["snapshot", "replay"])
async def test_a_spectator_that_never_reads_its_join_loses_its_slot_after_the_join_deadline(
    server_factory: Any, settings: Settings, spectators: Any, join: str
) -> None:
    """A client that opens a spectator connection and never reads (not its welcome, snapshot or replay) holds
    its slot only until the join deadline: then it is closed, and cut off as it cannot take the close. It
    joins live-only with a big snapshot, or with since=0 over many stored messages, and nothing is pushed
    afterwards, so no slow-spectator timer could catch it."""
    update = {"ws_send_buffer": 8192, "max_connections_per_session": 1, "ws_join_timeout": 1.0}
    live = await server_factory(settings.model_copy(update=update))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, f"join-{join}")
        if join == "snapshot":  # 20 series of 1,000 points: a snapshot of about 1 MB
            series = {f"s{n}": [{"value": float(v)} for v in range(1000)] for n in range(20)}
            body = {"graph_id": "g", "data_points": series}
            response = await client.post(f"/api/training/sessions/{session_id}/graph_update", json=body)
            assert response.status_code == 200, response.text
            query = ""
        else:  # 3,000 stored messages of about 200 bytes each, replayed from seq 1
            await push_wide(client, session_id, batches=60)
            query = "?since=0"
        sock = handshake_only(live.port, f"/ws/{session_id}{query}")
        client_port = sock.getsockname()[1]
        try:
            async with asyncio.timeout(3 * TIMEOUT):
                while (await client.get(f"/api/training/sessions/{session_id}")).json()["spectators"] != 1:
                    await asyncio.sleep(0.05)  # it holds the session's one slot
                while (await client.get(f"/api/training/sessions/{session_id}")).json()["spectators"] != 0:
                    await asyncio.sleep(0.1)
                while established(live.port, client_port):
                    await asyncio.sleep(0.1)
            again = await spectators(live.ws_url(session_id), max_size=None)  # the freed slot
            assert (await recv_until(again, "snapshot"))["data"]["graphs"] or join == "replay"
            await client.post(f"/api/training/sessions/{session_id}/metrics", json={"episode": 9999})
            assert (await recv_data(again, 1))[0]["data"]["episode"] == 9999
        finally:
            sock.close()
