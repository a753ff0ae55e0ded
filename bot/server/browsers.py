"""What a web page on another site could make a visitor's browser do to this server, refused.

- A cross-site form can POST `text/plain` without a CORS preflight; the server read any body as JSON, so a
  page could push data or create sessions. JSON endpoints now refuse a declared content type that is not
  JSON (415). A request with no Content-Type at all comes from no form and is taken as JSON.
- CORS does not cover the WebSocket handshake: any page could open `/ws/...`. A handshake whose `Origin`
  is neither this server itself nor one of the allowed origins (`cors_origins`) is refused (403). One
  without `Origin` comes from no browser and is let through.
- DNS rebinding points a name the attacker owns at 127.0.0.1, and the page is then same-origin with the
  server. The Host header is checked against the allowed hosts (Starlette's TrustedHostMiddleware, set up
  in app.py); loopback names are allowed by default.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import orjson
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
WILDCARD_BINDS = ("0.0.0.0", "::", "")


def allowed_hosts(configured: list[str], bind_host: str) -> list[str]:
    """The Host names to answer: loopback always, with the configured ones ("*" for any), else with the bound
    address. Loopback names cannot be a DNS-rebinding page's (its Host is the attacker's name), and a health
    check on the machine itself (the Dockerfile's, on 127.0.0.1) must be answered whatever is configured."""
    if configured:
        return [*configured, *(host for host in LOOPBACK_HOSTS if host not in configured)]
    return [*LOOPBACK_HOSTS, *([] if bind_host in WILDCARD_BINDS or bind_host in LOOPBACK_HOSTS else [bind_host])]


def is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class BrowserGuard:
    """Pure ASGI (no per-request objects beyond a header scan): it sits in front of every ingest request."""

    def __init__(self, app: ASGIApp, allowed_origins: list[str]) -> None:
        self.app = app
        self.allowed_origins = {origin.rstrip("/").lower() for origin in allowed_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in BODY_METHODS and scope["path"].startswith("/api/"):
            content_type = Headers(scope=scope).get("content-type")
            if content_type is not None and not is_json(content_type):
                return await _refuse_http(send, 415, f"Content-Type {content_type[:80]!r}: send application/json")
        elif scope["type"] == "websocket":
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            if origin is not None and not self._origin_allowed(origin, headers.get("host", "")):
                await send({"type": "websocket.close", "code": 1008, "reason": "origin not allowed"})
                return
        await self.app(scope, receive, send)

    def _origin_allowed(self, origin: str, host: str) -> bool:
        origin = origin.rstrip("/").lower()
        if "*" in self.allowed_origins or origin in self.allowed_origins:
            return True
        return urlsplit(origin).netloc == host.lower()  # the server's own page


async def _refuse_http(send: Send, status: int, detail: str) -> None:
    body = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
