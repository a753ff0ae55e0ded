"""Shared fixtures: settings on a fresh SQLite file, real servers on ephemeral ports, real clients."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
import websockets

from bot.config import Settings
from bot.server import TrainingMetricsServer
from tests.isolation import run_database, run_redis

# Servers run in the test's own process, beside blocking SDK threads: a short GIL switch interval keeps
# the two from waiting out each other's 5 ms turns (a convoy no real deployment has).
sys.setswitchinterval(0.0005)

# torch in one thread, in this process and every process it starts: two workers a core with a thread pool
# each spend CPU on spinning threads, not on the tiny networks the tests train.
os.environ.setdefault("OMP_NUM_THREADS", "1")

# Every wait in a test is bounded; scale them all on a slow machine with TMS_TESTS_TIMEOUT_FACTOR.
TIMEOUT = 10.0 * float(os.environ.get("TMS_TESTS_TIMEOUT_FACTOR", "1"))

if importlib.util.find_spec("xdist") is not None:  # a hook of pytest-xdist's: declared only where it is installed

    def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
        """`-n auto` starts two workers a core: much of the suite waits (servers' timeouts, child processes and
        Ray jobs starting), so two a core finish sooner than one (5.5 against 6.9 minutes on 2 cores)."""
        return 2 * (os.cpu_count() or 1)


# The directories whose tests run longest (processes, jobs, browsers) go first: xdist hands tests out in
# collection order, so the long ones no longer start last and leave the other workers idle at the end.
LONG_FIRST = ("training", "reliability", "web", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        folder = Path(str(item.path)).parent.name
        return LONG_FIRST.index(folder) if folder in LONG_FIRST else len(LONG_FIRST)

    items.sort(key=rank)  # stable: the order within each directory is kept


REQUIRE_SERVICES = os.environ.get("TMS_REQUIRE_SERVICES") == "1"
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _reachable(url: str, default_port: int) -> bool:
    host_port = url.split("@")[-1].split("://")[-1].split("/")[0]
    host, _, port = host_port.partition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port or default_port)), timeout=1):
            return True
    except OSError:
        return False


def service_or_skip(name: str, url: str, default_port: int) -> None:
    if _reachable(url, default_port):
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{name} at {url} is unreachable and TMS_REQUIRE_SERVICES=1: start it (see README)")
    pytest.skip(f"{name} at {url} is unreachable")


@pytest.fixture(scope="session", autouse=True)
def run_spool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The SDK's spool of this run's own (tests/isolation.py), inherited by every process the tests start."""
    spool = tmp_path_factory.mktemp("spool")
    before = os.environ.get("TMS_SPOOL_DIR")
    os.environ["TMS_SPOOL_DIR"] = str(spool)
    yield spool
    if before is None:
        os.environ.pop("TMS_SPOOL_DIR", None)
    else:
        os.environ["TMS_SPOOL_DIR"] = before


@pytest.fixture(scope="session")
def run_postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this run's own (tests/isolation.py)."""
    service_or_skip("PostgreSQL", POSTGRES_URL, 5432)
    with run_database(POSTGRES_URL) as url:
        yield url


@pytest.fixture(scope="session")
def run_redis_url() -> Iterator[str]:
    """A Redis database claimed for this run (tests/isolation.py)."""
    service_or_skip("Redis", REDIS_URL, 6379)
    with run_redis(REDIS_URL) as url:
        yield url


@pytest.fixture
def postgres_url(run_postgres_url: str) -> Iterator[str]:
    """A PostgreSQL URL whose tables live in a schema of this test's own, dropped afterwards."""
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(run_postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in run_postgres_url else "?"
    yield f"{run_postgres_url}{separator}options=-csearch_path%3D{schema}"
    with psycopg.connect(run_postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def redis_url(run_redis_url: str) -> str:
    return run_redis_url


class PrivateRedis:
    """A Redis server of one test's own, on a port of its own, which the test may pause, stop and restart."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary, self.workdir = binary, workdir
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen([*command, "--dir", str(self.workdir)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            assert self.process.poll() is None, "redis-server did not start"
            time.sleep(0.05)
        raise AssertionError("redis-server did not start listening")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(TIMEOUT)
            self.process = None

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers, as with a Redis stuck on a slow disk."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        if REQUIRE_SERVICES:
            pytest.fail("redis-server is not installed and TMS_REQUIRE_SERVICES=1")
        pytest.skip("redis-server is not installed")
    redis = PrivateRedis(binary, tmp_path)
    redis.start()
    yield redis
    if redis.process is not None:
        redis.resume()
    redis.stop()


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A Ray head of this run's own (tests/ray_head.py), started once for the tests of a module that ask. Those
    run one after the other on one worker (their xdist_group), and the head stops after them: idle, it still
    takes some 7 % of a core, which the rest of the run needs."""
    if shutil.which("ray") is None:
        if REQUIRE_SERVICES:
            pytest.fail("Ray is not installed and TMS_REQUIRE_SERVICES=1: pip install .[ray]")
        pytest.skip("Ray is not installed (pip install .[ray])")
    from tests.ray_head import ray_head

    with ray_head() as address:
        yield address


# Folders whose tests run on PostgreSQL as well as SQLite (the PostgreSQL runs are marked slow: CI runs
# them, the everyday run does not). A test that asks for `db_path` works on the SQLite file itself.
BOTH_BACKENDS = ("server", "e2e", "reliability")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames or "db_path" in metafunc.fixturenames:
        return
    if Path(str(metafunc.definition.path)).parent.name in BOTH_BACKENDS:
        metafunc.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.slow)])


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "metrics.db"


@pytest.fixture
def database_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    if backend == "postgres":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return f"sqlite:///{tmp_path / 'metrics.db'}"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        max_connections_per_session=5,
        slow_spectator_timeout=0.5,
        max_backlog=50,
        cleanup_interval_seconds=3600,
        ws_ping_interval=5.0,
        ingest_processes=0,  # in-process servers by the dozen: no worker processes (tests/e2e/test_ingest.py has them)
    )


@dataclass
class LiveServer:
    """A real uvicorn server on 127.0.0.1 with a port the OS picked."""

    server: uvicorn.Server
    task: asyncio.Task[Any]
    port: int
    app_server: TrainingMetricsServer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, session_id: str, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/ws/{session_id}" + (f"?{query}" if query else "")

    async def stop(self, timeout: float = TIMEOUT) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, timeout)


def listening_socket(port: int = 0) -> socket.socket:
    """A loopback TCP socket for uvicorn to serve on. Made with IPPROTO_TCP, as asyncio's own create_server makes
    them: asyncio sets TCP_NODELAY on accepted connections only then, and without it every answer written in two
    parts (headers, then body) waits out the client's 40 ms delayed ACK."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    return sock


async def start_server(settings: Settings, port: int = 0, **uvicorn_options: Any) -> LiveServer:
    sock = listening_socket(port)
    app_server = TrainingMetricsServer(settings.model_copy(update={"port": sock.getsockname()[1]}))
    server = uvicorn.Server(app_server.uvicorn_config(**{"log_level": "warning", **uvicorn_options}))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    async with asyncio.timeout(TIMEOUT):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    return LiveServer(server, task, sock.getsockname()[1], app_server)


@pytest.fixture
async def server_factory() -> AsyncIterator[Callable[..., Awaitable[LiveServer]]]:
    """Start any number of servers; every one still running is stopped at teardown."""
    started: list[LiveServer] = []

    async def factory(settings: Settings, port: int = 0, **uvicorn_options: Any) -> LiveServer:
        live = await start_server(settings, port, **uvicorn_options)
        started.append(live)
        return live

    yield factory
    for live in started:
        if not live.task.done():
            await live.stop()


@pytest.fixture
async def live(server_factory: Callable[[Settings], Awaitable[LiveServer]], settings: Settings) -> LiveServer:
    return await server_factory(settings)


@pytest.fixture
async def client(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as http:
        yield http


@pytest.fixture
async def spectators() -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    """Open WebSocket spectators; all are closed at teardown."""
    opened: list[Any] = []

    async def connect(url: str, **kwargs: Any) -> Any:
        ws = await websockets.connect(url, open_timeout=TIMEOUT, compression=None, **kwargs)
        opened.append(ws)
        return ws

    yield connect
    for ws in opened:
        with contextlib.suppress(Exception):
            await ws.close()


async def recv_json(ws: Any, timeout: float = TIMEOUT) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        message: dict[str, Any] = orjson.loads(await ws.recv())
        return message


async def recv_until(ws: Any, message_type: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """Skip other messages until one of `message_type` arrives."""
    async with asyncio.timeout(timeout):
        while True:
            message: dict[str, Any] = orjson.loads(await ws.recv())
            if message["type"] == message_type:
                return message


async def recv_data(ws: Any, count: int, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
    """The next `count` stored-stream messages (seq not null), skipping control messages."""
    received: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(received) < count:
            message = orjson.loads(await ws.recv())
            if message.get("seq") is not None:
                received.append(message)
    return received


async def connect_and_sync(connect: Callable[..., Awaitable[Any]], url: str) -> Any:
    """Connect a spectator and read past its welcome and snapshot."""
    ws = await connect(url)
    welcome = await recv_json(ws)
    assert welcome["type"] == "connection_status", welcome
    await recv_until(ws, "snapshot")
    return ws


async def create_session(client: httpx.AsyncClient, training_id: str | None = None, **fields: Any) -> str:
    body = {"training_id": training_id, **fields} if training_id else fields
    response = await client.post("/api/training/sessions", json=body)
    assert response.status_code == 201, response.text
    session_id: str = response.json()["session_id"]
    return session_id


async def close_code(ws: Any, timeout: float = TIMEOUT) -> int | None:
    """The code of the close that must come next (None: the connection ended without a close frame)."""
    try:
        async with asyncio.timeout(timeout):
            message = await ws.recv()
    except websockets.ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None
    raise AssertionError(f"expected the connection to close, got {message!r}")


async def push_wide(client: httpx.AsyncClient, session_id: str, batches: int = 20) -> None:
    """Batches of 50 points with a wide field each: enough to fill a stalled spectator's buffers."""
    for batch in range(batches):
        body = [{"episode": batch * 50 + i, "algorithm": "x" * 60} for i in range(50)]
        response = await client.post(f"/api/training/sessions/{session_id}/metrics", json=body)
        assert response.status_code == 200, response.text
