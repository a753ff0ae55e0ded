"""Training events over Socket.IO at `/socket.io`, for the original design's Python and JavaScript clients.

python-socketio, mounted as an ASGI app. A client gets `connection_established` when it connects and
joins the training events with `subscribe_training` (all jobs, or `{"job_id": ...}` for one); it then
receives `training_started`, `training_progress`, `training_completed`, `training_stopped` and
`training_error` with the payloads the job's session stores (bot/server/jobs.py). Events are queued and
emitted by one task, in order; the job supervisor never waits for a Socket.IO client.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Self

import socketio

from bot import __version__
from bot.server.auth import Authenticator, AuthError
from bot.server.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

ALL_JOBS = "training"
MAX_QUEUED = 10_000  # events waiting to be emitted; past this the oldest are dropped (clients read history)


def job_room(job_id: str) -> str:
    return f"training:{job_id}"


class SocketIOEvents:
    def __init__(self, cors_origins: list[str]) -> None:
        # Same origin only unless origins are configured (never a wildcard).
        self.server = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins=cors_origins or None)
        self.app = socketio.ASGIApp(self.server, socketio_path=None)  # mounted at /socket.io by the FastAPI app
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(MAX_QUEUED)
        self._task: asyncio.Task[None] | None = None
        self.authenticator: Authenticator | None = None  # set once the store is open (app.py)
        self.server.on("connect", self._connect)
        self.server.on("subscribe_training", self._subscribe)
        self.server.on("unsubscribe_training", self._unsubscribe)

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._emit_loop(), name="tms-socketio")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await cancel_and_wait([self._task])

    def publish(self, event: str, data: dict[str, Any]) -> None:
        """A job event, for the subscribers of all jobs and of that job; never waits."""
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait((event, data))

    async def _emit_loop(self) -> None:
        while True:
            event, data = await self._queue.get()
            try:
                await self.server.emit(event, data, to=[ALL_JOBS, job_room(data["job_id"])])
            except Exception:
                logger.exception("emitting %s over Socket.IO failed", event)

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        """With auth on, a client needs `read`: `auth={"token": ...}` (an API key or a JWT), or an
        Authorization header; refused otherwise, with the reason."""
        if self.authenticator is not None and self.authenticator.enabled:
            token = auth.get("token") if isinstance(auth, dict) else None
            authorization = f"Bearer {token}" if isinstance(token, str) else environ.get("HTTP_AUTHORIZATION")
            try:
                (await self.authenticator.principal(authorization)).require("read")
            except AuthError as exc:
                raise socketio.exceptions.ConnectionRefusedError(exc.reason) from None
        welcome = {"message": "Connected to the Training Metrics Server", "sid": sid, "server_version": __version__}
        await self.server.emit("connection_established", {**welcome, "timestamp": time.time()}, to=sid)

    async def _subscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        """Join all jobs' events, or one job's; the answer (a Socket.IO acknowledgement) says which."""
        job_id = data.get("job_id") if isinstance(data, dict) else None
        if job_id is not None and not isinstance(job_id, str):
            return {"status": "error", "message": "job_id must be a string"}
        await self.server.enter_room(sid, job_room(job_id) if job_id else ALL_JOBS)
        return {"status": "subscribed", "job_id": job_id}

    async def _unsubscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        job_id = data.get("job_id") if isinstance(data, dict) else None
        await self.server.leave_room(sid, job_room(job_id) if isinstance(job_id, str) else ALL_JOBS)
        return {"status": "unsubscribed", "job_id": job_id}
