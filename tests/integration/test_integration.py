"""The original integration API and the framework adapters, against a real server."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings
from bot.integration import MetricsCollector, SpectatorManagerIntegration, TrainingEngineIntegration
from bot.sdk import MetricsClient
from tests.conftest import LiveServer, connect_and_sync, listening_socket, recv_data
from tests.sdk.test_client import history, spooled


@pytest.mark.parametrize("target", ["server object", "url"])
async def test_original_integration_api(live: LiveServer, tmp_path: Path, target: str) -> None:
    """register, update and record_episode_end work given the server object or its URL."""
    integration = TrainingEngineIntegration(
        live.app_server if target == "server object" else live.url, spool_dir=tmp_path
    )
    collector = MetricsCollector(integration, window=2)
    session_id = await integration.register_training_session(
        training_id="my_training_001", model_generation=2, algorithm="DQN", total_episodes=1000
    )
    assert session_id == "my_training_001"
    await integration.update_training_metrics(
        training_id="my_training_001", episode=5, current_reward=15.5, episode_length=200
    )
    derived = []
    for reward, won in ((10.0, True), (20.0, False), (30.0, True)):
        derived.append(
            await collector.record_episode_end(
                training_id="my_training_001", reward=reward, episode_length=100, won=won, total_episodes=1000
            )
        )
    await integration.end_training_session("my_training_001")
    await integration.close()

    last = derived[-1]
    assert (last["episode"], last["average_reward"], last["best_reward"]) == (3, 25.0, 30.0)
    assert last["win_rate"] == pytest.approx(200 / 3)
    stored = await history(live.url, "my_training_001")
    assert [m["data"].get("current_reward") for m in stored] == [15.5, 10.0, 20.0, 30.0]
    assert stored[-1]["data"]["win_rate"] == pytest.approx(200 / 3) and stored[-1]["data"]["total_episodes"] == 1000
    statuses = [m["data"]["status"] for m in await history(live.url, "my_training_001", "training_status")]
    assert statuses == ["running", "completed"]


async def test_ending_a_session_with_the_server_down_spools_it_within_one_flush_timeout(tmp_path: Path) -> None:
    """end_training_session ends the run as leaving a `with` block does: with the server down, every point
    and the final status are in the spool when it returns (a kill -9 right after loses nothing), and the
    close() that follows keeps to the same deadline instead of waiting for the server a second time."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"  # nothing listens there
    integration = TrainingEngineIntegration(url, spool_dir=tmp_path, flush_timeout=0.5)
    await integration.register_training_session(training_id="down")
    for episode in range(100):
        await integration.update_training_metrics(training_id="down", episode=episode, current_reward=1.0)
    await integration.end_training_session("down", status="completed")
    assert spooled(tmp_path, url, "down") == (list(range(100)), ["running", "completed"])
    sender = integration.client._sender
    assert sender.exit_deadline is not None and not sender.pending()  # so close() keeps to that deadline
    await integration.close()


async def test_spectator_manager_integration_creates_a_guarded_room(
    live: LiveServer, tmp_path: Path, spectators: Any
) -> None:
    """create_integrated_session returns a room code and password that spectators join with."""
    rooms: list[dict[str, Any]] = []

    class Manager:
        def on_room_created(self, room: dict[str, Any]) -> None:
            rooms.append(room)

    spectator_integration = SpectatorManagerIntegration(live.app_server, Manager())
    room = await spectator_integration.create_integrated_session(
        training_session_id="watched",
        model_generation=1,
        algorithm="PPO",
        total_episodes=10,
        max_spectators=3,
        password_protected=True,
    )
    assert room["session_id"] == "watched" and room["room_code"] and room["room_password"]
    assert rooms == [room]
    ws = await connect_and_sync(spectators, live.ws_url(room["room_code"], f"password={room['room_password']}"))
    integration = TrainingEngineIntegration(live.url, spool_dir=tmp_path)
    await integration.update_training_metrics("watched", episode=1, current_reward=2.0)
    await integration.flush()
    received = await recv_data(ws, 2)
    assert [m["type"] for m in received] == ["training_status", "training_metrics"]
    await integration.close()


@pytest.mark.slow
async def test_stable_baselines3_dqn_on_cartpole(live: LiveServer, tmp_path: Path) -> None:
    """SB3 DQN on CartPole-v1 for a few thousand steps: episodes, epsilon, loss and Q-value decisions arrive."""
    from stable_baselines3 import DQN

    from bot.integration.sb3 import MetricsCallback

    def train() -> str:
        with (
            MetricsClient(live.url, spool_dir=tmp_path) as client,
            client.session(name="cartpole-dqn", algorithm="DQN") as run,
        ):
            model = DQN("MlpPolicy", "CartPole-v1", learning_starts=500, train_freq=4, seed=0, device="cpu")
            model.learn(3000, callback=MetricsCallback(run, decision_every=500))
            return run.session_id

    session_id = await asyncio.to_thread(train)
    episodes = await history(live.url, session_id)
    assert len(episodes) >= 20
    assert [m["data"]["episode"] for m in episodes] == list(range(len(episodes)))
    assert all(0 <= m["data"]["epsilon"] <= 1 for m in episodes)
    assert any("loss_value" in m["data"] for m in episodes)
    decisions = await history(live.url, session_id, "bot_decision")
    assert len(decisions) == 6 and all(len(d["data"]["q_values"]) == 2 for d in decisions)
    assert [m["data"]["step"] for m in episodes] == sorted(m["data"]["step"] for m in episodes)  # SB3's timesteps
    async with httpx.AsyncClient(base_url=live.url) as http:
        config = (await http.get(f"/api/training/sessions/{session_id}")).json()["metadata"]["sb3"]
    assert (config["algorithm"], config["total_timesteps"], config["learning_starts"]) == ("DQN", 3000, 500), config
    assert config["env_id"] == "CartPole-v1" and config["gamma"] == 0.99


@pytest.mark.slow
async def test_stable_baselines3_ppo_logs_action_probabilities(live: LiveServer, tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    from bot.integration.sb3 import MetricsCallback

    def train() -> str:
        with MetricsClient(live.url, spool_dir=tmp_path) as client, client.session(algorithm="PPO") as run:
            model = PPO("MlpPolicy", "CartPole-v1", n_steps=256, batch_size=64, n_epochs=1, seed=0, device="cpu")
            model.learn(512, callback=MetricsCallback(run, decision_every=256))
            return run.session_id

    session_id = await asyncio.to_thread(train)
    decisions = await history(live.url, session_id, "bot_decision")
    assert decisions and set(decisions[0]["data"]["action_probabilities"]) == {"0", "1"}


async def test_gymnasium_wrapper_logs_each_episode(live: LiveServer, tmp_path: Path) -> None:
    """Every finished episode of a wrapped environment becomes one metrics point."""
    import gymnasium

    from bot.integration.gymnasium import MetricsWrapper

    def play() -> tuple[str, list[float]]:
        rewards = []
        with MetricsClient(live.url, spool_dir=tmp_path) as client, client.session(algorithm="random") as run:
            env = MetricsWrapper(gymnasium.make("CartPole-v1"), run)
            env.action_space.seed(0)
            for episode in range(10):
                env.reset(seed=episode)
                total, done = 0.0, False
                while not done:
                    _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
                    total += float(reward)
                    done = terminated or truncated
                rewards.append(total)
            env.close()
            return run.session_id, rewards

    session_id, rewards = await asyncio.to_thread(play)
    stored = await history(live.url, session_id)
    assert [m["data"]["current_reward"] for m in stored] == rewards
    assert stored[-1]["data"]["best_reward"] == max(rewards)
    assert stored[-1]["data"]["step"] == sum(rewards)  # CartPole: a reward of 1 a step
    async with httpx.AsyncClient(base_url=live.url) as http:
        metadata = (await http.get(f"/api/training/sessions/{session_id}")).json()["metadata"]
    assert metadata == {"env_id": "CartPole-v1"}


async def test_integration_errors_are_the_sdks_own(live: LiveServer) -> None:
    """A room that cannot be created raises the SDK's ServerError (a refusal) or ServerUnavailableError (no
    server), never an httpx exception."""
    from bot.sdk import ServerError, ServerUnavailableError

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(ServerUnavailableError, match="room"):
        await SpectatorManagerIntegration(nobody).create_integrated_session("r1", 1, "PPO", 10)
    manager = SpectatorManagerIntegration(live.url)
    await manager.create_integrated_session("r2", 1, "PPO", 10)
    with pytest.raises(ServerError) as refused:
        await manager.create_integrated_session("r2", 1, "PPO", 10)  # the id is taken: 409
    assert refused.value.status == 409 and not isinstance(refused.value, ServerUnavailableError)


async def test_spectator_manager_integration_takes_a_key_as_the_sdk_does(
    server_factory: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With auth on, SpectatorManagerIntegration sends its credential as the SDK does: `api_key=`, else
    TMS_API_KEY; without either the server's 401 is the SDK's ServerError."""
    from bot.sdk import ServerError
    from tests.e2e.test_auth import SECRET, keys

    live = await server_factory(settings.model_copy(update={"enable_auth": True, "jwt_secret_key": SECRET}))
    (writer,) = keys(settings.database_url, (["write"], None))
    monkeypatch.delenv("TMS_API_KEY", raising=False)
    with pytest.raises(ServerError) as refused:
        await SpectatorManagerIntegration(live.url).create_integrated_session("no-key", 1, "PPO", 10)
    assert refused.value.status == 401
    room = await SpectatorManagerIntegration(live.url, api_key=writer).create_integrated_session(
        "by-argument", max_spectators=3, password_protected=True
    )
    assert room["session_id"] == "by-argument" and room["room_password"]
    monkeypatch.setenv("TMS_API_KEY", writer)
    room = await SpectatorManagerIntegration(live.url).create_integrated_session("by-environment")
    assert room["session_id"] == "by-environment" and room["room_code"]


async def test_the_original_import_paths_serve_and_integrate(tmp_path: Path) -> None:
    """Code written against the original design's modules runs: the server from bot.rl_bot_system.server
    with its nested configuration, an engine through bot.rl_bot_system.server.integration."""
    import uvicorn

    from bot.rl_bot_system.server import TrainingMetricsServer
    from bot.rl_bot_system.server.config import DatabaseConfig, PerformanceConfig, ServerConfiguration
    from bot.rl_bot_system.server.integration import MetricsCollector, TrainingEngineIntegration

    sock = listening_socket()
    port = sock.getsockname()[1]
    config = ServerConfiguration(
        host="127.0.0.1",
        port=port,
        database=DatabaseConfig(url=f"sqlite:///{tmp_path / 'seed.db'}"),
        performance=PerformanceConfig(ingest_processes=0),
    )
    server = TrainingMetricsServer(config)
    uvicorn_server = uvicorn.Server(server.uvicorn_config(log_level="warning"))
    task = asyncio.create_task(uvicorn_server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not uvicorn_server.started:
                await asyncio.sleep(0.01)
        integration = TrainingEngineIntegration(server)
        collector = MetricsCollector(integration)
        await integration.register_training_session(training_id="seed", algorithm="DQN", total_episodes=3)
        for episode in range(3):
            await collector.record_episode_end(training_id="seed", reward=float(episode), episode_length=10, won=True)
        await integration.end_training_session("seed")
        await integration.close()
        stored = await history(server.url, "seed")
    finally:
        uvicorn_server.should_exit = True
        await task
    assert [(m["data"]["episode"], m["data"]["average_reward"]) for m in stored] == [(1, 0.0), (2, 0.5), (3, 1.0)]


async def test_the_server_logs_its_start_and_stop_under_the_designs_name(
    server_factory: Any, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A logging configuration written for the original design (`bot.rl_bot_system.server`) sees the server
    start, where it listens and on what, and stop."""
    with caplog.at_level(logging.INFO):
        live = await server_factory(settings, log_level="info")
        await live.stop()
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("bot.rl_bot_system.server")]
    backend = settings.database_url.split(":", 1)[0]
    started = f"training metrics server started on 127.0.0.1:{live.port} ({backend}, in-memory broker)"
    assert lines == [started, "training metrics server stopping"], lines
