"""`GET /metrics` in Prometheus' text format (prometheus-client), one registry per app.

Requests are counted and timed by route template (`/api/training/sessions/{session_id}/metrics`, never a
session id: the label set stays small) in a pure ASGI middleware; everything else is read from the
server's own state at scrape time, so the hot paths pay nothing for it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bot.server import gc_pauses

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "tms_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "tms_http_request_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "tms_commit_seconds", "Time of one group commit", buckets=LATENCY_BUCKETS, registry=self.registry
        )
        # Read from the database at each scrape (by the /metrics route): sessions and whether it answers.
        self.sessions = Gauge("tms_sessions", "Sessions stored", ["state"], registry=self.registry)
        self.database_up = Gauge("tms_database_up", "1 while the database answers", registry=self.registry)
        self.state: dict[str, Any] = {}  # the lifespan's state, once it has started
        self.registry.register(_StateCollector(self))


class _StateCollector:
    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        state = self.metrics.state
        if "service" not in state:
            return
        service, hub, limits, auth = state["service"], state["hub"], state["rate_limits"], state["auth"]
        stats = service.stats
        yield CounterMetricFamily("tms_points_ingested", "Points (messages) stored", value=stats.messages_in)
        yield CounterMetricFamily("tms_messages_fanned_out", "Frames sent to spectators", value=stats.messages_out)
        yield CounterMetricFamily(
            "tms_spectator_frames_dropped", "Frames dropped for slow spectators", value=hub.frames_dropped()
        )
        yield CounterMetricFamily("tms_rate_limit_hits", "Requests refused by a rate limit", value=limits.hits)
        yield CounterMetricFamily("tms_auth_failures", "Requests with missing or bad credentials", value=auth.failures)
        yield GaugeMetricFamily("tms_spectators", "Spectators connected to this instance", value=hub.total)
        yield GaugeMetricFamily(
            "tms_sessions_watched", "Sessions with a spectator on this instance", value=len(hub.counts())
        )
        yield GaugeMetricFamily(
            "tms_spectator_queue_depth_max", "Frames waiting for the most behind spectator", value=hub.deepest_queue()
        )
        yield GaugeMetricFamily(
            "tms_broker_up", "1 while live frames go through the broker", value=service.broker_problem() is None
        )
        yield GaugeMetricFamily("tms_uptime_seconds", "Seconds since start", value=time.time() - stats.started_at)
        if (collector := gc_pauses.running) is not None:  # `bot serve` (bot/server/gc_pauses.py)
            gc_stats = collector.stats
            yield CounterMetricFamily(
                "tms_gc_full_collections", "Full garbage collections", value=gc_stats.full_collections
            )
            yield GaugeMetricFamily(
                "tms_gc_last_full_seconds", "How long the last one held the process", value=gc_stats.last_full_seconds
            )
            yield GaugeMetricFamily(
                "tms_gc_frozen_objects",
                "Objects the last full collection kept, plus those frozen since (an upper bound)",
                value=gc_stats.frozen,
            )


class MetricsMiddleware:
    """Counts and times every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if scope["type"] != "http":
            return self.app(scope, receive, send)  # not awaited here: no frame of ours for a WebSocket's life
        return self._timed(scope, receive, send)

    async def _timed(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
