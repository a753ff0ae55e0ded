"""Pushes from training engines: metrics, bot decisions, graph updates. 2xx only after commit."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel

from bot.schemas import BotDecisionData, PerformanceGraphData, TrainingMetricsData
from bot.server.api.access import Writer
from bot.server.api.bodies import body_schema, errors, read_body
from bot.server.api.deps import BatchesDep, ServiceDep
from bot.server.edge.auth import Principal
from bot.server.edge.rate_limits import RateLimits, client_key
from bot.server.ingest.batches import INLINE_BYTES

router = APIRouter(
    prefix="/api/training/sessions/{session_id}",
    tags=["ingest"],
    responses=errors(401, 403, 404, 409, 413, 422, 429, 503),
    dependencies=[Writer],
)

# The router's Writer check, as a parameter: FastAPI runs it once per request and hands over what it verified.
WriterPrincipal = Annotated[Principal, Writer]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description="a batch sent again with the same key is applied once; both answers name the same seq range",
    ),
]


async def _ingest(
    message_type: str,
    session_id: str,
    request: Request,
    service: ServiceDep,
    batches: BatchesDep,
    key: str | None,
    principal: Principal,
) -> dict[str, Any]:
    """`principal`: the credential the router's Writer check verified (ANYONE with auth off): the rate limit's
    client, never the raw Authorization header."""
    if key is not None and len(request.headers.getlist("idempotency-key")) > 1:  # which one names this batch?
        error = {"type": "value_error", "loc": ("header", "Idempotency-Key"), "msg": "send one key, not several"}
        raise RequestValidationError([{**error, "input": request.headers.getlist("idempotency-key")}])
    limits: RateLimits = request.state.rate_limits
    await limits.enforce("ingest", client_key(principal, request.client.host if request.client else None))
    raw = await read_body(request)
    batch = await batches.read(message_type, raw)
    body_hash = await _digest(raw) if key is not None else ""
    result = await service.ingest(session_id, batch, key, body_hash)
    return {
        "session_id": result.session_id,
        "first_seq": result.first_seq,
        "last_seq": result.last_seq,
        "count": result.count,
        "duplicate": result.duplicate,
    }


async def _digest(raw: bytes) -> str:
    """The body's hash, for its idempotency key; a big body's on a thread (hashlib releases the GIL),
    as hashing 32 MB would hold the event loop for tens of milliseconds."""
    if len(raw) <= INLINE_BYTES:
        return hashlib.blake2b(raw, digest_size=16).hexdigest()
    return await asyncio.to_thread(lambda: hashlib.blake2b(raw, digest_size=16).hexdigest())


def _doc(model: type[BaseModel]) -> dict[str, Any]:
    return body_schema(model, many=True)


@router.post("/metrics", openapi_extra=_doc(TrainingMetricsData))
async def post_metrics(
    session_id: str,
    request: Request,
    service: ServiceDep,
    batches: BatchesDep,
    principal: WriterPrincipal,
    key: IdempotencyKey = None,
) -> dict[str, Any]:
    """One TrainingMetricsData or a list (all-or-nothing)."""
    return await _ingest("training_metrics", session_id, request, service, batches, key, principal)


@router.post("/bot_decision", openapi_extra=_doc(BotDecisionData))
async def post_bot_decision(
    session_id: str,
    request: Request,
    service: ServiceDep,
    batches: BatchesDep,
    principal: WriterPrincipal,
    key: IdempotencyKey = None,
) -> dict[str, Any]:
    """One BotDecisionData or a list (all-or-nothing)."""
    return await _ingest("bot_decision", session_id, request, service, batches, key, principal)


@router.post("/graph_update", openapi_extra=_doc(PerformanceGraphData))
async def post_graph_update(
    session_id: str,
    request: Request,
    service: ServiceDep,
    batches: BatchesDep,
    principal: WriterPrincipal,
    key: IdempotencyKey = None,
) -> dict[str, Any]:
    """One PerformanceGraphData or a list; the server keeps the newest max_points per series."""
    return await _ingest("graph_update", session_id, request, service, batches, key, principal)
