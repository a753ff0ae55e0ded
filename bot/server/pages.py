"""The built-in spectator pages: plain HTML, CSS and JavaScript shipped in the package (no CDN, no build)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"

router = APIRouter(include_in_schema=False)


@router.get("/")
async def session_list() -> FileResponse:
    return FileResponse(STATIC / "index.html")


@router.get("/sessions/{key}")
async def watch_session(key: str) -> FileResponse:
    """`key` is a session id or a room code; the page asks for the password when the room has one."""
    return FileResponse(STATIC / "session.html")


@router.get("/compare")
async def compare() -> FileResponse:
    return FileResponse(STATIC / "compare.html")


def mount_pages(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
