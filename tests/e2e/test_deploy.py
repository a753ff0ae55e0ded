"""Running the server as users do: the CLI on its defaults, several instances, housekeeping."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from bot.config import Settings
from tests.conftest import TIMEOUT, connect_and_sync, create_session, push_wide, recv_data
from tests.e2e.test_live import stalled_socket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_until_serving(client: httpx.AsyncClient) -> None:
    """A `bot serve` just started: wait until /health answers 200."""
    async with asyncio.timeout(TIMEOUT * 2):
        while True:
            try:
                if (await client.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def bot_serve(tmp_path: Path, **env: str) -> AsyncIterator[tuple[subprocess.Popen[bytes], httpx.AsyncClient]]:
    """`bot serve` as a process of its own, on a SQLite file in `tmp_path` and no Redis, with `env` added; its
    process and a client, once it serves. It is stopped after, unless the test did that itself."""
    port = free_port()
    environ = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'serve.db'}", **env}
    environ.pop("REDIS_URL", None)
    process = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--port", str(port)], cwd=tmp_path, env=environ)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as client:
            await wait_until_serving(client)
            yield process, client
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(TIMEOUT)


@pytest.mark.slow
async def test_a_script_without_a_main_guard_runs_once(tmp_path: Path) -> None:
    """The original design's quick start, a script that builds and runs the server with no
    `if __name__ == "__main__":` guard, runs once: big bodies (read by a worker process) do not re-run it."""
    port = free_port()
    marker = tmp_path / "runs.txt"
    script = tmp_path / "serve_metrics.py"
    script.write_text(
        textwrap.dedent(f"""
            from bot.rl_bot_system.server import ServerConfig, TrainingMetricsServer

            with open({str(marker)!r}, "a") as runs:
                runs.write("ran\\n")
            config = ServerConfig(host="127.0.0.1", port={port}, database_url="sqlite:///{tmp_path / "m.db"}",
                                  ingest_processes=1)
            server = TrainingMetricsServer(config)
            server.run()
        """)
    )
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    process = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, env=env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as client:
            await wait_until_serving(client)
            session_id = await create_session(client, "guardless")
            for first in (0, 2000):
                body = [{"episode": first + i, "current_reward": 0.5} for i in range(2000)]  # over 32 KB
                response = await client.post(f"/api/training/sessions/{session_id}/metrics", json=body)
                assert response.status_code == 200, response.text
        assert marker.read_text() == "ran\n"
    finally:
        process.terminate()
        process.wait(TIMEOUT)


@pytest.mark.slow
async def test_shutdown_closes_spectators_with_1001_and_never_waits_on_a_stalled_one(
    tmp_path: Path, spectators: Any
) -> None:
    """SIGTERM to `bot serve`: a spectator that reads gets close 1001; one that stopped reading (its buffers
    full) does not hold the process, which exits within its shutdown timeout. An upload that trickles gets
    what the stalled spectator left of that time, none: the two waits added up (12 s for a 5 s timeout)."""
    port = free_port()
    log = tmp_path / "serve.log"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "TMS_SHUTDOWN_TIMEOUT": "1",
        "TMS_WS_SEND_BUFFER": "8192",
        "TMS_SLOW_SPECTATOR_TIMEOUT": "600",
    }
    with log.open("wb") as stderr:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        url = f"ws://127.0.0.1:{port}/ws/shut"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as client:
            await wait_until_serving(client)
            await create_session(client, "shut")
            reader = await connect_and_sync(spectators, url)
            stalled = await spectators(url, sock=stalled_socket(port), max_queue=1)
            stalled.transport.pause_reading()
            await push_wide(client, "shut")
            await recv_data(reader, 1000)
            # `bot serve` runs the protocol the fan-out fast path is for, and the path is taken
            assert (await client.get("/status")).json()["messages_out_fast_path"] > 0
        trickling = socket.create_connection(("127.0.0.1", port))
        head = f"POST /api/training/sessions/shut/metrics HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        trickling.sendall(f"{head}Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n[".encode())
        process.terminate()
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(TIMEOUT):
                while True:
                    await reader.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        # uvicorn re-raises the SIGTERM it handled once it has shut down: -15 after a graceful exit
        assert await asyncio.to_thread(process.wait, TIMEOUT) in (0, -signal.SIGTERM)
        stalled.transport.abort()  # the server is gone: no closing handshake to wait for
        answer = trickling.recv(65536).decode()  # the shutdown's answer: JSON, not a plain-text 500
        trickling.close()
        assert answer.startswith("HTTP/1.1 503") and '"detail":"the server is shutting down' in answer, answer
        assert "0.0 s of TMS_SHUTDOWN_TIMEOUT left for the requests in flight" in log.read_text(), log.read_text()
    finally:
        process.kill()
        process.wait(TIMEOUT)


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [["bot", "serve"], ["bot.rl_bot_system.server.training_metrics_server"]],
    ids=["bot serve", "the original design's module (its Docker CMD)"],
)
async def test_cli_serves_on_embedded_defaults(tmp_path: Path, command: list[str]) -> None:
    """`python -m bot serve`, and the original design's server module, start on SQLite in data/ with no
    other set-up."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["TRAINING_METRICS_PORT"] = str(port)
    process = subprocess.Popen(
        [sys.executable, "-m", *command],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as client:
            await wait_until_serving(client)
            await create_session(client, "cli")
        assert (tmp_path / "data" / "training_metrics.db").exists()
    finally:
        process.terminate()
        process.wait(TIMEOUT)


def test_cli_refuses_a_bad_setting_naming_it(tmp_path: Path) -> None:
    """A bad value stops start-up with exit code 2 and a message that names the key."""
    config = tmp_path / "bad.json"
    config.write_text('{"performance": {"max_connections_per_session": -5}}')
    result = subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--config", str(config)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 3,
    )
    assert result.returncode == 2
    assert "performance.max_connections_per_session" in result.stderr
    unsupported = subprocess.run(  # the original design's GAME_SERVER_URL: refused, saying it is not supported
        [sys.executable, "-m", "bot", "serve"],
        cwd=tmp_path,
        env={**os.environ, "GAME_SERVER_URL": "http://localhost:4000"},
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 3,
    )
    assert unsupported.returncode == 2 and "GAME_SERVER_URL" in unsupported.stderr
    assert "not supported" in unsupported.stderr


async def test_two_instances_share_one_stream(
    server_factory: Any, postgres_url: str, redis_url: str, spectators: Any
) -> None:
    """Two instances on one PostgreSQL and Redis: pushes to either reach a spectator of either, in order."""
    settings = Settings(database_url=postgres_url, redis_url=redis_url, ingest_processes=0)
    first, second = await server_factory(settings), await server_factory(settings)
    async with (
        httpx.AsyncClient(base_url=first.url, timeout=TIMEOUT) as a,
        httpx.AsyncClient(base_url=second.url, timeout=TIMEOUT) as b,
    ):
        session_id = await create_session(a, "shared")
        watchers = [await connect_and_sync(spectators, live.ws_url(session_id)) for live in (first, second)]
        results = await asyncio.gather(
            *(
                client.post(f"/api/training/sessions/{session_id}/metrics", json=[{"episode": i}] * 5)
                for i, client in enumerate([a, b] * 10)
            )
        )
        assert all(r.status_code == 200 for r in results)
    for ws in watchers:
        assert [m["seq"] for m in await recv_data(ws, 100)] == list(range(1, 101))


async def test_retention_deletes_sessions_that_ended_long_ago(server_factory: Any, db_path: Path) -> None:
    """With a retention set, the periodic cleanup removes ended sessions and keeps running ones."""
    settings = Settings(
        database_url=f"sqlite:///{db_path}",
        session_retention_seconds=0.2,
        cleanup_interval_seconds=0.1,
        ingest_processes=0,
    )
    live = await server_factory(settings)
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        ended, running = await create_session(client, "ended"), await create_session(client, "running")
        await client.put(f"/api/training/sessions/{ended}", json={"status": "completed"})
        await client.put(f"/api/training/sessions/{running}", json={"status": "running"})
        async with asyncio.timeout(TIMEOUT):
            while (await client.get(f"/api/training/sessions/{ended}")).status_code != 404:
                await asyncio.sleep(0.1)
        assert (await client.get(f"/api/training/sessions/{running}")).status_code == 200


def test_the_compose_file_runs_two_instances_migrated_once_behind_a_loopback_proxy() -> None:
    """docker compose cannot run here; what it would do is read off the file: migrations once before the
    servers, two servers sharing PostgreSQL and Redis, only the proxy published, and on 127.0.0.1."""
    yaml = pytest.importorskip("yaml")
    root = Path(__file__).resolve().parents[2]
    services = yaml.safe_load((root / "docker-compose.yml").read_text())["services"]
    assert services["migrate"]["command"] == ["bot", "db", "upgrade"]
    servers = [name for name in services if name.startswith("server-")]
    assert len(servers) == 2
    for name in servers:
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert services[name]["environment"]["REDIS_URL"].startswith("redis://")
        assert "TMS_AUTO_MIGRATE" not in services[name]["environment"]
        # the proxy's health checks name each instance: a Host the instance must answer
        assert name in services[name]["environment"]["TMS_ALLOWED_HOSTS"].split(",")
    published = {name: spec["ports"] for name, spec in services.items() if "ports" in spec}
    assert list(published) == ["proxy"] and all(port.startswith("127.0.0.1:") for port in published["proxy"])
    caddyfile = (root / "deploy" / "Caddyfile").read_text()
    assert all(f"{name}:8000" in caddyfile for name in servers) and "health_uri /health" in caddyfile
    dockerfile = (root / "Dockerfile").read_text()
    assert "\nUSER 10001" in dockerfile and "FROM python:3.11-slim" in dockerfile
    assert "TMS_ENABLE_AUTH=1" in dockerfile  # it listens on every interface of the container
    assert 'pip install ".[redis,postgres,train]"' in dockerfile  # jobs and the daemon run in the image (#26.16)
    assert "TMS_SPOOL_DIR=/app/data/spool" in dockerfile  # its user has no home for the SDK's default spool
    assert all("models:/app/models" in services[name]["volumes"] for name in servers)


@contextlib.asynccontextmanager
async def logged_server(
    tmp_path: Path, *options: str, access_log: bool = True
) -> AsyncIterator[tuple[httpx.AsyncClient, Path]]:
    """`bot serve` (access log on) in its own process, its output in a file: (a client of it, the file)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({"TRAINING_METRICS_PORT": str(port), "TMS_ACCESS_LOG": "1" if access_log else "0"})
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        command = [sys.executable, "-m", "bot", "serve", *options]
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as client:
                await wait_until_serving(client)
                yield client, log
        finally:
            process.terminate()
            process.wait(TIMEOUT)


@pytest.mark.slow  # a `bot serve` process of its own
async def test_no_room_password_reaches_the_log(tmp_path: Path) -> None:
    """A browser's WebSocket can only carry a room password in its URL: `bot serve` (access log on) prints
    the connection with the password masked, right or wrong."""
    async with logged_server(tmp_path) as (client, log):
        room = {"training_id": "secret-room", "room": {"password": "hunter2-hunter2"}}
        code = (await client.post("/api/training/sessions", json=room)).json()["room_code"]
        for password in ("hunter2-hunter2", "wrong-guess-1"):
            url = f"{client.base_url}".replace("http://", "ws://").rstrip("/") + f"/ws/{code}?password={password}"
            async with websockets.connect(url, open_timeout=TIMEOUT) as ws:
                await ws.recv()
    printed = log.read_text()
    assert "password=***" in printed and "hunter2" not in printed and "wrong-guess" not in printed


@pytest.mark.slow  # a `bot serve` process of its own
async def test_a_websocket_connection_is_an_access_log_line(tmp_path: Path) -> None:
    """Without the access log, a spectator's connection prints nothing (10,000 spectators were 10,000 lines,
    and a third of a reconnect storm's join), as an HTTP request prints nothing. Warnings still print (test_ws_fuzz)."""
    async with logged_server(tmp_path, access_log=False) as (client, log):
        session_id = (await client.post("/api/training/sessions", json={"name": "quiet"})).json()["session_id"]
        url = f"{client.base_url}".replace("http://", "ws://").rstrip("/") + f"/ws/{session_id}"
        async with websockets.connect(url, open_timeout=TIMEOUT) as ws:
            await ws.recv()
        async with websockets.connect(url + "?since=-1", open_timeout=TIMEOUT) as ws:  # refused: 4400
            await ws.recv()
    printed = log.read_text()
    assert "training metrics server started" in printed
    assert "WebSocket" not in printed and "connection open" not in printed and "POST" not in printed, printed


async def test_a_server_on_every_interface_without_auth_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from bot.server import create_app

    settings = Settings(host="0.0.0.0", database_url=f"sqlite:///{tmp_path / 'm.db'}", ingest_processes=0)
    app = create_app(settings)
    async with app.router.lifespan_context(app):  # started, never bound: no traffic beyond this process
        pass
    assert any("with no authentication" in r.getMessage() for r in caplog.records)


@pytest.mark.slow  # a `bot serve` process of its own
async def test_json_logs_are_one_object_per_line(tmp_path: Path) -> None:
    """`bot serve --log-format json`: every line parses, access lines carry method, path and status."""
    import orjson

    async with logged_server(tmp_path, "--log-format", "json", "--log-level", "info") as (client, log):
        await create_session(client, "logged")
    lines = [orjson.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    created = [line for line in lines if line.get("path") == "/api/training/sessions" and line["method"] == "POST"]
    assert created and created[0]["status"] == 201


@pytest.mark.slow  # a `bot serve` process of its own
async def test_pages_survive_the_package_being_uninstalled_under_the_server(tmp_path: Path) -> None:
    """The README's quick start in one environment: `pip install . && bot serve`, then `pip install -r
    requirements-dev.txt` reinstalls the package editable, deleting the copy the server runs from. The pages
    and their static files still answer 200 with the same bytes (and 304 to a browser's cached copy)."""
    installed = tmp_path / "site-packages"
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(Path(__file__).resolve().parents[2] / "bot", installed / "bot", ignore=ignore)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({"TRAINING_METRICS_PORT": str(port), "PYTHONPATH": str(installed)})
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    paths = ["/", "/sessions/quick-start", "/compare", "/static/charts.js", "/static/app.css"]
    paths.append("/static/vendor/uPlot.iife.min.js")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as client:
            await wait_until_serving(client)
            await create_session(client, "quick-start")
            # a body past INLINE_BYTES is read by the ingest worker: by the time pip is done, it has started
            body = [{"episode": e, "algorithm": "x" * 60} for e in range(500)]
            pushed = await client.post("/api/training/sessions/quick-start/metrics", json=body)
            assert pushed.status_code == 200, pushed.text
            before = {path: await client.get(path) for path in paths}
            assert all(response.status_code == 200 for response in before.values())
            assert b"uPlot" in before["/static/vendor/uPlot.iife.min.js"].content

            shutil.rmtree(installed / "bot")  # pip uninstalls the copy the server was started from

            for path, first in before.items():
                again = await client.get(path)
                assert again.status_code == 200, (path, again.text)
                assert again.content == first.content, path
                assert again.headers["content-type"] == first.headers["content-type"], path
                cached = await client.get(path, headers={"If-None-Match": first.headers["etag"]})
                assert cached.status_code == 304 and cached.content == b"", path
            assert (await client.get("/static/nothing.js")).status_code == 404
            pushed = await client.post("/api/training/sessions/quick-start/metrics", json=body)
            assert pushed.status_code == 200, pushed.text  # ingest, too, goes on
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=TIMEOUT)
    assert b"Traceback" not in stderr, stderr.decode()
