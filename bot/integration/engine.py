"""The integration API of the original design, on top of the SDK.

    integration = TrainingEngineIntegration(server)          # or TrainingEngineIntegration("http://...")
    collector = MetricsCollector(integration)
    session_id = await integration.register_training_session(training_id="t1", algorithm="DQN")
    await integration.update_training_metrics(training_id="t1", episode=5, current_reward=15.5)
    await collector.record_episode_end(training_id="t1", reward=15.5, episode_length=200, won=True)

Given a server object it talks to that server over loopback; given a URL, to any server. Either way
every call goes through `bot.sdk`: non-blocking, batched, never losing a point.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx

from bot.sdk import FlushResult, MetricsClient, Run
from bot.sdk.client import auth_headers
from bot.sdk.errors import ServerUnavailableError, raise_for_response


class HasURL(Protocol):
    @property
    def url(self) -> str: ...


def server_url(server: str | HasURL) -> str:
    return server if isinstance(server, str) else server.url


class TrainingEngineIntegration:
    def __init__(self, server: str | HasURL, *, spool_dir: str | Path | None = None, **client_options: Any) -> None:
        self.url = server_url(server)
        self.client = MetricsClient(self.url, spool_dir=spool_dir, **client_options)
        self._runs: dict[str, Run] = {}

    async def register_training_session(
        self,
        training_id: str,
        model_generation: int | None = None,
        algorithm: str | None = None,
        total_episodes: int | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
    ) -> str:
        """Create (or resume) the session `training_id` and mark it running; returns its session id."""
        run = self.client.session(
            name,
            training_id=training_id,
            algorithm=algorithm,
            model_generation=model_generation,
            total_episodes=total_episodes,
            metadata=metadata,
        )
        run.__enter__()
        self._runs[training_id] = run
        return run.session_id

    def run(self, training_id: str) -> Run:
        """The SDK run behind `training_id`, resumed on first use if it was not registered here."""
        if training_id not in self._runs:
            self._runs[training_id] = self.client.session(training_id=training_id).__enter__()
        return self._runs[training_id]

    async def update_training_metrics(self, training_id: str, **metrics: Any) -> None:
        self.run(training_id).log_metrics(**metrics)

    async def record_bot_decision(self, training_id: str, **decision: Any) -> None:
        self.run(training_id).log_decision(**decision)

    async def update_performance_graph(self, training_id: str, graph_id: str, **values: Any) -> None:
        self.run(training_id).log_graph(graph_id, **values)

    async def end_training_session(
        self, training_id: str, status: str = "completed", message: str | None = None
    ) -> None:
        """End the run as leaving its `with` block does: deliver for at most flush_timeout, and what is left is
        in the spool on return. A close() right after keeps to that same deadline: one flush_timeout in all,
        not one here (a flush) and another in close(), with the server down."""
        run = self._runs.pop(training_id, None) or self.run(training_id)
        self.client._sender.open_runs.discard(run.session_id)
        run.set_status(status, message)
        run._ended = True
        await asyncio.to_thread(self.client._settle)

    async def flush(self, timeout: float | None = None) -> FlushResult:
        return await asyncio.to_thread(self.client.flush, timeout)

    async def close(self) -> None:
        await asyncio.to_thread(self.client.close)


@dataclass
class _Episodes:
    rewards: deque[float]
    started: float = field(default_factory=time.monotonic)
    count: int = 0
    wins: int = 0
    decided: int = 0
    best: float | None = None


class MetricsCollector:
    """Derives average reward (moving window), best reward, win rate, episode count and elapsed time."""

    def __init__(self, integration: TrainingEngineIntegration, window: int = 100) -> None:
        self.integration = integration
        self.window = window
        self._episodes: dict[str, _Episodes] = {}

    async def record_episode_end(
        self,
        training_id: str,
        reward: float,
        episode_length: int,
        won: bool | None = None,
        total_episodes: int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Log the finished episode with the derived metrics; returns what was logged."""
        state = self._episodes.setdefault(training_id, _Episodes(deque(maxlen=self.window)))
        state.count += 1
        state.rewards.append(float(reward))
        state.best = float(reward) if state.best is None else max(state.best, float(reward))
        if won is not None:
            state.decided += 1
            state.wins += bool(won)
        metrics: dict[str, Any] = {
            "episode": state.count,
            "current_reward": float(reward),
            "average_reward": sum(state.rewards) / len(state.rewards),
            "best_reward": state.best,
            "episode_length": episode_length,
            "training_time_elapsed": time.monotonic() - state.started,
            **extra,
        }
        if state.decided:
            metrics["win_rate"] = 100.0 * state.wins / state.decided
        if total_episodes is not None:
            metrics["total_episodes"] = total_episodes
        await self.integration.update_training_metrics(training_id, **metrics)
        return metrics


class SpectatorManagerIntegration:
    """Training sessions with spectator rooms: a code to join by, optionally a password, a size limit."""

    def __init__(self, server: str | HasURL, spectator_manager: Any = None, *, api_key: str | None = None) -> None:
        """`api_key`: sent as a Bearer token (default: the TMS_API_KEY environment variable), as the SDK sends it."""
        self.url = server_url(server)
        self.spectator_manager = spectator_manager
        self.headers = auth_headers(api_key)

    async def create_integrated_session(
        self,
        training_session_id: str,
        model_generation: int | None = None,
        algorithm: str | None = None,
        total_episodes: int | None = None,
        max_spectators: int | None = None,
        password_protected: bool = False,
    ) -> dict[str, Any]:
        """Create the session with a room; returns session_id, room_code and room_password (None if open).
        `max_spectators` left out: the server's default (50, or its max_connections_per_session if lower);
        more than that limit is refused (HTTP 422)."""
        room: dict[str, Any] = {"password_protected": password_protected}
        if max_spectators is not None:
            room["max_spectators"] = max_spectators
        body = {
            "training_id": training_session_id,
            "model_generation": model_generation,
            "algorithm": algorithm,
            "total_episodes": total_episodes,
            "room": room,
        }
        try:
            async with httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=10.0) as http:
                body = {k: v for k, v in body.items() if v is not None}
                response = await http.post("/api/training/sessions", json=body)
        except httpx.HTTPError as exc:
            raise ServerUnavailableError(f"creating room {training_session_id!r}: {exc}") from exc
        raise_for_response(response, f"creating room {training_session_id!r}")
        created = response.json()
        room = {
            "session_id": created["session_id"],
            "room_code": created["room_code"],
            "room_password": created.get("room_password"),
            "max_spectators": created["max_spectators"],
        }
        notify = getattr(self.spectator_manager, "on_room_created", None)
        if callable(notify):
            result = notify(room)
            if asyncio.iscoroutine(result):
                await result
        return room
