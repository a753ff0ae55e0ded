"""A request cut short by the server's shutdown gets a JSON 503, not uvicorn's plain-text 500.

Past its share of TMS_SHUTDOWN_TIMEOUT, uvicorn cancels the requests still in flight (an upload that trickles,
a slow read). The app then sees CancelledError, which no exception handler takes (it is no Exception):
uvicorn logged a long traceback as an error and answered "Internal Server Error" in plain text. A request whose
answer has not begun is answered 503 with Retry-After (another instance, or this one restarted, may take it),
and logged in one line.
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

# In the message uvicorn cancels a request with (uvicorn.Server.shutdown): only that cancel is answered here.
SHUTDOWN_CANCEL = "timeout graceful shutdown exceeded"
RETRY_AFTER = 1


class ShutdownAnswer:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError as exc:
            if started or not any(SHUTDOWN_CANCEL in str(arg) for arg in exc.args):
                raise
            logger.info("%s %s was cut short by the shutdown: answered 503", scope["method"], scope["path"])
            body = orjson.dumps({"detail": "the server is shutting down; send the request again", "retry_after": 1})
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(RETRY_AFTER).encode()),
                (b"connection", b"close"),
            ]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
