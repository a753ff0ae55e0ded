"""Every REST router in one, for the app; a module of its own so that importing one of the API's modules
(an ingest worker imports bodies.py) does not import them all."""

from __future__ import annotations

from fastapi import APIRouter

from bot.server.api import export, health, history, ingest, sessions, training

router = APIRouter()
for module in (sessions, ingest, history, export, health, training):
    router.include_router(module.router)
router.include_router(training.summary_router)  # the original design's path of the training summary
