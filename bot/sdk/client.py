"""MetricsClient and AsyncMetricsClient: push metrics from any training engine without slowing it down.

    client = MetricsClient("http://localhost:8000")
    with client.session(name="cartpole-dqn", algorithm="DQN", total_episodes=1000) as run:
        run.log_metrics(episode=e, current_reward=r, epsilon=eps, my_stat=x)

A log call validates cheaply and enqueues; a background thread delivers. Leaving the block marks the
session completed, or failed if an exception escaped, and delivers for at most `flush_timeout`; what is
not delivered by then is in the disk spool when the block ends. The interpreter's exit that follows keeps
to the same `flush_timeout`: the whole exit takes at most that. Nothing about the network ever raises
here.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sys
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from bot.schemas import SessionCreate, SessionUpdate

from .errors import InvalidValueError, SessionClosedError
from .fields import decision, graph_body, metrics_point, model_takes, point_time
from .sender import Sender
from .spool import Spool
from .system import DEFAULT_INTERVAL, SystemSampler

logger = logging.getLogger(__name__)

SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
STATUSES = ("created", "running", "paused", "completed", "failed", "stopped")
ENDED = ("completed", "failed", "stopped")


@dataclass(frozen=True)
class FlushResult:
    """What a flush did. True (as a bool) only when everything logged so far reached the server."""

    delivered: bool  # everything logged so far was acknowledged by the server
    pending: int  # points and records still in memory: the timeout ran out first
    spooled: int  # records for this server waiting in the disk spool (delivered once it is back)

    def __bool__(self) -> bool:
        return self.delivered


def auth_headers(api_key: str | None = None) -> dict[str, str]:
    """The Authorization header for `api_key`, else TMS_API_KEY, else none: every part of the SDK (the clients,
    the integration adapters, `bot sync`) finds its credential the same way."""
    api_key = api_key or os.environ.get("TMS_API_KEY")
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


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
            api_key: sent as a Bearer token when set (default: the TMS_API_KEY environment variable).
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
        self.url = url
        self.flush_timeout = flush_timeout
        self._http = httpx.Client(base_url=url, headers=auth_headers(api_key), timeout=timeout, transport=transport)
        self.spool = Spool(spool_dir)
        self._sender = Sender(
            self._http,
            self.spool,
            url,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_pending=max_pending,
            heartbeat_interval=heartbeat_interval,
            on_delivered=on_delivered,
        )
        self._closed = False
        # Exit never hangs and never loses data: at interpreter exit (finalize runs then too), deliver
        # until flush_timeout (or what is left of a run's exit just before) and spool the rest.
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
        tags: list[str] | None = None,
        system_metrics: bool | float = False,
    ) -> Run:
        """A run: a new session, or the existing `training_id` resumed (created if the server lacks it).
        `system_metrics`: sample this process's CPU, memory and threads (and GPU) into the run's `system/...`
        metrics, every 5 s (True) or every that many seconds (bot/sdk/system.py)."""
        self._sender.exit_deadline = None  # a new run: a close is no longer part of the last run's exit
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
                "tags": checked_tags(tags) if tags is not None else None,
            }.items()
            if v is not None
        }
        model_takes(SessionCreate, "session", {**spec, "training_id": session_id})  # refused now, not at the server
        interval = DEFAULT_INTERVAL if system_metrics is True else (float(system_metrics) or None)
        return Run(self, session_id, spec, interval)

    def flush(self, timeout: float | None = None) -> FlushResult:
        """Wait until everything logged so far is delivered, for at most `timeout` (default flush_timeout).

        Returns a FlushResult, true only when everything reached the server: records spilled to the disk
        spool (the server was away too long) are not delivered yet, and are counted in `spooled`.
        """
        done = self._sender.flush(self.flush_timeout if timeout is None else timeout)
        spooled = self.spool.pending(self.url)
        return FlushResult(done and spooled == 0, self._sender.pending(), spooled)

    def close(self) -> None:
        """Deliver for at most flush_timeout (right after a run's exit, within that exit's flush_timeout),
        spool what is left, release the connection."""
        if not self._closed:
            self._closed = True
            self._finalizer()

    @property
    def delivered(self) -> int:
        """Points (and status changes) the server has acknowledged."""
        return self._sender.delivered

    @property
    def rejected(self) -> int:
        """Batches the server refused (logged, and kept in the spool's dead letters); never retried."""
        return self._sender.rejected

    @property
    def last_rejection(self) -> str | None:
        """The server's reason for the latest refused batch."""
        return self._sender.last_rejection

    @property
    def credential_refused(self) -> str | None:
        """Why the server refuses this client's credential (401 or 403), while it does. That is no refusal of
        the data: the batches are kept, retried with back-off and spooled at exit, for a good key to deliver."""
        return self._sender.credential_refused

    def _settle(self) -> None:
        """A run's exit: deliver for at most flush_timeout; what is left is in the spool on return."""
        self._sender.settle(time.monotonic() + self.flush_timeout)

    def _put(self, op: tuple[Any, ...]) -> None:
        if self._closed:
            raise SessionClosedError("this MetricsClient is closed")
        self._sender.put(op)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _close_at_exit(sender: Sender, http: httpx.Client, flush_timeout: float) -> None:
    """Everything within flush_timeout: deliver what can be, spool the rest (the sender does), close."""
    spooled = sender.close(flush_timeout)
    if not sender.running:  # else it may be inside a request still: the connection goes with the process
        http.close()
    if spooled:
        logger.warning(
            "metrics: %d batch(es) for %s wait in %s; `bot sync` (or the next run) uploads them",
            spooled,
            sender.url,
            sender.spool.path,
        )


TAG = re.compile(r"^[A-Za-z0-9_.:/+@# -]{1,64}$")  # schemas.Tag


def checked_tags(tags: list[str]) -> list[str]:
    """The tags as the server takes them, or InvalidValueError in the caller."""
    tags = list(tags)
    bad = [tag for tag in tags if not isinstance(tag, str) or not TAG.match(tag)]
    if bad or len(tags) > 20:
        raise InvalidValueError(f"tags: at most 20 of 1-64 letters, digits, _.:/+@#- and spaces, got {bad or tags}")
    return tags


def _new_id(name: str | None) -> str:
    base = re.sub(r"[^A-Za-z0-9_.:-]+", "-", name or "run").strip("-")[:100] or "run"
    return f"{base}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


class Run:
    """One training session as the engine sees it. Use it as a context manager."""

    def __init__(
        self, client: MetricsClient, session_id: str, spec: dict[str, Any], system_interval: float | None = None
    ) -> None:
        self.client = client
        self.session_id = session_id
        self._names: set[str] = set()
        self._graph_headers: set[tuple[Any, ...]] = set()
        self._ended = False
        self._status: str | None = None  # the last status set: the exit does not say it again
        self._last_point: dict[str, Any] = {}  # where the run is (step, episode): system samples are put there
        self._metadata: dict[str, Any] = dict(spec.get("metadata") or {})
        client._put(("create", session_id, spec))
        self._enqueue = client._sender.put  # the hot path skips the layers in between
        self.url = f"{client.url.rstrip('/')}/sessions/{session_id}"
        _say(f"metrics: watch {session_id!r} live at {self.url}")
        self._sampler = SystemSampler(self._log_system, system_interval) if system_interval else None
        if self._sampler is not None:
            self._sampler.start()

    def log_metrics(self, **fields: Any) -> None:
        """Any TrainingMetricsData field by name; other names are custom scalars (floats). `step` is the
        engine's own step (as wandb.log's): the page's x axis, so runs line up by it."""
        point = metrics_point(fields, self._names)
        if "timestamp" not in point:
            point["timestamp"] = time.time()
        if self._ended or self.client._closed:
            raise SessionClosedError(f"run {self.session_id!r} has ended")
        self._last_point = point
        self._enqueue(("data", self.session_id, "training_metrics", point))

    def _log_system(self, figures: dict[str, float]) -> None:
        """A system sample (SystemSampler's thread), at the step and episode the run last logged."""
        point: dict[str, Any] = {"timestamp": time.time(), "custom": figures}
        for key in ("step", "episode"):
            if self._last_point.get(key) is not None:
                point[key] = self._last_point[key]
        if not (self._ended or self.client._closed):
            self._enqueue(("data", self.session_id, "training_metrics", point))

    def log_decision(
        self,
        *,
        action_probabilities: Any = None,
        q_values: Any = None,
        state_values: Any = None,
        selected_action: Any = None,
        confidence_score: Any = None,
        episode: int | None = None,
        step: int | None = None,
        timestamp: float | None = None,
    ) -> None:
        """One decision of the bot. Probabilities and values may be a dict by action, a list, a numpy array or
        a torch tensor (a sequence is indexed by action: "0", "1", ...); a misspelt keyword is a TypeError."""
        fields = decision(
            action_probabilities=action_probabilities,
            q_values=q_values,
            state_values=state_values,
            selected_action=selected_action,
            confidence_score=confidence_score,
            episode=episode,
            step=step,
            timestamp=time.time() if timestamp is None else point_time(timestamp),
        )
        self._put("bot_decision", fields)

    def log_graph(
        self,
        graph_id: str,
        *,
        title: str | None = None,
        y_label: str | None = None,
        max_points: int = 1000,
        step: int | None = None,
        episode: int | None = None,
        **values: Any,
    ) -> None:
        """One point per named series of a performance graph: log_graph("reward", current_reward=r). `step`
        and `episode` place it on the page's x axis with the metrics (else it takes theirs at its time)."""
        header = (graph_id, title, y_label, max_points)
        body = graph_body(header, step, episode, values, self._names, self._graph_headers)
        self._put("graph_update", body)

    def set_status(self, status: str, message: str | None = None) -> None:
        if status not in STATUSES:
            raise InvalidValueError(f"status {status!r}: expected one of {', '.join(STATUSES)}")
        update = {"status": status, **({"message": message} if message else {})}
        model_takes(SessionUpdate, "set_status", update)
        self.client._put(("status", self.session_id, update))
        self._status = status

    def update_metadata(self, values: dict[str, Any]) -> None:
        """Add to the run's metadata (its configuration, as W&B's `config.update`): merged with what this Run was
        created with and earlier updates, then sent whole (the server replaces the session's metadata)."""
        metadata = {**self._metadata, **values}
        model_takes(SessionUpdate, "update_metadata", {"metadata": metadata})
        self._metadata = metadata
        self.client._put(("status", self.session_id, {"metadata": metadata}))

    def set_tags(self, tags: list[str]) -> None:
        """Replace the run's tags (as W&B's `run.tags = ...`): labels the list filters and groups by."""
        self.client._put(("status", self.session_id, {"tags": checked_tags(tags)}))

    def flush(self, timeout: float | None = None) -> FlushResult:
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
        if self._sampler is not None:
            self._sampler.stop()
        if exc_type is None:
            status, message = "completed", None
        elif issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
            status, message = "stopped", exc_type.__name__
        else:
            status, message = "failed", f"{exc_type.__name__}: {exc}"[:1000]
        if self._status not in ENDED:  # the engine may have said how the run ended, with its own message
            self.set_status(status, message)
        self._ended = True
        self.client._settle()


def _say(line: str) -> None:
    """A line for the user: logged at INFO, and on stderr too when nothing is set up to show logs."""
    logger.info(line)
    if not logging.getLogger().hasHandlers():
        print(line, file=sys.stderr)


class AsyncMetricsClient:
    """The same API for asyncio engines: log calls are plain (they never block); flushing is awaited."""

    def __init__(self, url: str = "http://localhost:8000", api_key: str | None = None, **options: Any) -> None:
        self._client = MetricsClient(url, api_key, **options)

    def session(self, name: str | None = None, **spec: Any) -> AsyncRun:
        return AsyncRun(self._client.session(name, **spec))

    async def flush(self, timeout: float | None = None) -> FlushResult:
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

    async def flush(self, timeout: float | None = None) -> FlushResult:
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
