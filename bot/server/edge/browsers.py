"""What a web page on another site could make a visitor's browser do to this server, refused; and bodies in
a content coding, which no route can read.

- A page on any site can send a POST without a CORS preflight: a form (`text/plain`, urlencoded,
  multipart), `fetch(..., {mode: "no-cors"})` or `navigator.sendBeacon()`, and the last two can send a body
  with no Content-Type at all (an untyped Blob). The server reads bodies as JSON, so such a page could create
  sessions, push metrics and start training jobs on a server with auth off (the default). A request that
  changes state (POST, PUT, PATCH, DELETE) and carries a body (Content-Length above 0, or chunked) is
  refused with 415 unless it declares a JSON content type, which no page can send to another site without
  a preflight; a declared non-JSON type is refused even with no body. A request with no body at all
  (`curl -X POST .../api/training/stop`) is taken: a page can send one, but it carries nothing.
- A state-changing request, and a WebSocket handshake (which CORS does not cover either), whose `Origin` is
  neither this server itself nor one of the allowed origins (`cors_origins`) is refused (403) before it
  reaches a route: browsers send `Origin` on every cross-site POST (`null` from a sandboxed or file page).
  One without `Origin` comes from no browser and is let through.
- A state-changing request whose body declares a content coding (`Content-Encoding` other than `identity`)
  is refused with 415 before its body is read, whoever sends it: bodies are read as they come, so a gzip
  body was a confusing 422 and a plain one labelled gzip was stored, hiding a client or a proxy that
  compresses on the way (review 1, finding 13). Not a browser's attack, but the same gate for bodies.
- DNS rebinding points a name the attacker owns at 127.0.0.1, and the page is then same-origin with the
  server. The Host header is checked against the allowed hosts (Starlette's TrustedHostMiddleware, set up
  in app.py); loopback names are allowed by default.

Socket.IO (`/socket.io/`) frames its long-polling bodies as text/plain and checks origins itself (the same
cors_origins, bot/server/training/socketio_events.py); only the Origin rule applies to it here.
"""

from __future__ import annotations

from collections.abc import Awaitable
from urllib.parse import urlsplit

import orjson
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
OWN_FRAMING_PREFIX = "/socket.io/"  # Engine.IO's polling bodies are text/plain by its protocol
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

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The checks need no await: what to await is returned, so no frame of this layer stays on a WebSocket's
        stack for its whole life."""
        if scope["type"] == "http" and scope["method"] in STATE_CHANGING_METHODS:
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            if origin is not None and not self._origin_allowed(origin, headers.get("host", "")):
                why = f"Origin {origin[:80]!r} may not change anything here: only this server's pages and CORS_ORIGINS"
                return _refuse_http(send, 403, why)
            if (coded := _coded(headers)) is not None:
                return _refuse_http(send, 415, coded)
            if not scope["path"].startswith(OWN_FRAMING_PREFIX) and (untyped := _not_json(headers)) is not None:
                return _refuse_http(send, 415, untyped)
        elif scope["type"] == "websocket":
            headers = Headers(scope=scope)
            origin = headers.get("origin")
            if origin is not None and not self._origin_allowed(origin, headers.get("host", "")):
                return send({"type": "websocket.close", "code": 1008, "reason": "origin not allowed"})
        return self.app(scope, receive, send)

    def _origin_allowed(self, origin: str, host: str) -> bool:
        origin = origin.rstrip("/").lower()
        if "*" in self.allowed_origins or origin in self.allowed_origins:
            return True
        return urlsplit(origin).netloc == host.lower()  # the server's own page


def _not_json(headers: Headers) -> str | None:
    """Why a state-changing request's body is refused (415), or None: a declared type must be JSON, and a
    body (declared by its length or sent chunked) must declare one."""
    content_type = headers.get("content-type")
    if content_type is not None:
        return None if is_json(content_type) else f"Content-Type {content_type[:80]!r}: send application/json"
    if _has_body(headers):
        return "a body with no Content-Type: send it as application/json"
    return None


def _coded(headers: Headers) -> str | None:
    """Why a body is refused (415) for its content codings, or None: any but `identity` (RFC 9110 8.4.1)."""
    codings = (coding.strip().lower() for value in headers.getlist("content-encoding") for coding in value.split(","))
    declared = ", ".join(coding for coding in codings if coding and coding != "identity")
    if not declared:
        return None
    return f"content codings are not supported (Content-Encoding: {declared[:80]}); send the body uncompressed"


def _has_body(headers: Headers) -> bool:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return True
    return headers.get("content-length", "0").strip().lstrip("0") != ""  # anything but a plain 0 is a body


async def _refuse_http(send: Send, status: int, detail: str) -> None:
    body = orjson.dumps({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
