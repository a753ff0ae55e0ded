"""The composition root: every part of a running server, built in order on one AsyncExitStack.

`open_parts` builds the store, broker, publisher, hub, ingest workers, credential watch, Socket.IO, jobs,
daemon and housekeeping, and registers how each is closed; the stack closes them in the reverse order, each
one even if another failed to close. Every long-lived loop of these parts runs under the app's Supervisor
(bot/server/supervisor.py). Handlers read the parts from the request's state (`request.state.hub`), which is
`ServerState.as_dict()`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, fields
from typing import Any

from bot.config import Settings
from bot.server.api.bodies import BodyBudget
from bot.server.api.rooms import VerifiedPasswords
from bot.server.broker import broker_from_url
from bot.server.edge.admission import ConnectRate
from bot.server.edge.auth import Authenticator
from bot.server.edge.metrics import ServerMetrics
from bot.server.edge.rate_limits import Counters, RateLimits, RoomPasswordGuard
from bot.server.ingest.batches import BatchReader, default_processes
from bot.server.live import ws
from bot.server.live.hub import Hub
from bot.server.live.publisher import Publisher
from bot.server.live.shared_reads import JoinReads
from bot.server.live.ws_access import CredentialWatch
from bot.server.services import TrainingService
from bot.server.supervisor import Supervisor
from bot.server.training.daemon import TrainingDaemon
from bot.server.training.daemon_redis import DaemonRedis
from bot.server.training.jobs import JobSupervisor
from bot.server.training.socketio_events import SocketIOEvents
from bot.store import Store
from bot.store.bounds import SessionBounds

logger = logging.getLogger("bot.server.app")


@dataclass(frozen=True)
class ServerState:
    settings: Settings
    supervisor: Supervisor
    service: TrainingService
    hub: Hub
    batches: BatchReader
    connect_rate: ConnectRate
    rate_limits: RateLimits
    body_budget: BodyBudget
    verified_passwords: VerifiedPasswords
    auth: Authenticator
    credential_watch: CredentialWatch
    metrics: ServerMetrics
    room_passwords: RoomPasswordGuard
    joins: JoinReads
    jobs: JobSupervisor
    daemon: TrainingDaemon

    def as_dict(self) -> dict[str, Any]:
        """The lifespan's state: what `request.state` holds."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def rate_limit_rules(settings: Settings) -> dict[str, str]:
    return {
        "ingest": settings.rate_limit_ingest,
        "ws_connect": settings.rate_limit_ws_connect,
        "ws_message": settings.rate_limit_ws_message,
        "room_password": settings.rate_limit_room_password,
    }


async def open_parts(
    stack: AsyncExitStack, settings: Settings, supervisor: Supervisor, socket_io: SocketIOEvents, metrics: ServerMetrics
) -> ServerState:
    store = Store(
        settings.database_url, sqlite_synchronous=settings.sqlite_synchronous, auto_migrate=settings.auto_migrate
    )
    await stack.enter_async_context(store)
    broker = broker_from_url(
        settings.redis_url,
        timeout=settings.broker_timeout,
        probe_interval=settings.broker_probe_interval,
        supervisor=supervisor,
    )
    await stack.enter_async_context(broker)
    publisher = await stack.enter_async_context(Publisher(broker, settings.broker_timeout, supervisor=supervisor))
    bounds = SessionBounds(settings.max_series_per_session, settings.max_graphs_per_session)
    service = TrainingService(store, broker, publisher, bounds)
    hub = Hub(
        broker,
        read_after=service.read_incarnation_after,
        last_seqs=service.last_seqs,
        max_per_session=settings.max_connections_per_session,
        max_total=settings.max_total_connections,
        slow_timeout=settings.slow_spectator_timeout,
        gap_wait=settings.gap_wait_seconds,
        pending_limit=settings.metrics_history_size,
        supervisor=supervisor,
    )
    processes = settings.ingest_processes
    batches = BatchReader(default_processes() if processes is None else processes, settings.max_batch_size)
    jobs = JobSupervisor(service, settings, supervisor)
    jobs.listeners.append(socket_io.publish)
    daemon_redis = None
    if settings.redis_url is not None:  # the daemon's live configuration and event streams (daemon_redis.py)
        daemon_redis = DaemonRedis(settings.redis_url, timeout=settings.broker_timeout)
        stack.push_async_callback(daemon_redis.aclose)
    daemon = TrainingDaemon(
        service,
        jobs,
        default_enabled=settings.training_daemon,
        redis=daemon_redis,
        supervisor=supervisor,
        tick=settings.training_daemon_tick,
    )
    counters = Counters(settings.redis_url)
    stack.push_async_callback(counters.aclose)
    rate_limits = RateLimits(
        settings.enable_rate_limiting, rate_limit_rules(settings), counters.storage, settings.broker_timeout
    )
    credential_watch = CredentialWatch(store, supervisor)
    authenticator = Authenticator(settings, store)
    socket_io.bind(authenticator, store, jobs.job)
    for part in (hub, batches, socket_io, credential_watch):
        await stack.enter_async_context(part)
    await jobs.recover()
    stack.push_async_callback(jobs.shutdown, settings.shutdown_timeout)
    housekeeping = [
        supervisor.spawn("cleanup", lambda: _cleanup_loop(service, settings)),
        supervisor.spawn("stale", lambda: _stale_loop(service, settings)),
    ]
    stack.push_async_callback(supervisor.stop, housekeeping)
    await daemon.start()
    stack.push_async_callback(daemon.stop, settings.shutdown_timeout)
    store.on_commit_timed = metrics.commit_seconds.observe
    return ServerState(
        settings=settings,
        supervisor=supervisor,
        service=service,
        hub=hub,
        batches=batches,
        connect_rate=ConnectRate(settings.ws_connect_rate),
        rate_limits=rate_limits,
        body_budget=BodyBudget(settings.max_body_bytes_in_flight),
        verified_passwords=VerifiedPasswords(),
        auth=authenticator,
        credential_watch=credential_watch,
        metrics=metrics,
        room_passwords=RoomPasswordGuard(counters.storage, settings.broker_timeout),
        joins=JoinReads(service, ws.SNAPSHOT_GRAPH_POINTS, ws.REPLAY_PAGE),
        jobs=jobs,
        daemon=daemon,
    )


async def _cleanup_loop(service: TrainingService, settings: Settings) -> None:
    """Retention: every cleanup interval, delete sessions that ended longer ago than the retention."""
    while True:
        await asyncio.sleep(settings.cleanup_interval_seconds)
        if settings.session_retention_seconds is None:
            continue
        deleted = await service.delete_ended_before(time.time() - settings.session_retention_seconds)
        if deleted:
            logger.info("retention: deleted %d ended sessions", deleted)


async def _stale_loop(service: TrainingService, settings: Settings) -> None:
    """Liveness: a killed engine never leaves its session `running` forever."""
    interval = min(5.0, settings.stale_timeout_seconds / 4)
    while True:
        await asyncio.sleep(interval)
        await service.mark_stale(settings.stale_timeout_seconds)
