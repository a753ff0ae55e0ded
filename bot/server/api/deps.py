"""Request-scoped access to what the lifespan built (no module-level state).

Async on purpose: FastAPI runs a plain `def` dependency on a worker thread, a hop per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from bot.server.ingest.batches import BatchReader
from bot.server.live.hub import Hub
from bot.server.services import TrainingService


async def _service(request: Request) -> TrainingService:
    service: TrainingService = request.state.service
    return service


async def _hub(request: Request) -> Hub:
    hub: Hub = request.state.hub
    return hub


async def _batches(request: Request) -> BatchReader:
    batches: BatchReader = request.state.batches
    return batches


ServiceDep = Annotated[TrainingService, Depends(_service)]
HubDep = Annotated[Hub, Depends(_hub)]
BatchesDep = Annotated[BatchReader, Depends(_batches)]
