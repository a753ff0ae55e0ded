"""The SDK against a real server: every point arrives once, in order, whatever happens to the server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings
from bot.sdk import AsyncMetricsClient, InvalidValueError, MetricsClient, SessionClosedError, Spool
from tests.conftest import TIMEOUT, LiveServer
from tests.e2e.test_auth import SECRET, keys


async def history(
    url: str, session_id: str, message_type: str = "training_metrics", key: str | None = None
) -> list[dict[str, Any]]:
    """Every stored message of one type, page by page (with `key` as the credential, when auth is on)."""
    messages: list[dict[str, Any]] = []
    cursor = None
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT, headers=headers) as http:
        while True:
            params: dict[str, Any] = {"type": message_type, "limit": 10000, **({"cursor": cursor} if cursor else {})}
            page = (await http.get(f"/api/training/sessions/{session_id}/history", params=params)).json()
            messages += page["messages"]
            if page["next_cursor"] is None:
                return messages
            cursor = page["next_cursor"]


def episodes(messages: list[dict[str, Any]]) -> list[int]:
    return [m["data"]["episode"] for m in messages]


async def test_ten_thousand_points_arrive_in_order_once(live: LiveServer, tmp_path: Path) -> None:
    """10,000 points logged in a tight loop all arrive, in order, once; the run ends completed."""

    other = "http://127.0.0.1:9"  # another server's batch, in the spool this client shares: never ours
    Spool(tmp_path).append([{"kind": "status", "session_id": "x", "update": {"status": "running"}}], other)

    def train() -> str:
        with MetricsClient(live.url, spool_dir=tmp_path) as client:
            with client.session(name="loop", algorithm="DQN", total_episodes=10000) as run:
                for episode in range(10000):
                    run.log_metrics(episode=episode, current_reward=episode / 10, epsilon=0.1, my_stat=1.5)
                run.log_decision(q_values=[0.1, 0.9], action_probabilities={"l": 0.1, "r": 0.9}, selected_action="r")
                run.log_graph("reward_progress", current_reward=1.0)
            return run.session_id

    session_id = await asyncio.to_thread(train)
    assert episodes(await history(live.url, session_id)) == list(range(10000))
    assert len(await history(live.url, session_id, "bot_decision")) == 1
    async with httpx.AsyncClient(base_url=live.url) as http:
        session = (await http.get(f"/api/training/sessions/{session_id}")).json()
    assert session["status"] == "completed" and session["algorithm"] == "DQN" and session["current_episode"] == 9999
    assert Spool(tmp_path).pending(live.url) == 0 and Spool(tmp_path).pending(other) == 1


async def test_server_restart_mid_run_loses_and_duplicates_nothing(
    server_factory: Any, settings: Settings, tmp_path: Path
) -> None:
    """The server is stopped mid-run and restarted on the same database: every point arrives exactly once."""
    live = await server_factory(settings)
    port = live.port
    logged_half = asyncio.Event()
    loop = asyncio.get_running_loop()

    def train() -> str:
        client = MetricsClient(live.url, spool_dir=tmp_path, flush_timeout=30, flush_interval=0.05)
        with client.session(training_id="restart-run") as run:
            for episode in range(6000):
                run.log_metrics(episode=episode, current_reward=1.0)
                if episode == 3000:
                    loop.call_soon_threadsafe(logged_half.set)
                if episode % 500 == 0:
                    import time

                    time.sleep(0.05)
        client.close()
        return run.session_id

    training = asyncio.create_task(asyncio.to_thread(train))
    await asyncio.wait_for(logged_half.wait(), TIMEOUT)
    await live.stop()
    await asyncio.sleep(0.5)  # the engine keeps logging while the server is away
    restarted = await server_factory(settings, port=port)
    session_id = await asyncio.wait_for(training, 60)
    assert episodes(await history(restarted.url, session_id)) == list(range(6000))


async def test_exit_with_server_down_spools_and_bot_sync_delivers(
    server_factory: Any, settings: Settings, tmp_path: Path
) -> None:
    """A process that exits while its server is away says where to watch, leaves a spool (exiting within its
    flush_timeout), and `bot sync`, told nothing, uploads each batch to the server it was for, once."""
    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    script = textwrap.dedent(f"""
        from bot.sdk import MetricsClient
        client = MetricsClient({url!r}, spool_dir={str(tmp_path)!r}, flush_timeout=0.5)
        with client.session(training_id="offline-run", algorithm="PPO") as run:
            for episode in range(2500):
                run.log_metrics(episode=episode, current_reward=0.5)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"watch 'offline-run' live at {url}/sessions/offline-run" in result.stderr
    assert Spool(tmp_path).pending(url) > 0

    live = await server_factory(settings, port=port)  # the server is back
    sync = [sys.executable, "-m", "bot", "sync", str(tmp_path)]
    for _ in range(2):  # a second sync finds nothing left to send
        done = await asyncio.to_thread(subprocess.run, sync, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing to send" in done.stdout
    assert episodes(await history(live.url, "offline-run")) == list(range(2500))
    async with httpx.AsyncClient(base_url=live.url) as http:
        session = (await http.get("/api/training/sessions/offline-run")).json()
    assert session["algorithm"] == "PPO" and session["status"] == "completed"
    assert Spool(tmp_path).pending() == 0


def spooled_points(session_id: str, count: int) -> list[dict[str, Any]]:
    """Records as the sender spools them: one point each, with the session's spec to create it."""
    return [
        {
            "kind": "data",
            "session_id": session_id,
            "type": "training_metrics",
            "key": f"{session_id}-{episode}",
            "items": [{"episode": episode, "current_reward": 1.0}],
            "session": {"name": session_id},
        }
        for episode in range(count)
    ]


async def test_bot_sync_without_a_good_key_keeps_the_batches_and_says_so(
    server_factory: Any, settings: Settings, tmp_path: Path
) -> None:
    """`bot sync` without a key, against a server with auth on, exits 1 with one line naming the refused
    credential, and the batches stay in the spool (no dead letters): the same command with a key delivers them."""
    live = await server_factory(settings.model_copy(update={"enable_auth": True, "jwt_secret_key": SECRET}))
    admin, writer = keys(settings.database_url, (["admin"], None), (["write"], None))
    Spool(tmp_path).append(spooled_points("synced", 4), live.url)
    sync = [sys.executable, "-m", "bot", "sync", str(tmp_path)]
    without = {name: value for name, value in os.environ.items() if name != "TMS_API_KEY"}
    done = await asyncio.to_thread(subprocess.run, sync, capture_output=True, text=True, timeout=60, env=without)
    assert done.returncode == 1, done.stdout + done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"bot sync: the server at {live.url} refused the credential (HTTP 401: "), line
    assert "TMS_API_KEY" in line
    assert Spool(tmp_path).pending(live.url) == 4 and Spool(tmp_path).dead_letters() == []

    keyed = {**without, "TMS_API_KEY": writer}
    done = await asyncio.to_thread(subprocess.run, sync, capture_output=True, text=True, timeout=60, env=keyed)
    assert done.returncode == 0, done.stdout + done.stderr
    assert episodes(await history(live.url, "synced", key=admin)) == [0, 1, 2, 3]
    assert Spool(tmp_path).pending() == 0


@pytest.mark.parametrize("credential", ["no key", "read key"])
async def test_a_refused_credential_loses_nothing_and_says_so_once(
    server_factory: Any,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    credential: str,
) -> None:
    """A client whose credential the server refuses (none: 401; a read key: 403) delivers nothing and says so
    once, as an error; its batches are not dead letters but wait in the spool, and the next client of that
    server with a write key delivers them before its own, in order."""
    live = await server_factory(settings.model_copy(update={"enable_auth": True, "jwt_secret_key": SECRET}))
    admin, writer, reader = keys(settings.database_url, (["admin"], None), (["write"], None), (["read"], None))
    monkeypatch.delenv("TMS_API_KEY", raising=False)

    def log(key: str | None, episodes: range) -> tuple[bool, str | None]:
        with MetricsClient(live.url, api_key=key, spool_dir=tmp_path, flush_timeout=0.5) as client:
            with client.session(training_id="keyed") as run:
                for episode in episodes:
                    run.log_metrics(episode=episode)
                flushed = bool(run.flush(1.0))
            return flushed, client.credential_refused

    flushed, refused = await asyncio.to_thread(log, reader if credential == "read key" else None, range(5))
    assert not flushed and refused is not None
    assert refused.startswith("HTTP 403" if credential == "read key" else "HTTP 401"), refused
    said = [r for r in caplog.records if r.levelname == "ERROR" and "refused the credential" in r.getMessage()]
    assert len(said) == 1, caplog.text
    assert Spool(tmp_path).pending(live.url) > 0 and Spool(tmp_path).dead_letters() == []

    flushed, refused = await asyncio.to_thread(log, writer, range(5, 8))
    assert flushed and refused is None
    assert episodes(await history(live.url, "keyed", key=admin)) == list(range(8))
    assert Spool(tmp_path).pending() == 0


async def test_a_key_for_one_session_is_not_held_up_by_another_sessions_spool(
    server_factory: Any, settings: Settings, tmp_path: Path
) -> None:
    """A key limited to one session (a job's) finds another session's batches in the spool, which it may not
    send (403): they stay there for a key that may, and its own run is delivered meanwhile."""
    live = await server_factory(settings.model_copy(update={"enable_auth": True, "jwt_secret_key": SECRET}))
    admin, mine = keys(settings.database_url, (["admin"], None), (["write"], "mine"))
    Spool(tmp_path).append(spooled_points("orphan", 3), live.url)

    def log() -> str | None:
        with MetricsClient(live.url, api_key=mine, spool_dir=tmp_path, flush_timeout=TIMEOUT) as client:
            with client.session(training_id="mine") as run:
                for episode in range(10):
                    run.log_metrics(episode=episode)
            return client.credential_refused

    assert await asyncio.to_thread(log) is None
    assert episodes(await history(live.url, "mine", key=admin)) == list(range(10))
    assert Spool(tmp_path).pending(live.url) == 3 and Spool(tmp_path).dead_letters() == []
    sync = [sys.executable, "-m", "bot", "sync", str(tmp_path)]
    env = {**os.environ, "TMS_API_KEY": admin}
    done = await asyncio.to_thread(subprocess.run, sync, capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert episodes(await history(live.url, "orphan", key=admin)) == [0, 1, 2]


def spooled(spool_dir: Path, url: str, session_id: str) -> tuple[list[int], list[str]]:
    """The episodes and the statuses of one session waiting in the spool for `url`, in spool order."""
    spool = Spool(spool_dir)
    records = [record for _, record in spool.oldest(url, 1_000_000) if record["session_id"] == session_id]
    spool.close()
    episodes = [item["episode"] for record in records if record["kind"] == "data" for item in record["items"]]
    return episodes, [record["update"]["status"] for record in records if record["kind"] == "status"]


def exit_script(url: str, session_id: str, points: int, after: str = "") -> str:
    """A training script as users write one: a run in a `with` block, then `after`, then the interpreter's
    exit. The spool is the one TMS_SPOOL_DIR names."""
    return textwrap.dedent(f"""
        import os, signal
        from bot.sdk import MetricsClient
        client = MetricsClient({url!r}, flush_timeout=0.5)
        with client.session(training_id={session_id!r}) as run:
            for episode in range({points}):
                run.log_metrics(episode=episode, current_reward=0.5)
        print("left the block", flush=True)
        {after}
    """)


@pytest.mark.slow  # 300 batches to upload, twice
async def test_an_exit_behind_an_older_spool_loses_nothing_of_the_new_run(live: LiveServer, tmp_path: Path) -> None:
    """A script runs while 300 older batches (another run's) wait in the spool for its server, and are
    uploaded first: at its exit, every point of the new run and its `completed` are delivered or spooled,
    none lost (the upload gives way to the exit: the new records join the spool at once, and the rest waits);
    `bot sync` then leaves every point on the server, once and in order."""
    older = [
        {
            "kind": "data",
            "session_id": "older-run",
            "type": "training_metrics",
            "key": f"older-{batch}",
            "items": [{"episode": batch * 200 + i, "current_reward": 1.0} for i in range(200)],
            "session": {"name": "older"},
        }
        for batch in range(300)
    ]
    Spool(tmp_path).append(older, live.url)
    env = {**os.environ, "TMS_SPOOL_DIR": str(tmp_path)}
    command = [sys.executable, "-c", exit_script(live.url, "new-run", 3000)]
    result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr

    in_spool, statuses = spooled(tmp_path, live.url, "new-run")
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as http:
        session = await http.get("/api/training/sessions/new-run")
    delivered = episodes(await history(live.url, "new-run")) if session.status_code == 200 else []
    assert set(delivered) | set(in_spool) == set(range(3000))
    assert "completed" in statuses or session.json()["status"] == "completed"

    sync = [sys.executable, "-m", "bot", "sync", str(tmp_path)]
    done = await asyncio.to_thread(subprocess.run, sync, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert episodes(await history(live.url, "new-run")) == list(range(3000))
    assert episodes(await history(live.url, "older-run")) == list(range(60000))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as http:
        assert (await http.get("/api/training/sessions/new-run")).json()["status"] == "completed"


@pytest.mark.parametrize("then", ["exit", "kill -9"])
def test_leaving_the_block_with_the_server_down_spools_the_run(tmp_path: Path, then: str) -> None:
    """With the server down (a closed port), the run is in the spool when its `with` block ends: every
    point, and `completed`. A kill -9 right after loses nothing, and the interpreter's exit does not wait
    for the server a second time (the process ends; bench/sdk_exit.py prints how long it takes)."""
    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    after = "os.kill(os.getpid(), signal.SIGKILL)" if then == "kill -9" else ""
    env = {**os.environ, "TMS_SPOOL_DIR": str(tmp_path)}
    command = [sys.executable, "-c", exit_script(url, "down-run", 2500, after)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == (-signal.SIGKILL if then == "kill -9" else 0), result.stderr
    assert "left the block" in result.stdout
    assert spooled(tmp_path, url, "down-run") == (list(range(2500)), ["running", "completed"])


def test_a_slow_spool_write_still_holds_the_run_when_the_block_ends(tmp_path: Path, monkeypatch: Any) -> None:
    """On a loaded machine writing to the spool can take longer than the exit keeps for it: the block still
    ends with every point and `completed` in the spool, late rather than lost (a slow disk stands in for the
    load: each spool write sleeps past the exit's margin; the server is a closed port)."""
    write = Spool.append

    def slow_write(self: Spool, records: list[dict[str, Any]], url: str) -> None:
        time.sleep(0.6)
        write(self, records, url)

    monkeypatch.setattr(Spool, "append", slow_write)
    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    client = MetricsClient(url, spool_dir=tmp_path, flush_timeout=0.5)
    with client.session(training_id="slow-disk") as run:
        for episode in range(100):
            run.log_metrics(episode=episode)
    assert spooled(tmp_path, url, "slow-disk") == (list(range(100)), ["running", "completed"])
    client.close()


async def test_decisions_take_lists_arrays_and_tensors(live: LiveServer, tmp_path: Path) -> None:
    """Probabilities and Q-values as a list, a numpy array or a torch tensor (indexed by action); a wrong
    shape raises InvalidValueError naming the field, a misspelt keyword raises at the call."""
    import numpy as np
    import torch

    def log() -> None:
        with MetricsClient(live.url, spool_dir=tmp_path) as client, client.session(training_id="tensors") as run:
            run.log_decision(
                action_probabilities=torch.tensor([0.25, 0.75]),
                q_values=np.array([[1.5, -2.0]], dtype=np.float32),
                state_values=np.float64(0.5),
                selected_action=torch.tensor(1),
                confidence_score=np.float32(0.75),
            )
            run.log_decision(action_probabilities=[0.5, 0.5], q_values=(1, 2))
            with pytest.raises(InvalidValueError, match="q_values"):
                run.log_decision(q_values=np.zeros((2, 3)))
            with pytest.raises(InvalidValueError, match="action_probabilities"):
                run.log_decision(action_probabilities=np.array([0.9, 0.9]))
            with pytest.raises(TypeError, match="q_value"):
                run.log_decision(q_value=[1.0])  # type: ignore[call-arg]

    await asyncio.to_thread(log)
    first, second = [m["data"] for m in await history(live.url, "tensors", "bot_decision")]
    assert first["action_probabilities"] == {"0": 0.25, "1": 0.75} and first["q_values"] == [1.5, -2.0]
    assert first["state_values"] == 0.5 and first["selected_action"] == 1 and first["confidence_score"] == 0.75
    assert second["action_probabilities"] == {"0": 0.5, "1": 0.5} and second["q_values"] == [1.0, 2.0]


async def test_a_value_the_server_would_refuse_raises_and_costs_no_neighbour(live: LiveServer, tmp_path: Path) -> None:
    """A value the server refuses raises InvalidValueError at the call, so it never travels: the server
    refuses a whole batch for one bad item, and the valid points sent with it were lost (dead letters) while
    flush() said everything was delivered. A dict of Q-values by action number is the list by action."""

    def log() -> Any:
        with MetricsClient(live.url, spool_dir=tmp_path) as client, client.session(training_id="parity") as run:
            run.log_metrics(episode=1, current_reward=1.0)
            for bad in (
                lambda: run.log_metrics(episode=2, current_reward=2.0, timestamp=1e11),
                lambda: run.log_metrics(episode=2, custom={"seq": 555.0}),
                lambda: run.log_graph("", x=1.0),
                lambda: run.log_graph("g", title="t" * 257, x=1.0),
                lambda: run.log_graph("g", max_points=100_001, x=1.0),
                lambda: run.log_graph("g", **{f"s{i}": 1.0 for i in range(65)}),
                lambda: run.log_decision(q_values={"left": 1.0, "right": 2.0}),
                lambda: run.log_decision(selected_action=2**64),
                lambda: run.log_decision(episode=2**63),
            ):
                with pytest.raises(InvalidValueError):
                    bad()
            run.log_graph("ok", x=1.0)
            run.log_decision(q_values={1: 2.0, 0: 1.0}, selected_action=0)
            run.log_metrics(episode=3, current_reward=3.0, timestamp=datetime(2026, 12, 6, 12, 0))
            return run.flush(), client.rejected

    flushed, rejected = await asyncio.to_thread(log)
    assert flushed.delivered and rejected == 0
    metrics = [m["data"] for m in await history(live.url, "parity")]
    assert [m["episode"] for m in metrics] == [1, 3] and all("custom" not in m for m in metrics)
    assert datetime.fromisoformat(metrics[1]["timestamp"]) == datetime(2026, 12, 6, 12, 0).astimezone()
    graph = (await history(live.url, "parity", "graph_update"))[0]["data"]
    assert graph["graph_id"] == "ok" and graph["data_points"]["x"][0]["value"] == 1.0
    assert (await history(live.url, "parity", "bot_decision"))[0]["data"]["q_values"] == [1.0, 2.0]


def test_flush_says_what_was_delivered_and_what_was_spooled(tmp_path: Path) -> None:
    """With the server away and the memory bound passed, a flush is not a success: it says how much waits in
    the spool (the server is outside this test: a transport that refuses every connection stands in)."""

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = MetricsClient(
        "http://metrics.invalid", spool_dir=tmp_path, max_pending=10, transport=httpx.MockTransport(refuse)
    )
    run = client.session(training_id="away")
    for episode in range(100):
        run.log_metrics(episode=episode)
    result = client.flush(1.0)
    assert not result and not result.delivered and result.spooled + result.pending > 0
    client.close()
    assert Spool(tmp_path).pending("http://metrics.invalid") > 0


def test_retry_after_is_honoured_within_the_flush_deadline(tmp_path: Path) -> None:
    """A 503 with Retry-After: 30 is not retried before then, not even by a flush, which returns at its own
    deadline (the server is outside this test: a transport that answers 503 stands in)."""
    calls: list[str] = []

    def busy(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(503, headers={"Retry-After": "30"}, json={"detail": "busy"})

    client = MetricsClient(
        "http://metrics.invalid", spool_dir=tmp_path, flush_timeout=0.3, transport=httpx.MockTransport(busy)
    )
    client.session(training_id="patient").log_metrics(episode=1)
    assert not client.flush(0.5)
    assert not client.flush(0.5)
    assert len(calls) == 1, calls
    client.close()  # within flush_timeout, still without a retry: the batches wait in the spool
    assert len(calls) == 1 and Spool(tmp_path).pending("http://metrics.invalid") == 2


def test_close_never_writes_the_spool_beside_a_request_in_flight(tmp_path: Path) -> None:
    """While the sender is inside a request, close() writes nothing itself: the sender, once its request
    returns, is the one writer. The batch in flight is delivered once and never also spooled (the server
    is outside this test: a transport that holds its answer until released stands in)."""
    release = threading.Event()
    received: list[bytes] = []

    def slow(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/metrics"):
            release.wait(TIMEOUT)
            received.append(request.content)
        return httpx.Response(201 if request.url.path.endswith("sessions") else 200, json={})

    client = MetricsClient(
        "http://metrics.invalid", spool_dir=tmp_path, flush_timeout=0.3, transport=httpx.MockTransport(slow)
    )
    client.session(training_id="inflight").log_metrics(episode=1)
    deadline = time.monotonic() + TIMEOUT
    while not client._sender._busy and time.monotonic() < deadline:
        time.sleep(0.01)
    client.close()
    assert Spool(tmp_path).pending() == 0  # nothing written beside the request in flight
    release.set()
    client._sender._thread.join(TIMEOUT)
    assert len(received) == 1 and Spool(tmp_path).pending() == 0


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"win_rate": 150}, "win_rate"),
        ({"epsilon": "high"}, "epsilon"),
        ({"episode": 2.5}, "episode"),
        ({"my stat": 1.0}, "my stat"),
        ({"flag": True}, "flag"),
        ({"learning_rate": -1}, "learning_rate"),
        ({f"m{i}": 1.0 for i in range(257)}, "custom metrics"),
        ({"step": -5}, "step"),
        ({"step": 1.5}, "step"),
    ],
)
def test_bad_value_raises_in_the_caller(tmp_path: Path, fields: dict[str, Any], needle: str) -> None:
    """A value the server would reject raises InvalidValueError at the call, naming the field."""
    client = MetricsClient("http://127.0.0.1:9", spool_dir=tmp_path, flush_timeout=0)
    run = client.session(training_id="bad-values")
    with pytest.raises(InvalidValueError, match=needle):
        run.log_metrics(**fields)
    with pytest.raises(InvalidValueError, match="sum to 1"):
        run.log_decision(action_probabilities={"a": 0.9, "b": 0.9})
    client.close()
    with pytest.raises(SessionClosedError):
        run.log_metrics(episode=1)


async def test_the_run_s_own_step_goes_with_metrics_and_graphs(live: LiveServer, tmp_path: Path) -> None:
    """`step=` on log_metrics, log_graph and log_decision, as wandb.log's: stored with each point, never a
    custom metric of that name; a graph point may say its episode too."""

    def log() -> None:
        with MetricsClient(live.url, spool_dir=tmp_path) as client, client.session(training_id="steps") as run:
            run.log_metrics(episode=1, step=2048, current_reward=1.0)
            run.log_graph("evaluation", step=4096, episode=2, eval_mean_reward=3.0)
            run.log_decision(q_values=[1.0, 2.0], step=4100)
            with pytest.raises(InvalidValueError, match="step"):
                run.log_graph("evaluation", step=-1, eval_mean_reward=3.0)

    await asyncio.to_thread(log)
    metrics = (await history(live.url, "steps"))[0]["data"]
    assert metrics["step"] == 2048 and "custom" not in metrics
    point = (await history(live.url, "steps", "graph_update"))[0]["data"]["data_points"]["eval_mean_reward"][0]
    assert (point["step"], point["episode"], point["value"]) == (4096, 2, 3.0)
    assert (await history(live.url, "steps", "bot_decision"))[0]["data"]["step"] == 4100


async def test_async_client_and_failed_run(live: LiveServer, tmp_path: Path) -> None:
    """AsyncMetricsClient logs the same way; an exception escaping the run marks the session failed."""
    async with AsyncMetricsClient(live.url, spool_dir=tmp_path) as client:
        with pytest.raises(RuntimeError):
            async with client.session(training_id="async-run") as run:
                run.log_metrics(episode=0, loss_value=float("nan"))
                raise RuntimeError("diverged")
    async with httpx.AsyncClient(base_url=live.url) as http:
        session = (await http.get("/api/training/sessions/async-run")).json()
    assert session["status"] == "failed"
    stored = await history(live.url, "async-run")
    assert stored[0]["data"]["loss_value"] == "NaN"


def test_sdk_imports_no_server_and_no_torch() -> None:
    """A training engine can install the SDK without the server or torch."""
    code = "import sys, bot.sdk; print([m for m in sys.modules if m.startswith(('bot.server', 'torch', 'fastapi'))])"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}, check=True
    )
    assert output.stdout.strip() == "[]"


def test_public_names_are_exported() -> None:
    """`__all__` is exactly the public names bot.sdk offers, each of them defined in the SDK itself."""
    import inspect

    import bot.sdk

    public = {name for name, value in vars(bot.sdk).items() if not name.startswith("_") and not inspect.ismodule(value)}
    assert set(bot.sdk.__all__) == public
    assert all(getattr(bot.sdk, name).__module__.startswith("bot.sdk") for name in bot.sdk.__all__)


async def test_silent_engine_goes_stale_and_comes_back(server_factory: Any, settings: Settings, tmp_path: Path) -> None:
    """A running session with no data and no heartbeat turns `stale` (spectators are told); data wakes it."""
    # Long enough that a pause of the test process (which also runs the server) between the push and the
    # check below cannot make the session stale again.
    live = await server_factory(settings.model_copy(update={"stale_timeout_seconds": 1.5}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as http:
        await http.post("/api/training/sessions", json={"training_id": "quiet"})
        await http.put("/api/training/sessions/quiet", json={"status": "running"})
        async with asyncio.timeout(TIMEOUT):
            while (await http.get("/api/training/sessions/quiet")).json()["status"] != "stale":
                await asyncio.sleep(0.1)
        assert (await http.post("/api/training/sessions/quiet/metrics", json={"episode": 1})).status_code == 200
        assert (await http.get("/api/training/sessions/quiet")).json()["status"] == "running"
    statuses = [m["data"]["status"] for m in await history(live.url, "quiet", "training_status")]
    assert statuses == ["running", "stale", "running"]


async def test_heartbeats_keep_an_idle_run_alive(server_factory: Any, settings: Settings, tmp_path: Path) -> None:
    """An open run that logs nothing for a while still sends heartbeats, so it never goes stale."""
    stale_after = 1.0
    live = await server_factory(settings.model_copy(update={"stale_timeout_seconds": stale_after}))

    def heartbeats_outlived_the_timeout(http: httpx.Client) -> bool:
        session = http.get("/api/training/sessions/idle").json()
        if session.get("status") != "running":  # not delivered yet; never stale (the history checks that)
            return False
        alive_for = datetime.fromisoformat(session["updated_at"]) - datetime.fromisoformat(session["created_at"])
        return alive_for.total_seconds() > 2.5 * stale_after

    def idle_run() -> None:
        with MetricsClient(live.url, spool_dir=tmp_path, heartbeat_interval=0.1, flush_interval=0.05) as client:
            with client.session(training_id="idle"), httpx.Client(base_url=live.url, timeout=TIMEOUT) as http:
                # Idle until the server has seen heartbeats for well past the stale timeout (an event on the
                # server, not a sleep whose length would race the staleness check).
                deadline = time.monotonic() + TIMEOUT
                while not heartbeats_outlived_the_timeout(http):
                    assert time.monotonic() < deadline, "heartbeats did not keep the session updated"
                    time.sleep(0.05)

    await asyncio.to_thread(idle_run)
    statuses = [m["data"]["status"] for m in await history(live.url, "idle", "training_status")]
    assert statuses == ["running", "completed"]


def test_the_sdk_imports_where_there_is_no_fcntl() -> None:
    """`import bot.sdk` works on Windows: nothing it imports needs fcntl (stood in for by blocking it here)."""
    script = "import sys; sys.modules['fcntl'] = None; import bot.sdk; bot.sdk.Spool"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


async def test_system_metrics_sample_the_process_at_the_runs_step(live: LiveServer, tmp_path: Path) -> None:
    """`system_metrics=`: the process's CPU %, resident memory and threads, every interval, as the run's
    `system/...` metrics at the step and episode it last logged; none after the run ends; a bad interval
    raises at once."""

    def sampled() -> bool:
        answer = httpx.get(f"{live.url}/api/training/sessions/costs/history", params={"type": "training_metrics"})
        return answer.status_code == 200 and any("custom" in m["data"] for m in answer.json()["messages"])

    def log() -> None:
        with MetricsClient(live.url, spool_dir=tmp_path) as client:
            with client.session(training_id="costs", system_metrics=0.05) as run:
                run.log_metrics(episode=3, step=300, current_reward=1.0)
                deadline = time.monotonic() + TIMEOUT
                while time.monotonic() < deadline and not sampled():
                    run.flush()
                    time.sleep(0.05)
            with pytest.raises(ValueError, match="interval"):
                client.session(training_id="bad-interval", system_metrics=-1.0)

    await asyncio.to_thread(log)
    samples = [m["data"] for m in await history(live.url, "costs") if "custom" in m["data"]]
    assert samples, "no system sample arrived"
    first = samples[0]
    assert set(first["custom"]) >= {"system/cpu_percent", "system/rss_mb", "system/threads"}, first
    assert first["custom"]["system/rss_mb"] > 1 and first["custom"]["system/threads"] >= 1
    assert (first["step"], first["episode"]) == (300, 3)


async def test_a_run_s_tags_are_given_and_replaced(live: LiveServer, tmp_path: Path) -> None:
    def log() -> None:
        with MetricsClient(live.url, spool_dir=tmp_path) as client:
            with pytest.raises(InvalidValueError, match="tags"):
                client.session(training_id="tags-bad", tags=['a "quoted" tag'])
            with client.session(training_id="tags", tags=["baseline"]) as run:
                run.log_metrics(episode=1, current_reward=1.0)
                run.set_tags(["baseline", "best"])
                with pytest.raises(InvalidValueError, match="tags"):
                    run.set_tags(["x" * 65])

    await asyncio.to_thread(log)
    async with httpx.AsyncClient(base_url=live.url) as client:
        assert (await client.get("/api/training/sessions/tags")).json()["tags"] == ["baseline", "best"]
        assert (await client.get("/api/training/sessions/tags-bad")).status_code == 404  # nothing sent
