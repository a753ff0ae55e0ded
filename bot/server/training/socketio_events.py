"""Training events over Socket.IO at `/socket.io`, for the original design's Python and JavaScript clients.

python-socketio, mounted as an ASGI app. Every connected client receives `training_started`,
`training_progress`, `training_completed`, `training_stopped` and `training_error` of every job, with the
payloads the job's session stores (bot/server/training/jobs.py), as the design says: it need not ask. A client may
narrow them: `subscribe_training` with `{"job_id": ...}` follows that job (and more, one call each, up to
`socketio_max_subscriptions_per_client`), without one it widens back to every job; `unsubscribe_training`
leaves a job, or without one everything. A job id that names no job is an error answer, and joins nothing.
A credential limited to one session only ever gets the events of that session's jobs.

What a client may cost is bounded before it costs it. The Engine.IO handshake (which makes a session) is
looked at first (Doorman): past `socketio_max_clients` sessions it is answered 503, and a credential in it
(an Authorization header, or `?token=`) is checked then, 401/403 without a session. A credential that comes
in the Socket.IO CONNECT (`auth={"token": ...}`) can only be checked once the session exists; a session
that has not connected within CONNECT_WAIT_SECONDS is closed. A client's events are handled one at a time,
in order, so it cannot pile up handlers; its messages are at most MAX_MESSAGE_BYTES. One that is refused
more than MAX_REFUSALS times (guessing job ids, say) gets `error` and is disconnected.

With REDIS_URL set, instances share their emits through Redis (python-socketio's AsyncRedisManager), so a
client of any instance hears the jobs of every instance.

Credentials are looked at again every KEY_CACHE_SECONDS, as the raw WebSocket's are (ws_access.py): a
client whose token expired or whose key was revoked gets `unauthorized` (`{"message": why}`) and is
disconnected. Events are queued and emitted by one task, in order; the job supervisor never waits for a
Socket.IO client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qs

import socketio
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from bot import __version__
from bot.config import Settings
from bot.server.edge.auth import ANYONE, KEY_CACHE_SECONDS, Authenticator, AuthError, Principal
from bot.server.supervisor import Supervisor
from bot.server.tasks import cancel_and_wait
from bot.store import Store
from bot.store.keys import revoked_among

logger = logging.getLogger(__name__)

ALL_JOBS = "training"
MAX_QUEUED = 10_000  # events waiting to be emitted; past this the oldest are dropped (clients read history)
CONNECT_WAIT_SECONDS = 5.0  # an Engine.IO session must complete its Socket.IO connect within this
MAX_MESSAGE_BYTES = 65_536  # a client's message, as for the raw WebSocket's spectators
MAX_JOB_ID_CHARS = 128
MAX_REFUSALS = 100  # error answers a client gets before it is taken as abusive and disconnected
RETRY_AFTER_SECONDS = 5
REDIS_CHANNEL = "tms-socketio"

FindJob = Callable[[str], Awaitable[dict[str, Any] | None]]


def job_room(job_id: str) -> str:
    return f"training:{job_id}"


def session_room(session_id: str) -> str:
    """The events of every job of one session: the widest a session-limited credential gets."""
    return f"session:{session_id}"


@dataclass
class _Client:
    principal: Principal
    eio_sid: str
    everything: bool = True  # in its base room: every job it may see
    jobs: set[str] = field(default_factory=set)  # the jobs it narrowed to
    refusals: int = 0  # error answers so far

    @property
    def base_room(self) -> str:
        session_id = self.principal.session_id
        return ALL_JOBS if session_id is None else session_room(session_id)


class SocketIOEvents:
    def __init__(self, settings: Settings, supervisor: Supervisor | None = None) -> None:
        self.supervisor = supervisor or Supervisor()
        self.max_clients = settings.socketio_max_clients
        self.max_subscriptions = settings.socketio_max_subscriptions_per_client
        # Same origin only unless origins are configured (never a wildcard). One event of a client at a time
        # (async_handlers=False): a client that floods waits for its own answers, and holds no pile of tasks.
        # With Redis, several instances share their emits (python-socketio's Redis manager): a client of one
        # instance hears the jobs another instance runs.
        manager = socketio.AsyncRedisManager(settings.redis_url, channel=REDIS_CHANNEL) if settings.redis_url else None
        self.server = _ClientEventsOnly(
            async_mode="asgi",
            cors_allowed_origins=settings.cors_origins or None,
            async_handlers=False,
            max_http_buffer_size=MAX_MESSAGE_BYTES,
            client_manager=manager,
        )
        # Mounted at /socket.io by the FastAPI app, behind the handshake's check.
        self.app = Doorman(socketio.ASGIApp(self.server, socketio_path=None), self)
        self.clients: dict[str, _Client] = {}  # Socket.IO sid -> what it may see and follows
        self.authenticator: Authenticator | None = None
        self._store: Store | None = None
        self._find_job: FindJob | None = None
        self._unconnected: dict[str, float] = {}  # Engine.IO sid -> when first seen without a Socket.IO connect
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(MAX_QUEUED)
        self._tasks: list[asyncio.Task[None]] = []
        self.server.on("connect", self._connect)
        self.server.on("disconnect", self._disconnect)
        self.server.on("subscribe_training", self._subscribe)
        self.server.on("unsubscribe_training", self._unsubscribe)
        self.server.on(_ClientEventsOnly.REFUSED, self._protocol_event)

    def bind(self, authenticator: Authenticator, store: Store, find_job: FindJob) -> None:
        """What it needs of the app, once the store is open (app.py): credentials, revocations, jobs."""
        self.authenticator, self._store, self._find_job = authenticator, store, find_job

    async def __aenter__(self) -> Self:
        self._tasks = [
            self.supervisor.spawn("socketio.emit", self._emit_loop),
            self.supervisor.spawn("socketio.watch", self._watch_loop),
        ]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.supervisor.stop(self._tasks)
        await self._close_manager()

    async def _close_manager(self) -> None:
        """python-socketio's Redis manager has no close of its own: without this, its listener task and its
        Redis connections outlive the app (a connection held per stopped app, and ResourceWarnings)."""
        manager = self.server.manager
        if not isinstance(manager, socketio.AsyncRedisManager):
            return
        listener = getattr(manager, "thread", None)
        if isinstance(listener, asyncio.Task):
            await cancel_and_wait([listener])
        for client in (manager.pubsub, manager.redis):
            if client is not None:
                with contextlib.suppress(Exception):  # a Redis that went away: nothing left to close
                    await client.aclose()

    def sessions(self) -> int:
        """Engine.IO sessions held now (connected or not yet)."""
        return len(self.server.eio.sockets)

    def publish(self, event: str, data: dict[str, Any]) -> None:
        """A job event, for every client that may see that job and follows it; never waits."""
        if self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait((event, data))

    async def _emit_loop(self) -> None:
        while True:
            event, data = await self._queue.get()
            rooms = [ALL_JOBS, job_room(data["job_id"])]
            if isinstance(data.get("session_id"), str):
                rooms.append(session_room(data["session_id"]))
            try:
                await self.server.emit(event, data, to=rooms)  # a client in several of these gets it once
            except Exception:
                logger.exception("emitting %s over Socket.IO failed", event)

    # -- a client's life ----------------------------------------------------------------------------

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        """With auth on, a client needs `read`: `auth={"token": ...}` (an API key or a JWT), an Authorization
        header or `?token=`; refused otherwise, with the reason."""
        principal = ANYONE
        if self.authenticator is not None and self.authenticator.enabled:
            token = auth.get("token") if isinstance(auth, dict) else None
            authorization = f"Bearer {token}" if isinstance(token, str) else _handshake_credential(environ)
            try:
                principal = await self.authenticator.principal(authorization)
                principal.require("read")
            except AuthError as exc:
                raise socketio.exceptions.ConnectionRefusedError(exc.reason) from None
        client = _Client(principal, self.server.manager.eio_sid_from_sid(sid, "/"))
        self.clients[sid] = client
        await self.server.enter_room(sid, client.base_room)
        welcome = {"message": "Connected to the Training Metrics Server", "sid": sid, "server_version": __version__}
        await self.server.emit("connection_established", {**welcome, "timestamp": time.time()}, to=sid)

    async def _disconnect(self, sid: str, reason: Any = None) -> None:
        self.clients.pop(sid, None)

    async def _protocol_event(self, sid: str, name: Any = None) -> dict[str, Any]:
        client = self.clients.get(sid)
        if client is None:
            return {"status": "error", "message": "not connected"}
        return await self._refused(sid, client, f"{name!r} is the protocol's own event: a client may not send it")

    async def _subscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        """Follow one job (narrowing from every job), or every job again; the answer (a Socket.IO
        acknowledgement) says which, or why not."""
        client = self.clients.get(sid)
        if client is None:
            return {"status": "error", "message": "not connected"}
        if data is not None and not isinstance(data, dict):
            return await self._refused(sid, client, _NOT_AN_OBJECT.format(event="subscribe_training", data=data))
        job_id = data.get("job_id") if data else None
        if job_id is None:
            await self._leave_jobs(sid, client)
            if not client.everything:
                await self.server.enter_room(sid, client.base_room)
                client.everything = True
            return {"status": "subscribed", "job_id": None}
        refusal = await self._refusal(client, job_id)
        if refusal is not None:
            return await self._refused(sid, client, refusal)
        if client.everything:
            await self.server.leave_room(sid, client.base_room)
            client.everything = False
        await self.server.enter_room(sid, job_room(job_id))
        client.jobs.add(job_id)
        return {"status": "subscribed", "job_id": job_id}

    async def _refusal(self, client: _Client, job_id: Any) -> str | None:
        """Why this client may not follow this job, or None."""
        if not isinstance(job_id, str):
            return f"job_id must be a string, got {type(job_id).__name__}"
        if len(job_id) > MAX_JOB_ID_CHARS:
            return f"job_id must be at most {MAX_JOB_ID_CHARS} characters, got {len(job_id)}"
        if job_id in client.jobs:
            return None
        if len(client.jobs) >= self.max_subscriptions:
            return (
                f"this client already follows {len(client.jobs)} jobs, the most it may "
                "(socketio_max_subscriptions_per_client): unsubscribe_training from one first"
            )
        job = await self._find_job(job_id) if self._find_job is not None else None
        if job is None:
            return f"unknown job_id {job_id!r}: no such job (GET /api/training/jobs lists them)"
        if not client.principal.allows("read", job["session_id"]):
            return f"this credential is limited to session {client.principal.session_id!r}"
        return None

    async def _unsubscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        """Leave one job, or, without a job_id, every event (subscribe_training brings them back)."""
        client = self.clients.get(sid)
        if client is None:
            return {"status": "error", "message": "not connected"}
        if data is not None and not isinstance(data, dict):
            return await self._refused(sid, client, _NOT_AN_OBJECT.format(event="unsubscribe_training", data=data))
        job_id = data.get("job_id") if data else None
        if job_id is None:
            await self._leave_jobs(sid, client)
            if client.everything:
                await self.server.leave_room(sid, client.base_room)
                client.everything = False
        elif not isinstance(job_id, str):
            return await self._refused(sid, client, f"job_id must be a string, got {type(job_id).__name__}")
        elif job_id in client.jobs:
            await self.server.leave_room(sid, job_room(job_id))
            client.jobs.discard(job_id)
        return {"status": "unsubscribed", "job_id": job_id}

    async def _refused(self, sid: str, client: _Client, message: str) -> dict[str, Any]:
        """The error answer; past MAX_REFUSALS of them the client is abusive (it guesses job ids, say): it gets
        `error` and is disconnected, as a raw WebSocket spectator is after its 100th invalid message."""
        client.refusals += 1
        if client.refusals > MAX_REFUSALS:
            await self._close(sid, "error", f"more than {MAX_REFUSALS} refused requests: disconnected")
        return {"status": "error", "message": message}

    async def _leave_jobs(self, sid: str, client: _Client) -> None:
        for job_id in client.jobs:
            await self.server.leave_room(sid, job_room(job_id))
        client.jobs.clear()

    # -- the watch: credentials that ended, sessions that never connected -----------------------------

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(KEY_CACHE_SECONDS)
            try:
                await self.check()
            except Exception:
                logger.exception("checking Socket.IO clients failed; trying again")

    async def check(self) -> None:
        await self._close_unconnected(time.monotonic())
        await self._close_ended(time.time())

    async def _close_unconnected(self, now: float) -> None:
        """Engine.IO sessions with no Socket.IO client (no CONNECT, or a refused one) for CONNECT_WAIT_SECONDS."""
        connected = {client.eio_sid for client in self.clients.values()}
        sockets = self.server.eio.sockets
        for eio_sid in [s for s in self._unconnected if s not in sockets or s in connected]:
            del self._unconnected[eio_sid]
        for eio_sid in [s for s in sockets if s not in connected]:
            if now - self._unconnected.setdefault(eio_sid, now) >= CONNECT_WAIT_SECONDS:
                del self._unconnected[eio_sid]
                await self._drop_session(eio_sid)

    async def _drop_session(self, eio_sid: str) -> None:
        """Close an Engine.IO session without waiting for its client: `eio.disconnect` waits until the close
        is polled, which a client that never polls never does."""
        socket = self.server.eio.sockets.pop(eio_sid, None)
        if socket is not None:
            await socket.close(wait=False)  # queues the CLOSE packet: a WebSocket's writer sends it ...
            socket.queue.put_nowait(None)  # ... and then, at this, closes the WebSocket

    async def _close_ended(self, now: float) -> None:
        """Clients whose token expired or whose key was revoked (in the shared store: on any instance)."""
        watched = {
            sid: client.principal
            for sid, client in self.clients.items()
            if client.principal.expires_at is not None or client.principal.key_id is not None
        }
        for sid, principal in watched.items():
            if principal.expires_at is not None and principal.expires_at <= now:
                await self._close(sid, "unauthorized", "token expired: connect again with a new one")
        keys = sorted({p.key_id for p in watched.values() if p.key_id is not None})
        if not keys or self._store is None:
            return
        revoked = await self._store.read(revoked_among, keys)
        for sid, principal in watched.items():
            if principal.key_id in revoked:
                await self._close(sid, "unauthorized", "API key revoked")

    async def _close(self, sid: str, event: str, reason: str) -> None:
        """Tell the client why (`unauthorized` or `error`, `{"message": ...}`), disconnect it, and close its
        Engine.IO session too: a client that ignores the disconnect sends nothing more that is read."""
        client = self.clients.pop(sid, None)
        if client is None:
            return
        await self.server.emit(event, {"message": reason}, to=sid)
        await self.server.disconnect(sid)
        await self._drop_session(client.eio_sid)


def _handshake_credential(environ: dict[str, Any]) -> str | None:
    """The Authorization header of the handshake, or its `?token=` (a secret in a URL is masked in the logs)."""
    authorization = environ.get("HTTP_AUTHORIZATION")
    if isinstance(authorization, str):
        return authorization
    tokens = parse_qs(environ.get("QUERY_STRING", "")).get("token")
    return f"Bearer {tokens[0]}" if tokens else None


def _oversized_post(scope: Scope) -> JSONResponse | None:
    """A polling POST over MAX_MESSAGE_BYTES, or of a length not given, is refused before Engine.IO reads it:
    python-engineio read such a body whole, then closed the session and never answered the request."""
    if scope["type"] != "http" or scope.get("method") != "POST":
        return None
    lengths = [value for key, value in scope.get("headers", []) if key.lower() == b"content-length"]
    if len(lengths) != 1 or not lengths[0].isdigit():
        detail = "a Socket.IO polling POST says its length (Content-Length)"
        return JSONResponse({"detail": detail}, 411)
    if int(lengths[0]) > MAX_MESSAGE_BYTES:
        detail = f"a Socket.IO message is at most {MAX_MESSAGE_BYTES} bytes"
        return JSONResponse({"detail": detail, "max_body_bytes": MAX_MESSAGE_BYTES}, 413)
    return None


class Doorman:
    """The ASGI app at /socket.io: an Engine.IO handshake (a request with no `sid`) is let through only while
    the server holds fewer than `socketio_max_clients` sessions (counting handshakes under way), and only with
    a good credential if it carries one; a refusal costs no session. Every other request goes straight in."""

    def __init__(self, app: socketio.ASGIApp, events: SocketIOEvents) -> None:
        self.app, self.events = app, events
        self.handshaking = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        if "sid" in parse_qs(query):
            refused = _oversized_post(scope)
            await (refused or self.app)(scope, receive, send)
            return
        refusal = await self._refusal(scope, query)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        self.handshaking += 1  # no await since the count was read: concurrent handshakes cannot pass it together
        counted = True

        async def sent(message: Message) -> None:
            nonlocal counted
            if counted:  # the session is in the server's table before its first byte is sent
                counted = False
                self.handshaking -= 1
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            if counted:
                self.handshaking -= 1

    async def _refusal(self, scope: Scope, query: str) -> JSONResponse | None:
        if full := self._full():
            return full
        authenticator = self.events.authenticator
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope.get("headers", [])}
        authorization = _handshake_credential(
            {"HTTP_AUTHORIZATION": headers.get("authorization"), "QUERY_STRING": query}
        )
        if authenticator is not None and authenticator.enabled and authorization is not None:
            try:
                (await authenticator.principal(authorization)).require("read")
            except AuthError as exc:
                extra = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
                return JSONResponse({"detail": exc.reason}, exc.status, headers=extra)
        return self._full()  # again: the credential's check may have let others in

    def _full(self) -> JSONResponse | None:
        if self.events.sessions() + self.handshaking < self.events.max_clients:
            return None
        detail = (
            f"this server holds {self.events.max_clients} Socket.IO clients, the most it takes "
            f"(socketio_max_clients): retry in {RETRY_AFTER_SECONDS} s"
        )
        return JSONResponse({"detail": detail}, 503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


_NOT_AN_OBJECT = '{event} takes an object ({{"job_id": ...}}, or {{}} for every job), got {data!r:.100}'


class _ClientEventsOnly(socketio.AsyncServer):  # type: ignore[misc]  # python-socketio has no types
    """python-socketio (5.x) runs a client's event named `connect` or `disconnect` with the server's own
    handler for it: a client could start its connection over (its refusals and subscriptions counted from
    zero again) or take itself off the list that revocations are checked against. Such an event reaches
    the REFUSED handler instead, which refuses it as any bad request is."""

    RESERVED = frozenset({"connect", "disconnect", "connect_error", "__disconnect_final"})
    REFUSED = "tms:protocol_event"

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: int | None, data: list[Any]) -> None:
        if data and data[0] in self.RESERVED:
            data = [self.REFUSED, data[0]]
        await super()._handle_event(eio_sid, namespace, id, data)
