"""How many history pages and exports one client may be receiving at once (`max_downloads_per_client`).

A history page of 100,000 messages holds about 30 MB while it is sent, an export page about 8 MB. The send
deadline (http_guard.py) frees a download nobody reads, but only after `http_send_timeout`, and a client that
takes one byte now and then is never cut: without a count, the only bound on how many one client holds was
`max_connections` (about 20,000 here, 0.6 TB of pages). Past the limit a new one is refused with 429 before
the database is read; the slot comes back when the answer has been sent, or its connection has gone.

A client is its address (`FORWARDED_ALLOW_IPS` names the proxies whose X-Forwarded-For gives it), counted on
this instance. Pure ASGI, in front of the routes: a streamed answer is still being sent after the route has
returned, and only the layer around the whole exchange sees its end.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

DOWNLOADS = ("history", "export")  # the last segment of /api/training/sessions/{session_id}/...
SESSIONS_PREFIX = "/api/training/sessions/"
RETRY_AFTER = 1


def is_download(method: str, path: str) -> bool:
    if method not in ("GET", "HEAD") or not path.startswith(SESSIONS_PREFIX):
        return False
    parts = path[len(SESSIONS_PREFIX) :].split("/")
    return len(parts) == 2 and parts[1] in DOWNLOADS


class DownloadSlots:
    """Downloads in flight per client: `take(who)` is False at the limit (0: no limit)."""

    def __init__(self, per_client: int) -> None:
        self.per_client = per_client
        self.in_flight: dict[str, int] = {}  # only clients with one in flight: the map cannot grow past them

    def take(self, who: str) -> bool:
        held = self.in_flight.get(who, 0)
        if self.per_client and held >= self.per_client:
            return False
        self.in_flight[who] = held + 1
        return True

    def give_back(self, who: str) -> None:
        held = self.in_flight.pop(who) - 1
        if held:
            self.in_flight[who] = held


class DownloadLimit:
    def __init__(self, app: ASGIApp, per_client: int) -> None:
        self.app = app
        self.slots = DownloadSlots(per_client)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.slots.per_client or not is_download(scope["method"], scope["path"]):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        who = client[0] if client else "unknown"
        if not self.slots.take(who):
            await _refuse(send, self.slots.per_client)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.give_back(who)


async def _refuse(send: Send, limit: int) -> None:
    detail = (
        f"this client is already receiving {limit} history pages or exports (max_downloads_per_client); "
        "retry when one is done"
    )
    body = orjson.dumps({"detail": detail, "limit": limit, "retry_after": RETRY_AFTER})
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(RETRY_AFTER).encode()),
    ]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})
