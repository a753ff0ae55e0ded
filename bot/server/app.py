"""The application factory and the server object of the original design.

`create_app(settings)` builds everything (store, broker, hub, service) in the lifespan and hangs it on
the request state: no module-level state, so a process can hold as many independent apps as it likes.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import math
import os
import reprlib
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.routing import compile_path

from bot import __version__
from bot.config import ServerConfiguration, Settings, as_settings
from bot.schemas import (
    JSON_VALUE_SCHEMA,
    BotDecisionData,
    PerformanceGraphData,
    SessionCreate,
    SessionUpdate,
    TrainingMetricsData,
)
from bot.server.api.bodies import ECHO_LIMIT, ERRORS, BodiesBusyError, BodyTooLargeError, echoed, error_response
from bot.server.api.routes import router as api_router
from bot.server.api.training import DaemonConfigUpdate, StartTraining, StopTraining
from bot.server.edge.browsers import LOOPBACK_HOSTS, BrowserGuard, allowed_hosts
from bot.server.edge.downloads import DownloadLimit
from bot.server.edge.http_guard import ConnectionLimits, GuardedHttpProtocol, default_max_connections
from bot.server.edge.metrics import MetricsMiddleware, ServerMetrics
from bot.server.edge.paced_accept import PacedAcceptor
from bot.server.edge.rate_limits import RateLimitedError
from bot.server.edge.shutdown_answer import ShutdownAnswer
from bot.server.gc_pauses import YoungOnlyCollector
from bot.server.live import ws
from bot.server.live.direct import RawSendMiddleware
from bot.server.live.hub import Hub
from bot.server.live.protocol import LightWebSocketProtocol
from bot.server.live.shortcut import SpectatorsFirst, SpectatorShortcut
from bot.server.pages import mount_docs, mount_pages
from bot.server.parts import open_parts
from bot.server.supervisor import Supervisor
from bot.server.training.jobs import JobSupervisor, scenario_names, scenarios_dir
from bot.server.training.socketio_events import SocketIOEvents
from bot.store import (
    IdempotencyConflictError,
    SessionExistsError,
    SessionNotFoundError,
    StoreRejectedError,
    StoreUnavailableError,
)

logger = logging.getLogger(__name__)
# Where the original design's server logs its start and stop: its users' logging configuration names it.
design_logger = logging.getLogger("bot.rl_bot_system.server.training_metrics_server")

MAX_LISTED_ERRORS = 100
WS_MAX_MESSAGE_BYTES = 65_536  # a spectator's message (ping, subscribe) past this closes with 1009
BODY_MODELS = (
    TrainingMetricsData,
    BotDecisionData,
    PerformanceGraphData,
    SessionCreate,
    SessionUpdate,
    StartTraining,
    StopTraining,
    DaemonConfigUpdate,
)


def create_app(config: Settings | ServerConfiguration | None = None) -> FastAPI:
    settings = as_settings(config)
    supervisor = Supervisor()  # every long-lived loop of this app (bot/server/supervisor.py)
    socket_io = SocketIOEvents(settings, supervisor)
    metrics = ServerMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        if settings.host not in LOOPBACK_HOSTS and not settings.enable_auth:
            logger.warning(
                "listening on %s with no authentication: anyone who can reach this port can read, write and "
                "delete every session; bind 127.0.0.1 (the default) or put the server behind a proxy that "
                "authenticates",
                settings.host or "every interface",
            )
        async with AsyncExitStack() as stack:
            state = await open_parts(stack, settings, supervisor, socket_io, metrics)
            metrics.state = state.as_dict()
            app.state.rl_v3_training_daemon = state.daemon  # where the original design's code finds it
            backend = settings.database_url.split(":", 1)[0]
            broker = "Redis" if settings.redis_url else "in-memory"
            where = f"{settings.host}:{settings.port}"
            design_logger.info("training metrics server started on %s (%s, %s broker)", where, backend, broker)
            yield metrics.state
            design_logger.info("training metrics server stopping")

    app = SpectatorsFirst(
        title="Training Metrics Server",
        version=__version__,
        description="Live training metrics: push from any engine, watch over WebSocket, query history.",
        lifespan=lifespan,
        debug=settings.debug,
        docs_url=None,  # served from the package by mount_docs, not from a CDN
        redoc_url=None,  # the same
    )
    app.add_middleware(SpectatorShortcut)  # innermost: spectators skip FastAPI's layers (live/shortcut.py)
    app.add_middleware(RawSendMiddleware)  # for the fan-out fast path (bot/server/live/direct.py)
    app.add_middleware(DownloadLimit, per_client=settings.max_downloads_per_client)  # edge/downloads.py
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(BrowserGuard, allowed_origins=settings.cors_origins)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(settings.allowed_hosts, settings.host))
    app.add_middleware(ShutdownAnswer)  # outermost: a request the shutdown cuts short gets a 503
    app.include_router(api_router)
    app.include_router(ws.router)
    app.mount("/socket.io", socket_io.app)
    mount_pages(app)
    mount_docs(app)
    _add_error_handlers(app)
    _document_bodies(app, settings)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SessionNotFoundError)
    async def not_found(request: Request, exc: SessionNotFoundError) -> JSONResponse:
        return JSONResponse(_naming_session(exc, exc.session_id), status_code=404)

    @app.exception_handler(SessionExistsError)
    async def exists(request: Request, exc: SessionExistsError) -> JSONResponse:
        return JSONResponse(_naming_session(exc, exc.session_id), status_code=409)

    @app.exception_handler(IdempotencyConflictError)
    async def conflict(request: Request, exc: IdempotencyConflictError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "idempotency_key": exc.key}, status_code=409)

    @app.exception_handler(StoreUnavailableError)
    async def unavailable(request: Request, exc: StoreUnavailableError) -> JSONResponse:
        detail = f"storage unavailable, nothing was stored; retry: {exc}"
        return JSONResponse({"detail": detail}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(BodiesBusyError)
    async def bodies_busy(request: Request, exc: BodiesBusyError) -> JSONResponse:
        return JSONResponse({"detail": f"{exc}; retry"}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(BodyTooLargeError)
    async def too_large(request: Request, exc: BodyTooLargeError) -> JSONResponse:
        return JSONResponse({"detail": str(exc), "max_body_bytes": exc.limit}, status_code=413)

    @app.exception_handler(RateLimitedError)
    async def rate_limited(request: Request, exc: RateLimitedError) -> JSONResponse:
        body = {"detail": str(exc), "limit": exc.limit, "retry_after": exc.retry_after}
        return JSONResponse(body, status_code=429, headers={"Retry-After": str(math.ceil(exc.retry_after))})

    @app.exception_handler(StoreRejectedError)
    async def rejected(request: Request, exc: StoreRejectedError) -> Response:
        """The shape of every 422: `detail` lists the error (of the whole body), `message` sums it up."""
        error = {"type": exc.kind, "loc": ("body",), "msg": str(exc), "input": exc.input}
        return Response(validation_body([error]), status_code=422, media_type="application/json")

    @app.exception_handler(405)
    async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
        """Starlette's `Allow` names only the first route on the path, and FastAPI makes a route per method."""
        documented = allowed_methods(app, request.url.path)
        headers = getattr(exc, "headers", None) or {}
        allow = ", ".join(documented) if documented else headers.get("Allow", "")
        return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers={"Allow": allow})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return Response(validation_body(exc.errors()), status_code=422, media_type="application/json")


def _naming_session(exc: Exception, session_id: str) -> dict[str, str]:
    """A 404 or 409 names the session id, which comes from the path unchecked (any length): the answer
    echoes at most ECHO_LIMIT characters of it in all, half in `detail` and half in `session_id`."""
    shown = echoed(session_id, ECHO_LIMIT // 2)
    return {"detail": str(exc).replace(repr(session_id), repr(shown), 1), "session_id": shown}


def allowed_methods(app: FastAPI, path: str) -> list[str] | None:
    """The methods the OpenAPI document gives this path, or None for a path it does not document."""
    for template, operations in app.openapi()["paths"].items():
        if compile_path(template)[0].match(path):
            return sorted(method.upper() for method in operations)
    return None


def validation_body(raw_errors: Sequence[Any]) -> bytes:
    """A 422 body: each error's `loc`, `msg` and the input it refused, never failing on that input; at most
    MAX_LISTED_ERRORS of them (a batch of 10,000 bad points would otherwise answer with megabytes)."""
    errors = [
        {
            "type": e.get("type"),
            "loc": [_echo(part) for part in e.get("loc", ())],
            "msg": _echo(e.get("msg")),
            "input": _echo(e.get("input")),
        }
        for e in raw_errors[:MAX_LISTED_ERRORS]
    ]
    summary = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
    if len(raw_errors) > MAX_LISTED_ERRORS:
        summary = f"{len(raw_errors)} errors, the first {MAX_LISTED_ERRORS} listed; {summary}"
    return orjson.dumps({"detail": errors, "message": summary})


def _echo(value: Any) -> Any:
    """The refused input, as JSON can carry it and at most ECHO_LIMIT characters of it: NaN, huge integers,
    lone surrogates and deep nesting are what was refused, so they must not break the reply, and a refused
    body of megabytes must not come back whole; those come back as a short repr, built in bounded time
    (reprlib stops at a few items of each container and a prefix of each string)."""
    short = _SHORT.repr(value)
    if "..." in short or len(short) > ECHO_LIMIT:  # reprlib cut it: the value is big
        short = short[:ECHO_LIMIT]
        return short if short.endswith("...") else short + "..."
    try:
        size = len(orjson.dumps(value))
    except (TypeError, RecursionError):
        return short
    return value if size <= ECHO_LIMIT else short


def _short_repr() -> reprlib.Repr:
    short = reprlib.Repr()
    short.maxstring = short.maxother = ECHO_LIMIT
    short.maxlevel, short.maxlist, short.maxdict, short.maxlong = 4, 8, 8, 60
    return short


_SHORT = _short_repr()


GUARD_ERRORS = (414, 431)  # the connection guard's answers to a request it refuses before routing
STATE_CHANGING = ("post", "put", "patch", "delete")  # and the browser guard's, to one that changes state
FOREIGN_ORIGIN = error_response("the credentials do not give access to this, or the request's Origin is not allowed")


def _document_bodies(app: FastAPI, settings: Settings) -> None:
    """Bodies are parsed by hand (orjson, one TypeAdapter call); publish their schemas in OpenAPI anyway, with
    what pydantic cannot write: metadata as recursive JSON, a scenario's name as one of this server's scenario
    files (read when the document is first asked for), a room's size within this server's limit, the guard's
    414 and 431 on every operation, the browser guard's 403 and 415 on every one that changes state, and the
    credentials when auth is on."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in BODY_MODELS:
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            for operations in schema["paths"].values():
                for method, operation in operations.items():
                    operation["responses"].update({str(code): ERRORS[code] for code in GUARD_ERRORS})
                    if method in STATE_CHANGING:
                        operation["responses"]["403"] = FOREIGN_ORIGIN
                        operation["responses"]["415"] = ERRORS[415]
            components["JsonValue"] = JSON_VALUE_SCHEMA
            json_object = {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}}
            components["SessionCreate"]["properties"]["metadata"].update(json_object)
            components["SessionUpdate"]["properties"]["metadata"]["anyOf"][0] = json_object
            scenarios = {"type": "string", "enum": scenario_names(scenarios_dir(settings))}
            components["StartTraining"]["properties"]["scenario_name"] = scenarios
            components["DaemonConfigUpdate"]["properties"]["scenario"] = {"anyOf": [scenarios, {"type": "null"}]}
            room_size = components["RoomSpec"]["properties"]["max_spectators"]  # no more than this server takes
            room_size["maximum"] = min(room_size["maximum"], settings.max_connections_per_session)
            room_size["default"] = min(room_size["default"], room_size["maximum"])
            if settings.enable_auth:
                _document_credentials(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_credentials(schema: dict[str, Any]) -> None:
    """With auth on, every operation but /health takes a Bearer credential (bot/server/edge/auth.py)."""
    bearer = {"type": "http", "scheme": "bearer", "description": "an API key (`bot keys create`) or a JWT"}
    schema["components"]["securitySchemes"] = {"bearer": bearer}
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            if path != "/health":
                operation["security"] = [{"bearer": []}]


def connection_limits(settings: Settings) -> ConnectionLimits:
    return ConnectionLimits(
        max_connections=settings.max_connections or default_max_connections(),
        max_url_bytes=settings.max_url_bytes,
        max_header_bytes=settings.max_header_bytes,
        header_timeout=settings.http_header_timeout,
        body_timeout=settings.http_body_timeout,
        send_timeout=settings.http_send_timeout,
    )


class TrainingMetricsServer:
    """The server of the original design: `TrainingMetricsServer(ServerConfig(...)).run()`."""

    def __init__(self, config: Settings | ServerConfiguration | None = None) -> None:
        self.settings = as_settings(config)
        self.app = create_app(self.settings)

    @property
    def url(self) -> str:
        """Where clients in this process reach it (a wildcard bind is reached over loopback)."""
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "::", "") else self.settings.host
        return f"http://{host}:{self.settings.port}"

    def uvicorn_config(self, **overrides: Any) -> uvicorn.Config:
        s = self.settings
        options: dict[str, Any] = {
            "host": s.host,
            "port": s.port,
            "ws": LightWebSocketProtocol,  # websockets-sansio, lighter (bot/server/live/protocol.py)
            "ws_per_message_deflate": s.ws_per_message_deflate,
            "ws_ping_interval": s.ws_ping_interval,
            "ws_ping_timeout": s.ws_ping_timeout,
            "lifespan": "on",
            "log_level": s.log_level or ("debug" if s.debug else "info"),
            "access_log": s.access_log or s.debug,
            "timeout_graceful_shutdown": max(1, math.ceil(s.shutdown_timeout)),
            # Spectators send small control messages: a bigger one is refused (1009), never buffered.
            "ws_max_size": WS_MAX_MESSAGE_BYTES,
            "http": functools.partial(GuardedHttpProtocol, limits=connection_limits(s)),
            "timeout_keep_alive": s.http_idle_timeout,
            # X-Forwarded-For only from the proxies FORWARDED_ALLOW_IPS names: uvicorn's default trusts
            # 127.0.0.1, where every client of a loopback server comes from, and each could then choose the
            # address that its rate limits and room-password back-off are counted against.
            "proxy_headers": bool(os.environ.get("FORWARDED_ALLOW_IPS")),
            **overrides,
        }
        options.setdefault("log_config", _log_config(options["log_level"], s.log_format))
        return uvicorn.Config(self.app, **options)

    def run(self) -> None:
        _Server(self.uvicorn_config(), self.settings.shutdown_timeout).run()


def _log_config(level: str | int, log_format: str = "text") -> dict[str, Any]:
    """uvicorn's logging, and the server's own loggers (`bot.*`: migrations, the broker's state, the
    training daemon's `[RLv3]` lines) printed the same way at the same level, with secrets masked
    (bot/server/edge/logs.py). They still propagate, so an application that configures logging itself gets them too."""
    config: dict[str, Any] = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    name = level.upper() if isinstance(level, str) else level
    config["loggers"]["bot"] = {"handlers": ["default"], "level": "DEBUG" if name == "TRACE" else name}
    config.setdefault("filters", {})["secrets"] = {"()": "bot.server.edge.logs.RedactSecrets"}
    config["filters"]["client_faults"] = {"()": "bot.server.edge.logs.ClientFaults"}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).extend(["client_faults", "secrets"])
    if log_format == "json":
        for formatter in config["formatters"].values():
            formatter.clear()
            formatter["()"] = "bot.server.edge.logs.JsonFormatter"
    return config


JOBS_SHARE_OF_GRACE = 0.5  # of the shutdown's time: running jobs stop first, while the server still serves
# Kept for the app's own closing (its store, workers and broker), waiting on no one: a tenth of the shutdown's
# time, at least CLOSING_SECONDS (what it takes here), at most half of it.
CLOSING_SHARE_OF_GRACE = 0.1
CLOSING_SECONDS = 0.3


class _Server(uvicorn.Server):
    """uvicorn's server, with four changes for a process of its own.

    New TCP connections are accepted a few per event-loop turn (edge/paced_accept.py), so that a burst
    of them (a reconnect storm) does not hold up the live stream.

    Once the app is up, the garbage collector stops walking the whole heap (gc_pauses.py): the start-up
    heap (FastAPI, pydantic, SQLAlchemy; a 40-200 ms walk here) and then each second's survivors are frozen,
    so that thousands of spectators' connections do not make every push wait for a full collection. The
    freeze is process-wide.

    On shutdown, running training jobs are stopped first, while the server still takes their last points
    and status (for up to JOBS_SHARE_OF_GRACE of `grace`); then spectators are closed with 1001 (going away)
    before uvicorn closes the remaining WebSockets with 1012, and one that does not take its close in time is
    cut off, so a client that stopped reading never holds the process; then uvicorn waits for the requests in
    flight. All of them share the one `grace`: what one wait takes, the next does not get.
    """

    def __init__(self, config: uvicorn.Config, grace: float) -> None:
        super().__init__(config)
        self.grace = grace
        self._collector: YoungOnlyCollector | None = None
        self._collecting: asyncio.Task[None] | None = None
        self._acceptors: list[PacedAcceptor] = []

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.should_exit:
            return
        if self.config.ssl is None and self.config.uds is None and self.config.fd is None:  # TCP: paced_accept.py
            config = self.config

            def protocol() -> asyncio.Protocol:  # as uvicorn's own startup makes them
                made: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
                    config=config, server_state=self.server_state, app_state=self.lifespan.state
                )
                return made

            self._acceptors = [a for server in self.servers for a in PacedAcceptor.take_over(server, protocol)]
        hub = self.lifespan.state.get("hub")
        if isinstance(hub, Hub):
            self._collector = YoungOnlyCollector(lambda: hub.left, lambda: hub.total)
            self._collector.start()
            self._collecting = asyncio.create_task(self._collector.run(), name="tms-gc")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # One deadline for everything that waits on others (jobs, spectators, requests in flight): each wait
        # takes what the ones before it left, so a stalled spectator and a trickling upload never add up.
        loop = asyncio.get_running_loop()
        closing = min(self.grace / 2, max(CLOSING_SHARE_OF_GRACE * self.grace, CLOSING_SECONDS))
        ends = loop.time() + self.grace - closing

        def left() -> float:
            return max(0.0, ends - loop.time())

        jobs = self.lifespan.state.get("jobs")
        if isinstance(jobs, JobSupervisor) and jobs.running:  # while this server still takes their last pushes
            await jobs.stop_while_serving(JOBS_SHARE_OF_GRACE * self.grace)
        if self._collecting is not None and self._collector is not None:
            self._collecting.cancel()
            self._collector.stop()
        for server in self.servers:
            server.close()  # no new connections while the spectators are told
        for acceptor in self._acceptors:
            acceptor.close()
        hub = self.lifespan.state.get("hub")
        if isinstance(hub, Hub):
            await hub.shutdown(left())
        # uvicorn waits for the requests in flight this long (typed int, used as asyncio.wait_for's float)
        self.config.timeout_graceful_shutdown = left()  # type: ignore[assignment]
        logger.info("shutdown: %.1f s of TMS_SHUTDOWN_TIMEOUT left for the requests in flight", left())
        await super().shutdown(sockets)
