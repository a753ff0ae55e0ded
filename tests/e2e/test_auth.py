"""Access control with `enable_auth` on, over real sockets: API keys and JWTs, scopes and sessions, over
HTTP and the WebSocket; a revoked key and an expired token stop working, even for a spectator already in;
a corpus of bad tokens is refused everywhere."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
import websockets

from bot.config import Settings
from bot.store.engine import create_engines
from bot.store.keys import create_key, revoke_key
from bot.store.schema import prepare_schema
from tests.conftest import TIMEOUT, LiveServer, recv_data
from tests.e2e.test_deploy import free_port, wait_until_serving

SECRET = "a-test-secret-that-is-long-enough-for-hs256-0123456789"
AUDIENCE = "training-metrics-server"
BASE = "/api/training/sessions"


def keys(database_url: str, *specs: tuple[list[str], str | None]) -> list[str]:
    """Keys made as `bot keys create` makes them (straight in the store)."""
    writer, reader = create_engines(database_url)
    try:
        prepare_schema(writer)
        with writer.begin() as conn:
            return [create_key(conn, scopes, session, None)[1] for scopes, session in specs]
    finally:
        writer.dispose()
        reader.dispose()


def revoke(database_url: str, key: str) -> None:
    from bot.store.keys import find_key

    writer, reader = create_engines(database_url)
    try:
        with writer.begin() as conn:
            assert revoke_key(conn, find_key(conn, key).key_id)
    finally:
        writer.dispose()
        reader.dispose()


def token(**claims: Any) -> str:
    body = {"sub": "tester", "aud": AUDIENCE, "exp": time.time() + 300, "scope": "read"} | claims
    return jwt.encode({k: v for k, v in body.items() if v is not None}, SECRET, algorithm="HS256")


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


@pytest.fixture
async def secured(server_factory: Any, settings: Settings) -> LiveServer:
    live: LiveServer = await server_factory(settings.model_copy(update={"enable_auth": True, "jwt_secret_key": SECRET}))
    return live


async def test_scopes_and_sessions_over_http(secured: LiveServer, settings: Settings) -> None:
    admin, writer, reader, one = keys(
        settings.database_url, (["admin"], None), (["write"], None), (["read"], None), (["write"], "mine")
    )
    async with httpx.AsyncClient(base_url=secured.url, timeout=TIMEOUT) as client:
        assert (await client.get("/health")).status_code == 200  # open: it reveals nothing
        refused = await client.get(BASE)
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert "credentials" in refused.json()["detail"]

        assert (await client.post(BASE, json={"training_id": "run"}, headers=bearer(reader))).status_code == 403
        assert (await client.post(BASE, json={"training_id": "run"}, headers=bearer(writer))).status_code == 201
        push = f"{BASE}/run/metrics"
        assert (await client.post(push, json={"episode": 1}, headers=bearer(writer))).status_code == 200
        assert (await client.post(push, json={"episode": 2}, headers=bearer(reader))).status_code == 403
        assert (await client.post(push, json={"episode": 3})).status_code == 401
        assert (await client.get(f"{BASE}/run/history", headers=bearer(reader))).status_code == 200
        assert (await client.get(f"{BASE}/run/history", headers=bearer(writer))).status_code == 403

        # a key limited to one session: it creates and feeds that one only
        assert (await client.post(BASE, json={"training_id": "other"}, headers=bearer(one))).status_code == 403
        assert (await client.post(BASE, json={"training_id": "mine"}, headers=bearer(one))).status_code == 201
        assert (await client.post(f"{BASE}/mine/metrics", json={"episode": 1}, headers=bearer(one))).status_code == 200
        assert (await client.post(push, json={"episode": 4}, headers=bearer(one))).status_code == 403

        assert (await client.delete(f"{BASE}/run", headers=bearer(writer))).status_code == 403
        assert (await client.get("/metrics", headers=bearer(reader))).status_code == 403
        assert (await client.get("/metrics", headers=bearer(admin))).status_code == 200
        history = (await client.get(f"{BASE}/run/history", headers=bearer(admin))).json()
        assert [m["data"]["episode"] for m in history["messages"]] == [1]  # nothing refused was stored
        assert (await client.delete(f"{BASE}/run", headers=bearer(admin))).status_code == 200


async def test_a_writer_without_read_learns_nothing_from_a_change(secured: LiveServer, settings: Settings) -> None:
    """A key with `write` and not `read` (a job's, limited to its session, or a whole-server writer) changes a
    session, and its answer shows only what names it: its details stay behind `read`."""
    writer, one, both = keys(settings.database_url, (["write"], None), (["write"], "mine"), (["read", "write"], None))
    async with httpx.AsyncClient(base_url=secured.url, timeout=TIMEOUT) as client:
        created = await client.post(BASE, json={"training_id": "mine", "metadata": {"lr": 0.1}}, headers=bearer(one))
        assert created.status_code == 201
        for key in (writer, one):
            answer = await client.put(f"{BASE}/mine", json={"status": "running"}, headers=bearer(key))
            assert answer.status_code == 200, answer.text
            shown = answer.json()
            assert shown["session_id"] == "mine" and shown["status"] == "running", shown
            assert shown["metadata"] is None and shown["last_seq"] is None and shown["epoch"] is None, shown
        full = (await client.put(f"{BASE}/mine", json={"tags": ["a"]}, headers=bearer(both))).json()
        assert full["metadata"] == {"lr": 0.1} and full["tags"] == ["a"] and full["epoch"]


async def test_a_revoked_key_stops_working_even_for_a_spectator_already_in(
    secured: LiveServer, settings: Settings
) -> None:
    admin, reader = keys(settings.database_url, (["admin"], None), (["read"], None))
    async with httpx.AsyncClient(base_url=secured.url, timeout=TIMEOUT, headers=bearer(admin)) as client:
        await client.post(BASE, json={"training_id": "watched"})
        ws = await websockets.connect(secured.ws_url("watched"), additional_headers=bearer(reader))
        assert orjson.loads(await ws.recv())["type"] == "connection_status"
        revoke(settings.database_url, reader)
        async with asyncio.timeout(3 * TIMEOUT):
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        await asyncio.sleep(2.5)  # past the key cache
        assert (await client.get(BASE, headers=bearer(reader))).status_code == 401


async def test_the_websocket_takes_credentials_in_a_header_or_its_first_message(
    secured: LiveServer, settings: Settings
) -> None:
    (admin,) = keys(settings.database_url, (["admin"], None))
    async with httpx.AsyncClient(base_url=secured.url, timeout=TIMEOUT, headers=bearer(admin)) as client:
        await client.post(BASE, json={"training_id": "live"})
        await client.post(BASE, json={"training_id": "elsewhere"})
        by_message = await websockets.connect(secured.ws_url("live"))
        await by_message.send(orjson.dumps({"type": "auth", "token": token(scope="read")}).decode())
        assert orjson.loads(await by_message.recv())["type"] == "connection_status"
        await client.post(f"{BASE}/live/metrics", json={"episode": 7})
        assert (await recv_data(by_message, 1))[0]["data"]["episode"] == 7
        await by_message.close()

        refusals = {
            "nothing": (None, None),
            "a bad message": (None, {"type": "ping"}),
            "a token for another session": (bearer(token(session="elsewhere")), None),
            "a write-only token": (bearer(token(scope="write")), None),
        }
        codes = {}
        for name, (headers, first) in refusals.items():
            async with websockets.connect(secured.ws_url("live"), additional_headers=headers) as ws:
                if first is not None:
                    await ws.send(orjson.dumps(first).decode())
                error = orjson.loads(await ws.recv())
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
                codes[name] = (error["data"]["code"], closed.value.rcvd.code if closed.value.rcvd else None)
    assert codes == {
        "nothing": ("unauthorized", 4401),
        "a bad message": ("unauthorized", 4401),
        "a token for another session": ("forbidden", 4403),
        "a write-only token": ("forbidden", 4403),
    }


async def test_without_credentials_the_websocket_says_nothing_of_which_sessions_exist(
    secured: LiveServer, settings: Settings
) -> None:
    """Issue #25.10: a missing session was 4404 at once and an existing one 4401 after the auth wait, so anyone
    could list sessions. Credentials are checked before any lookup: without good ones, the same refusal
    whether the session exists or not (a room password alone included); with them, 4404 as before."""
    admin, reader = keys(settings.database_url, (["admin"], None), (["read"], None))
    async with httpx.AsyncClient(base_url=secured.url, timeout=TIMEOUT, headers=bearer(admin)) as client:
        await client.post(BASE, json={"training_id": "exists"})

    async def refusal(session_id: str, headers: dict[str, str] | None, first: dict[str, Any] | None) -> Any:
        async with websockets.connect(secured.ws_url(session_id), additional_headers=headers) as ws:
            if first is not None:
                await ws.send(orjson.dumps(first).decode())
            error = orjson.loads(await ws.recv())["data"]
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        return error["code"], error["message"], closed.value.rcvd.code if closed.value.rcvd else None

    attempts = {
        "a bad first message": (None, {"type": "ping"}),
        "a made-up key": (bearer("made-up"), None),
        "a room password alone": (None, {"type": "auth", "password": "a guess at a room"}),
    }
    for name, (headers, first) in attempts.items():
        answers = {session_id: await refusal(session_id, headers, first) for session_id in ("exists", "missing")}
        assert answers["exists"] == answers["missing"] and answers["missing"][2] == 4401, (name, answers)
    found = await refusal("missing", bearer(reader), None)
    assert found[0] == "session_not_found" and found[2] == 4404


async def test_a_client_that_leaves_during_the_auth_wait_is_no_server_error(
    secured: LiveServer, settings: Settings
) -> None:
    """It used to log `Exception in ASGI application` with a traceback: nothing is wrong with the server."""
    (admin,) = keys(settings.database_url, (["admin"], None))
    async with httpx.AsyncClient(base_url=secured.url, timeout=TIMEOUT, headers=bearer(admin)) as client:
        await client.post(BASE, json={"training_id": "watched"})
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    loggers = [logging.getLogger(name) for name in ("uvicorn.error", "bot")]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        for _ in range(3):
            ws = await websockets.connect(secured.ws_url("watched"), open_timeout=TIMEOUT)
            await ws.close()
        token_ws = await websockets.connect(secured.ws_url("watched"), open_timeout=TIMEOUT)
        await token_ws.send(orjson.dumps({"type": "ping"}).decode())  # a full exchange after the three left
        assert orjson.loads(await token_ws.recv())["data"]["code"] == "unauthorized"
        await token_ws.close()
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
    assert [r.getMessage() for r in records] == []


async def test_an_expired_token_closes_its_spectator(secured: LiveServer, settings: Settings) -> None:
    (admin,) = keys(settings.database_url, (["admin"], None))
    async with httpx.AsyncClient(base_url=secured.url, timeout=TIMEOUT, headers=bearer(admin)) as client:
        await client.post(BASE, json={"training_id": "brief"})
    ws = await websockets.connect(secured.ws_url("brief"), additional_headers=bearer(token(exp=time.time() + 1.5)))
    assert orjson.loads(await ws.recv())["type"] == "connection_status"
    async with asyncio.timeout(3 * TIMEOUT):
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401 and "expired" in closed.value.rcvd.reason


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return ".".join([part(orjson.dumps(header)), part(orjson.dumps(claims)), part(signature)])


def _hs256_with(key: bytes) -> str:
    """The classic key-confusion token, signed by hand (PyJWT refuses to sign with a PEM as HMAC key)."""
    claims = {"sub": "x", "aud": AUDIENCE, "exp": time.time() + 300, "scope": "admin"}
    unsigned = _unsigned({"alg": "HS256", "typ": "JWT"}, claims).rsplit(".", 1)[0]
    signature = hmac.new(key, unsigned.encode(), hashlib.sha256).digest()
    return unsigned + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


BAD_TOKENS = {
    "alg none": lambda: _unsigned(
        {"alg": "none", "typ": "JWT"}, {"sub": "x", "aud": AUDIENCE, "exp": time.time() + 300, "scope": "admin"}
    ),
    "HS256 signed with a public key's bytes": lambda: _hs256_with(
        b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n"
    ),
    "no exp": lambda: token(exp=None),
    "expired": lambda: token(exp=time.time() - 10),
    "not yet valid (nbf)": lambda: token(nbf=time.time() + 3600),
    "wrong aud": lambda: token(aud="another-service"),
    "bad signature": lambda: token()[:-4] + "AAAA",
    "truncated": lambda: token()[:40] + "." + "x.y",
    "no sub": lambda: token(sub=None),
    "empty sub": lambda: token(sub=""),
    "scope not a string": lambda: token(scope=["admin"]),
}


@pytest.mark.parametrize("name", list(BAD_TOKENS))
async def test_bad_tokens_are_refused_over_http_and_websocket(
    secured: LiveServer, settings: Settings, name: str
) -> None:
    bad = BAD_TOKENS[name]()
    (admin,) = keys(settings.database_url, (["admin"], None))
    async with httpx.AsyncClient(base_url=secured.url, timeout=TIMEOUT) as client:
        await client.post(BASE, json={"training_id": "target"}, headers=bearer(admin))
        assert (await client.get(f"{BASE}/target/history", headers=bearer(bad))).status_code == 401
        pushed = await client.post(f"{BASE}/target/metrics", json={"episode": 1}, headers=bearer(bad))
        assert pushed.status_code == 401
    async with websockets.connect(secured.ws_url("target"), additional_headers=bearer(bad)) as ws:
        assert orjson.loads(await ws.recv())["data"]["code"] == "unauthorized"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_a_room_password_opens_that_room_and_nothing_else(secured: LiveServer, settings: Settings) -> None:
    (admin,) = keys(settings.database_url, (["admin"], None))
    async with httpx.AsyncClient(base_url=secured.url, timeout=TIMEOUT) as client:
        room = {"training_id": "room", "room": {"password": "open sesame"}}
        code = (await client.post(BASE, json=room, headers=bearer(admin))).json()["room_code"]
        await client.post(BASE, json={"training_id": "plain"}, headers=bearer(admin))
        password = {"X-Room-Password": "open sesame"}
        assert (await client.get(f"{BASE}/room/history", headers=password)).status_code == 200
        assert (await client.get(f"{BASE}/plain/history", headers=password)).status_code == 401
        assert (await client.post(f"{BASE}/room/metrics", json={"episode": 1}, headers=password)).status_code == 401
    async with websockets.connect(secured.ws_url(code)) as ws:  # the password in the first message
        await ws.send(orjson.dumps({"type": "auth", "password": "open sesame"}).decode())
        assert orjson.loads(await ws.recv())["type"] == "connection_status"


async def test_socketio_clients_need_a_read_credential(secured: LiveServer, settings: Settings) -> None:
    import socketio

    (reader,) = keys(settings.database_url, (["read"], None))
    refused = socketio.AsyncClient()
    with pytest.raises(socketio.exceptions.ConnectionError):
        await refused.connect(secured.url, socketio_path="/socket.io", wait_timeout=TIMEOUT)
    client = socketio.AsyncClient()
    welcomed = asyncio.Event()
    client.on("connection_established", lambda data: welcomed.set())
    await client.connect(secured.url, socketio_path="/socket.io", auth={"token": reader}, wait_timeout=TIMEOUT)
    try:
        async with asyncio.timeout(TIMEOUT):
            await welcomed.wait()
    finally:
        await client.disconnect()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


@pytest.mark.slow  # a `bot serve` of its own, and 90 MB of made-up keys sent to it
async def test_made_up_api_keys_cost_the_server_no_memory(tmp_path: Path) -> None:
    """Issue #25.7: every key tried was kept in memory, a made-up one too (9,990 made-up 60 KB keys took the
    server from 112 MB to 715 MB, kept). 3,000 of 30 KB now leave its memory where it was; a real key still
    opens the door."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update({"TRAINING_METRICS_PORT": str(port), "TMS_ENABLE_AUTH": "1"})
    command = [sys.executable, "-m", "bot", "serve"]
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as client:
            await wait_until_serving(client)

            async def guess(count: int) -> None:
                for _ in range(count):
                    made_up = "tms_" + secrets.token_urlsafe(22_500)  # 30 KB, well under max_header_bytes
                    assert (await client.get(BASE, headers=bearer(made_up))).status_code == 401

            await asyncio.gather(*(guess(50) for _ in range(4)))  # the allocator settles
            before = rss_mb(process.pid)
            await asyncio.gather(*(guess(750) for _ in range(4)))
            grown = rss_mb(process.pid) - before
            (admin,) = keys(f"sqlite:///{tmp_path / 'data' / 'training_metrics.db'}", (["admin"], None))
            assert (await client.get(BASE, headers=bearer(admin))).status_code == 200
    except Exception:
        print((tmp_path / "serve.log").read_text()[-3000:])
        raise
    finally:
        process.terminate()
        process.wait(TIMEOUT)
        log.close()
    assert grown < 30, f"3,000 made-up keys grew the server by {grown:.0f} MB"
