"""The REST API: one router per resource."""

from __future__ import annotations

from fastapi import APIRouter

from bot.server.api import export, health, history, ingest, sessions, training

router = APIRouter()
for module in (sessions, ingest, history, export, health, training):
    router.include_router(module.router)
router.include_router(training.summary_router)  # the original design's path of the training summary
