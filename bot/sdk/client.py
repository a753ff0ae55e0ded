"""MetricsClient and AsyncMetricsClient: push metrics from any training engine without slowing it down.

    client = MetricsClient("http://localhost:8000")
    with client.session(name="cartpole-dqn", algorithm="DQN", total_episodes=1000) as run:
        run.log_metrics(episode=e, current_reward=r, epsilon=eps, my_stat=x)

A log call validates cheaply and enqueues; a background thread delivers. Leaving the block flushes
(at most `flush_timeout`), then marks the session completed, or failed if an exception escaped.
Nothing about the network ever raises here: undelivered points go to the disk spool.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from .errors import InvalidValueError, SessionClosedError
from .fields import metric_name, metrics_point, number
from .sender import Sender
from .spool import Spool

logger = logging.getLogger(__name__)

SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
STATUSES = ("created", "running", "paused", "completed", "failed", "stopped")


class MetricsClient:
    """One connection to one server, shared by any number of runs (sessions)."""

    def __init__(
        self,
        url: str = "http://localhost:8000",
        api_key: str | None = None,
        *,
        flush_timeout: float = 5.0,
        batch_size: int = 1000,
        flush_interval: float = 0.2,
        max_pending: int = 100_000,
        spool_dir: str | Path | None = None,
        timeout: float = 5.0,
        heartbeat_interval: float = 10.0,
        on_delivered: Callable[[dict[str, Any], Any], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """
        Args:
            url: the server's base URL.
            api_key: sent as a Bearer token when set.
            flush_timeout: the longest leaving a run or closing the client waits for delivery.
            batch_size: points per request at most.
            flush_interval: how often the background sender wakes up to send what was logged.
            max_pending: points kept in memory while the server is away; more go to the disk spool.
            spool_dir: where undelivered batches are kept (default TMS_SPOOL_DIR or ~/.cache/...).
            timeout: seconds per HTTP request.
            heartbeat_interval: how often an open run tells the server the engine is alive.
            on_delivered: called on the sender thread with each record the server acknowledged and its
                answer (for data: `first_seq`, `last_seq`, `duplicate`); for audits and tests.
            transport: an httpx transport, for tests or custom networking.
        """
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url
        self.flush_timeout = flush_timeout
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout, transport=transport)
        self.spool = Spool(spool_dir)
        self._sender = Sender(
            self._http,
            self.spool,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_pending=max_pending,
            heartbeat_interval=heartbeat_interval,
            on_delivered=on_delivered,
        )
        self._closed = False
        # Exit never hangs and never loses data: at interpreter exit (finalize runs then too), flush
        # for at most flush_timeout and spool the rest.
        self._finalizer = weakref.finalize(self, _close_at_exit, self._sender, self._http, flush_timeout)

    def session(
        self,
        name: str | None = None,
        *,
        training_id: str | None = None,
        algorithm: str | None = None,
        model_generation: int | None = None,
        total_episodes: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Run:
        """A run: a new session, or the existing `training_id` resumed (created if the server lacks it)."""
        session_id = training_id or _new_id(name)
        if not SESSION_ID.match(session_id):
            raise InvalidValueError(f"training_id {session_id!r}: use letters, digits and _ . : - (at most 128)")
        spec = {
            k: v
            for k, v in {
                "name": name,
                "algorithm": algorithm,
                "model_generation": model_generation,
                "total_episodes": total_episodes,
                "metadata": metadata,
            }.items()
            if v is not None
        }
        return Run(self, session_id, spec)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything logged is delivered; False if `timeout` (default flush_timeout) ran out."""
        return self._sender.flush(self.flush_timeout if timeout is None else timeout)

    def close(self) -> None:
        """Flush for at most flush_timeout, spool what is left, release the connection."""
        if not self._closed:
            self._closed = True
            self._finalizer()

    @property
    def delivered(self) -> int:
        """Points (and status changes) the server has acknowledged."""
        return self._sender.delivered

    def _put(self, op: tuple[Any, ...]) -> None:
        if self._closed:
            raise SessionClosedError("this MetricsClient is closed")
        self._sender.put(op)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _close_at_exit(sender: Sender, http: httpx.Client, flush_timeout: float) -> None:
    delivered = sender.flush(flush_timeout)
    spooled = sender.close(timeout=1.0)
    http.close()
    if not delivered or spooled:
        logger.warning(
            "metrics: %d batch(es) not delivered were kept in %s; `bot sync` uploads them",
            spooled,
            sender.spool.directory,
        )


def _new_id(name: str | None) -> str:
    base = re.sub(r"[^A-Za-z0-9_.:-]+", "-", name or "run").strip("-")[:100] or "run"
    return f"{base}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


class Run:
    """One training session as the engine sees it. Use it as a context manager."""

    def __init__(self, client: MetricsClient, session_id: str, spec: dict[str, Any]) -> None:
        self.client = client
        self.session_id = session_id
        self._names: set[str] = set()
        self._ended = False
        client._put(("create", session_id, spec))
        self._enqueue = client._sender.put  # the hot path skips the layers in between

    def log_metrics(self, **fields: Any) -> None:
        """Any TrainingMetricsData field by name; other names are custom scalars (floats)."""
        point = metrics_point(fields, self._names)
        if "timestamp" not in point:
            point["timestamp"] = time.time()
        if self._ended or self.client._closed:
            raise SessionClosedError(f"run {self.session_id!r} has ended")
        self._enqueue(("data", self.session_id, "training_metrics", point))

    def log_decision(self, **fields: Any) -> None:
        """action_probabilities, q_values, state_values, selected_action, confidence_score, episode, step."""
        probabilities = fields.get("action_probabilities")
        if probabilities is not None:
            probabilities = {
                str(k): number(f"action_probabilities.{k}", v, float, 0.0, 1.0) for k, v in dict(probabilities).items()
            }
            total = sum(probabilities.values())
            if abs(total - 1.0) > 1e-3:
                raise InvalidValueError(f"action_probabilities must sum to 1 (within 1e-3), got {total:.6g}")
            fields["action_probabilities"] = probabilities
        if fields.get("q_values") is not None:
            fields["q_values"] = [number("q_values", v) for v in _as_list(fields["q_values"])]
        if fields.get("confidence_score") is not None:
            fields["confidence_score"] = number("confidence_score", fields["confidence_score"], float, 0.0, 1.0)
        if hasattr(fields.get("selected_action"), "item"):
            fields["selected_action"] = fields["selected_action"].item()
        fields.setdefault("timestamp", time.time())
        self._put("bot_decision", fields)

    def log_graph(
        self,
        graph_id: str,
        *,
        title: str | None = None,
        y_label: str | None = None,
        max_points: int = 1000,
        **values: Any,
    ) -> None:
        """One point per named series of a performance graph: log_graph("reward", current_reward=r)."""
        now = time.time()
        points = {}
        for name, value in values.items():
            metric_name(name, self._names)
            points[name] = [{"timestamp": now, "value": number(name, value)}]
        body: dict[str, Any] = {"graph_id": graph_id, "data_points": points, "max_points": max_points}
        if title is not None:
            body["title"] = title
        if y_label is not None:
            body["y_label"] = y_label
        self._put("graph_update", body)

    def set_status(self, status: str, message: str | None = None) -> None:
        if status not in STATUSES:
            raise InvalidValueError(f"status {status!r}: expected one of {', '.join(STATUSES)}")
        update = {"status": status, **({"message": message} if message else {})}
        self.client._put(("status", self.session_id, update))

    def flush(self, timeout: float | None = None) -> bool:
        return self.client.flush(timeout)

    def _put(self, message_type: str, item: dict[str, Any]) -> None:
        if self._ended:
            raise SessionClosedError(f"run {self.session_id!r} has ended")
        self.client._put(("data", self.session_id, message_type, item))

    def __enter__(self) -> Self:
        self.set_status("running")
        self.client._sender.open_runs.add(self.session_id)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.client._sender.open_runs.discard(self.session_id)
        failed = exc_type is not None and not issubclass(exc_type, (KeyboardInterrupt, SystemExit))
        if exc_type is None:
            self.set_status("completed")
        elif failed:
            self.set_status("failed", f"{exc_type.__name__}: {exc}"[:1000])
        else:
            self.set_status("stopped", exc_type.__name__)
        self._ended = True
        self.client.flush()


def _as_list(values: Any) -> list[Any]:
    if hasattr(values, "tolist"):
        values = values.tolist()
    return list(values)


class AsyncMetricsClient:
    """The same API for asyncio engines: log calls are plain (they never block); flushing is awaited."""

    def __init__(self, url: str = "http://localhost:8000", api_key: str | None = None, **options: Any) -> None:
        self._client = MetricsClient(url, api_key, **options)

    def session(self, name: str | None = None, **spec: Any) -> AsyncRun:
        return AsyncRun(self._client.session(name, **spec))

    async def flush(self, timeout: float | None = None) -> bool:
        import asyncio

        return await asyncio.to_thread(self._client.flush, timeout)

    async def aclose(self) -> None:
        import asyncio

        await asyncio.to_thread(self._client.close)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class AsyncRun:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.session_id = run.session_id
        self.log_metrics = run.log_metrics
        self.log_decision = run.log_decision
        self.log_graph = run.log_graph
        self.set_status = run.set_status

    async def flush(self, timeout: float | None = None) -> bool:
        import asyncio

        return await asyncio.to_thread(self.run.flush, timeout)

    async def __aenter__(self) -> Self:
        self.run.__enter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        import asyncio

        await asyncio.to_thread(self.run.__exit__, exc_type, exc, tb)
