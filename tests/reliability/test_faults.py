"""Real load, real faults, then the whole history checked: nothing acknowledged is lost or duplicated.

Every test prints its size (points, faults injected) so that CI's log says what was proven.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import websockets

from bot.config import Settings
from bot.sdk import MetricsClient
from bot.sdk.spool import Spool
from tests.conftest import TIMEOUT, LiveServer, create_session, recv_json
from tests.e2e.test_deploy import free_port
from tests.e2e.test_faults import arm_fault
from tests.e2e.test_live import stalled_socket
from tests.reliability.checker import Ack, check
from tests.reliability.harness import RecordingSpectator, ServerProcess, acks_recorder, stored

pytestmark = pytest.mark.slow


def episodes_of(messages: list[dict[str, Any]]) -> list[int]:
    return [m["data"]["episode"] for m in messages if m["type"] == "training_metrics"]


async def test_kill9_under_load_loses_and_duplicates_nothing(database_url: str, tmp_path: Path) -> None:
    """Writers on several sessions while the server is SIGKILLed and restarted: every point stored once, on
    SQLite and on PostgreSQL (whose messages go in by COPY)."""
    server = ServerProcess(database_url, free_port())
    server.start()
    acks: list[Ack] = []
    writers, points, kills = 3, 3000, 3

    def write(index: int) -> None:
        spool = tmp_path / f"spool-{index}"
        with MetricsClient(
            server.url, spool_dir=spool, flush_timeout=60, flush_interval=0.02, on_delivered=acks_recorder(acks)
        ) as client:
            with client.session(training_id=f"writer-{index}") as run:
                for episode in range(points):
                    run.log_metrics(episode=episode, current_reward=float(episode))
                    if episode % 50 == 0:
                        time.sleep(0.01)

    def killer() -> None:
        rng = random.Random(7)
        for _ in range(kills):
            time.sleep(rng.uniform(0.2, 0.5))
            server.kill9()
            time.sleep(0.2)
            server.start()

    try:
        await asyncio.gather(*(asyncio.to_thread(write, i) for i in range(writers)), asyncio.to_thread(killer))
        history = {f"writer-{i}": await stored(server.url, f"writer-{i}") for i in range(writers)}
    finally:
        server.stop()
    for session_id, messages in history.items():
        assert episodes_of(messages) == list(range(points)), session_id
    report = check(acks, {s: [m["seq"] for m in ms] for s, ms in history.items()}, [])
    assert all(r.ok for r in report.values()), report
    assert all(Spool(path).pending() == 0 for path in tmp_path.glob("spool-*")), "every SDK ends with an empty spool"
    print(f"kill -9: {writers} writers x {points} points, {kills} kills, {len(acks)} acknowledged batches: clean")


async def test_retry_storm_applies_a_batch_once(live: LiveServer, client: httpx.AsyncClient) -> None:
    """The same batch with one key, 30 times at once and again later: one copy, one seq range in every answer."""
    session_id = await create_session(client)
    url = f"/api/training/sessions/{session_id}/metrics"
    body = [{"episode": i} for i in range(5)]
    answers = await asyncio.gather(
        *(client.post(url, json=body, headers={"Idempotency-Key": "storm"}) for _ in range(30))
    )
    await client.post(url, json=[{"episode": 99}])
    late = await client.post(url, json=body, headers={"Idempotency-Key": "storm"})
    ranges = {(a.json()["first_seq"], a.json()["last_seq"]) for a in [*answers, late]}
    assert ranges == {(1, 5)}
    assert episodes_of(await stored(live.url, session_id)) == [0, 1, 2, 3, 4, 99]
    print("retry storm: 31 sends of one 5-point batch: stored once")


async def test_commit_failures_are_retried_without_loss_or_hole(
    live: LiveServer, client: httpx.AsyncClient, db_path: Path
) -> None:
    """Commits fail on and off while an SDK logs: 503s are retried; all points once, seq contiguous."""
    session_id = await create_session(client, "flaky")
    acks: list[Ack] = []
    points, faults = 2000, 5

    def write() -> None:
        with (
            MetricsClient(
                live.url,
                spool_dir=db_path.parent / "spool",
                flush_timeout=60,
                flush_interval=0.02,
                on_delivered=acks_recorder(acks),
            ) as sdk,
            sdk.session(training_id=session_id) as run,
        ):
            for episode in range(points):
                run.log_metrics(episode=episode)
                if episode % 100 == 0:
                    time.sleep(0.02)

    def inject() -> None:
        for _ in range(faults):
            time.sleep(0.1)
            arm_fault(db_path, True)
            time.sleep(0.15)
            arm_fault(db_path, False)

    await asyncio.gather(asyncio.to_thread(write), asyncio.to_thread(inject))
    messages = await stored(live.url, session_id)
    assert episodes_of(messages) == list(range(points))
    report = check(acks, {session_id: [m["seq"] for m in messages]}, [])
    assert report[session_id].ok, report
    print(f"commit failures: {points} points, {faults} fault windows: clean")


async def test_torn_spool_never_crashes_and_delivers_intact_records_once(live: LiveServer, tmp_path: Path) -> None:
    """SDKs killed while writing the spool, many times, then its log torn as a power loss would: the next
    client uploads every record that survived, once, in order, and never crashes."""
    spool_dir = tmp_path / "spool"
    # Each writer spools a bounded number of records (so the upload's size does not depend on how fast this
    # machine is) and is killed at a random moment once it has written its first one.
    writer = textwrap.dedent(f"""
        import os, sys, time
        from bot.sdk.spool import Spool
        spool = Spool({str(spool_dir)!r})
        for n in range(int(sys.argv[1])):
            key = f"{{os.getpid()}}-{{n}}"
            items = [{{"episode": n * 1000 + i, "current_reward": 0.5}} for i in range(20)]
            spool.append([{{"kind": "data", "session_id": "torn", "type": "training_metrics", "key": key,
                           "items": items, "session": {{"algorithm": "DQN"}}}}], {live.url!r})
            if n == 0:
                print("first", flush=True)
        time.sleep(60)
    """)
    rounds = 15
    rng = random.Random(3)
    written = 0
    for _ in range(rounds):
        count = rng.randint(5, 40)
        process = subprocess.Popen([sys.executable, "-c", writer, str(count)], stdout=subprocess.PIPE)
        assert process.stdout is not None and process.stdout.readline() == b"first\n"
        time.sleep(rng.uniform(0.0, 0.02))  # kill at a random point of its writing, or after it
        process.send_signal(signal.SIGKILL)
        process.wait(TIMEOUT)
        process.stdout.close()
        written += count
    # A power loss tears the write-ahead log's tail (what the page cache had not written): cut it anywhere.
    wal = spool_dir / "spool.db-wal"
    if wal.exists() and wal.stat().st_size > 1:
        wal.write_bytes(wal.read_bytes()[: rng.randint(wal.stat().st_size // 2, wal.stat().st_size - 1)])
    survivor = Spool(spool_dir)
    intact = [item["episode"] for _, record in survivor.oldest(live.url, 100_000) for item in record["items"]]
    survivor.close()
    assert 0 < len(intact) <= written * 20

    def next_client() -> None:
        with MetricsClient(live.url, spool_dir=spool_dir, flush_interval=0.02) as sdk:
            deadline = time.monotonic() + 3 * TIMEOUT
            while sdk.spool.pending(live.url) and time.monotonic() < deadline:
                sdk.flush(1.0)

    await asyncio.to_thread(next_client)
    assert Spool(spool_dir).pending(live.url) == 0
    assert sorted(episodes_of(await stored(live.url, "torn"))) == sorted(intact)
    print(f"torn spool: {rounds} kills, then a torn log: {len(intact)} surviving points delivered once")


async def test_random_disconnects_miss_nothing(live: LiveServer, client: httpx.AsyncClient) -> None:
    """Spectators over several sessions lose their connections at random and come back with since."""
    sessions = [await create_session(client, f"busy-{i}") for i in range(4)]
    spectators = [RecordingSpectator(live.url, s) for s in sessions for _ in range(5)]
    for spectator in spectators:
        await spectator.connect()
    rng = random.Random(11)
    drops = 0

    async def push(session_id: str) -> None:
        for batch in range(40):
            body = [{"episode": batch * 20 + i} for i in range(20)]
            assert (await client.post(f"/api/training/sessions/{session_id}/metrics", json=body)).status_code == 200
            await asyncio.sleep(0.005)

    async def watch(spectator: RecordingSpectator) -> None:
        nonlocal drops
        while spectator.last < 800:
            await spectator.receive(count=rng.randint(1, 120) if spectator.last < 700 else None, until=800)
            if spectator.last < 800:
                await spectator.drop()
                drops += 1
                await spectator.connect()
        await spectator.close()

    await asyncio.gather(*(push(s) for s in sessions), *(watch(s) for s in spectators))
    history = {s: [m["seq"] for m in await stored(live.url, s)] for s in sessions}
    report = check([], history, [s.log for s in spectators])
    assert all(r.ok for r in report.values()), report
    print(f"random disconnects: 4 sessions x 800 points, 20 spectators, {drops} dropped connections: clean")


async def test_history_to_live_handoff_has_no_gap_or_duplicate(live: LiveServer, client: httpx.AsyncClient) -> None:
    """Reconnecting with since=k hundreds of times while pushes run flat out."""
    session_id = await create_session(client, "handoff")
    spectator = RecordingSpectator(live.url, session_id)
    done = asyncio.Event()
    reconnects = 200

    async def push() -> None:
        # Flat out, bounded: 10,000 points at most (the hops then resume against a still stream).
        for batch in range(1000):
            if done.is_set():
                return
            await client.post(f"/api/training/sessions/{session_id}/metrics", json=[{"episode": batch}] * 10)

    async def hop() -> None:
        rng = random.Random(5)
        for _ in range(reconnects):
            await spectator.connect()
            await spectator.receive(count=rng.randint(1, 15))
            await spectator.close()
        done.set()

    await asyncio.gather(push(), hop())
    final = (await client.get(f"/api/training/sessions/{session_id}")).json()["last_seq"]
    await spectator.connect()
    await spectator.receive(until=final)
    await spectator.close()
    report = check([], {session_id: [m["seq"] for m in await stored(live.url, session_id)]}, [spectator.log])
    assert report[session_id].ok, report
    print(f"hand-off: {reconnects} reconnects over {final} messages: clean")


async def test_slow_and_stalled_spectators_do_not_hurt_the_others(server_factory: Any, settings: Settings) -> None:
    """A slow reader and a SIGSTOPped one: the rest see every message in order; memory stays bounded."""
    live = await server_factory(
        settings.model_copy(
            update={
                "ws_ping_interval": 1.0,
                "ws_ping_timeout": 4.0,
                "max_connections_per_session": 20,
                "ws_send_buffer": 8192,
            }
        )
    )
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "crowded")
        fast = [RecordingSpectator(live.url, session_id) for _ in range(5)]
        for spectator in fast:
            await spectator.connect()
        stalled = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(f"""
            import asyncio, websockets
            async def main():
                async with websockets.connect("{live.ws_url(session_id)}", compression=None) as ws:
                    print("connected", flush=True)
                    async for _ in ws:
                        pass
            asyncio.run(main())
        """),
            ],
            stdout=subprocess.PIPE,
        )
        assert stalled.stdout is not None
        assert (await asyncio.to_thread(stalled.stdout.readline)).strip() == b"connected"  # the server runs here
        stalled.send_signal(signal.SIGSTOP)
        slow = await websockets.connect(
            live.ws_url(session_id), compression=None, max_queue=1, sock=stalled_socket(live.port)
        )
        slow_seen: list[str] = []
        slow_close: list[int] = []

        async def read_slowly() -> None:
            try:
                while True:
                    slow_seen.append(orjson.loads(await slow.recv())["type"])
                    # 200 frames/s against 2,500 offered. At one frame a second the ~300 frames that sit in
                    # the sockets would hold back the keepalive pong past the ping timeout, and the slow
                    # one would be closed by that (1011) before it could read our 4008.
                    await asyncio.sleep(0.005)
            except websockets.ConnectionClosed as closed:
                slow_close.append(closed.rcvd.code if closed.rcvd else 0)

        slow_task = asyncio.create_task(read_slowly())
        points = 3000
        depths = []

        async def push() -> None:
            for batch in range(points // 50):
                body = [{"episode": batch * 50 + i, "algorithm": "x" * 60} for i in range(50)]
                assert (await client.post(f"/api/training/sessions/{session_id}/metrics", json=body)).status_code == 200
                depths.append((await client.get("/status")).json()["spectators"]["deepest_queue"])
                await asyncio.sleep(0.02)

        await asyncio.gather(push(), *(s.receive(until=points) for s in fast))
        async with asyncio.timeout(TIMEOUT * 2):
            await slow_task
            while (await client.get("/status")).json()["spectators"]["total"] > len(fast):
                await asyncio.sleep(0.2)
        stalled.send_signal(signal.SIGKILL)
        stalled.wait(TIMEOUT)
        stalled.stdout.close()
        history = {session_id: [m["seq"] for m in await stored(live.url, session_id)]}
    report = check([], history, [s.log for s in fast])
    assert report[session_id].ok, report
    assert "lag" in slow_seen and slow_close == [4008]
    assert max(depths) <= settings.max_backlog * 10
    print(
        f"slow and stalled: {points} points, 5 fast spectators clean, slow one lagged and closed 4008, "
        f"stalled one closed by the ping timeout, deepest queue {max(depths)} frames"
    )


async def test_recreated_session_gives_returning_spectators_a_reset(
    live: LiveServer, client: httpx.AsyncClient
) -> None:
    """Deleted and created again under one id, ten times: a spectator with the old since and epoch always
    gets `reset`, then only the new incarnation's messages."""
    for round_ in range(10):
        await create_session(client, "phoenix")
        await client.post("/api/training/sessions/phoenix/metrics", json=[{"episode": round_}] * (round_ + 2))
        spectator = RecordingSpectator(live.url, "phoenix")
        await spectator.connect()
        await spectator.receive(until=round_ + 2)
        await spectator.close()
        old_since, old_epoch = spectator.last, spectator.epoch
        await client.delete("/api/training/sessions/phoenix")
        await create_session(client, "phoenix")
        await client.post("/api/training/sessions/phoenix/metrics", json={"episode": 1000 + round_})
        async with websockets.connect(live.ws_url("phoenix", f"since={old_since}&epoch={old_epoch}")) as ws:
            assert (await recv_json(ws))["type"] == "connection_status"
            reset = await recv_json(ws)
            assert reset["type"] == "reset" and reset["data"]["epoch"] != old_epoch
            await recv_json(ws)  # snapshot
            first = await recv_json(ws)
            assert (first["seq"], first["data"]["episode"]) == (1, 1000 + round_)
        await client.delete("/api/training/sessions/phoenix")
    print("epochs: 10 delete-and-recreate rounds: every return got reset and no old data")


def test_sqlite_durability_is_full_by_default_and_normal_on_request(tmp_path: Path) -> None:
    """synchronous=FULL (survives power loss) unless NORMAL is chosen; WAL either way."""
    from bot.store.engine import create_engines

    for setting, expected in (("FULL", 2), ("NORMAL", 1)):
        writer, _ = create_engines(f"sqlite:///{tmp_path / setting}.db", sqlite_synchronous=setting)
        with writer.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == expected
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        writer.dispose()
    assert Settings().sqlite_synchronous == "FULL"
