"""Liveness (/health), a summary of what the server is doing (/status), and the same for Prometheus (/metrics)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot import __version__
from bot.server.api.access import Admin, Reader
from bot.server.api.bodies import errors
from bot.server.api.deps import HubDep, ServiceDep
from bot.server.edge.auth import Principal
from bot.server.edge.metrics import ServerMetrics
from bot.server.supervisor import Supervisor
from bot.store.queries import ping, session_counts

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(request: Request, service: ServiceDep) -> JSONResponse:
    """200 when the database answers: `ok`, or `degraded` while live frames cannot go through the broker
    (the reason in `broker`; spectators then get them from the store, a second or so late) or while a
    background loop that failed waits to be restarted (`loops`: its name and error); 503 when the database
    does not answer."""
    broker = service.broker_problem() or "ok"
    supervisor: Supervisor = request.state.supervisor
    loops = supervisor.failing()
    try:
        await service.store.read(ping)
    except Exception as exc:
        body = {"status": "unavailable", "database": f"error: {exc}", "broker": broker, "loops": loops}
        return JSONResponse(body, status_code=503)
    degraded = broker != "ok" or bool(loops)
    return JSONResponse(
        {"status": "degraded" if degraded else "ok", "database": "ok", "broker": broker, "loops": loops}
    )


@router.get("/status", responses=errors(401, 403))
async def status(service: ServiceDep, hub: HubDep, principal: Principal = Reader) -> dict[str, Any]:
    """What the server is doing. Figures that name no session are the server's; `spectators.per_session`
    names sessions, so it lists only those this credential may see (a session-limited one: its own), and never
    a password-protected room (whose audience, as its details, is for those with its password)."""
    total, active = await service.store.read(session_counts)
    stats = service.stats
    per_session = hub.counts()
    if principal.session_id is not None:
        per_session = {k: n for k, n in per_session.items() if k == principal.session_id}
    protected = await service.protected_rooms(list(per_session))
    per_session = {k: n for k, n in per_session.items() if k not in protected}
    return {
        "version": __version__,
        "uptime_seconds": round(time.time() - stats.started_at, 3),
        "sessions": {"total": total, "active": active},
        "spectators": {"total": hub.total, "per_session": per_session, "deepest_queue": hub.deepest_queue()},
        "messages_in": stats.messages_in,
        "messages_out": stats.messages_out,
        "messages_out_fast_path": stats.direct_out,
        "store_commits": service.store.commits,
        # Broker messages not published (Redis slow or away): their frames reached spectators from the store.
        "broker": {
            "name": service.broker.name,
            "problem": service.broker_problem(),
            "messages_given_up": service.publisher.given_up,
        },
    }


@router.get("/metrics", response_class=Response, dependencies=[Admin], responses=errors(401, 403))
async def metrics(request: Request, service: ServiceDep) -> Response:
    """Prometheus text format: requests by route, ingest, fan-out, drops, spectators, commits, health."""
    collected: ServerMetrics = request.state.metrics
    try:
        total, active = await service.store.read(session_counts)
    except Exception:
        collected.database_up.set(0)
    else:
        collected.database_up.set(1)
        collected.sessions.labels("all").set(total)
        collected.sessions.labels("active").set(active)
    return Response(generate_latest(collected.registry), media_type=CONTENT_TYPE_LATEST)
