"""What the fault tests share: a server in its own process (to kill -9), history reads, recording spectators."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import websockets

from tests.conftest import TIMEOUT
from tests.reliability.checker import Ack, SpectatorLog


@dataclass
class ServerProcess:
    """`python -m bot serve` on a fixed port and database (a SQLite file, or a URL), so it can be killed and
    restarted; with a Redis URL, instances share one live stream."""

    database: Path | str
    port: int
    env: dict[str, str] = field(default_factory=dict)
    redis_url: str | None = None
    process: subprocess.Popen[bytes] | None = None
    _log: Any = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        url = self.database if isinstance(self.database, str) else f"sqlite:///{self.database}"
        env = {**os.environ, "DATABASE_URL": url, **self.env}
        env.pop("REDIS_URL", None)
        if self.redis_url is not None:
            env["REDIS_URL"] = self.redis_url
        self._close_log()
        log = tempfile.TemporaryFile()  # its log, to say why when it does not start (closed when it ends)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        self._log = log
        deadline = time.monotonic() + TIMEOUT * 3
        while time.monotonic() < deadline and self.process.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        log.seek(0)
        tail = log.read().decode(errors="replace")[-3000:]
        state = "did not answer in time" if self.process.poll() is None else f"exited with {self.process.returncode}"
        raise RuntimeError(f"server on port {self.port} {state}; its log ends:\n{tail}")

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(TIMEOUT)
        self._close_log()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(TIMEOUT)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def acks_recorder(acks: list[Ack]) -> Any:
    """An SDK on_delivered hook that keeps every acknowledged data batch."""

    def record(record: dict[str, Any], answer: Any) -> None:
        if record["kind"] == "data" and answer:
            acks.append(Ack(record["session_id"], record["key"], answer["first_seq"], answer["last_seq"]))

    return record


async def stored(url: str, session_id: str) -> list[dict[str, Any]]:
    """Every stored message of a session, in seq order."""
    messages: list[dict[str, Any]] = []
    cursor = None
    async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http:
        while True:
            params: dict[str, Any] = {"limit": 10000, **({"cursor": cursor} if cursor else {})}
            page = (await http.get(f"/api/training/sessions/{session_id}/history", params=params)).json()
            messages += page["messages"]
            if page["next_cursor"] is None:
                return messages
            cursor = page["next_cursor"]


class RecordingSpectator:
    """A spectator that logs what it receives for the checker and reconnects with since and epoch."""

    def __init__(self, url: str, session_id: str) -> None:
        self.session_id = session_id
        self.move(url)
        self.log = SpectatorLog(session_id)
        self.last = 0
        self.epoch: str | None = None
        self.ws: Any = None

    def move(self, url: str) -> None:
        """Reconnect to another instance from now on (as a load balancer would send it)."""
        self.ws_base = url.replace("http://", "ws://") + f"/ws/{self.session_id}"

    async def connect(self) -> None:
        query = f"?since={self.last}" + (f"&epoch={self.epoch}" if self.epoch else "")
        # max_queue=None: it reads all the time, as a browser does. With websockets' default (16 frames) a
        # spectator that closes with a replay unread stops reading, never sees the server's close behind the
        # replay, and waits out its close_timeout.
        self.ws = await websockets.connect(self.ws_base + query, open_timeout=TIMEOUT, compression=None, max_queue=None)
        self.log.connect(self.last)

    async def receive(self, count: int | None = None, until: int | None = None) -> None:
        """Read `count` stored-stream messages, or until seq `until` has arrived."""
        got = 0
        async with asyncio.timeout(TIMEOUT * 3):
            while (count is None or got < count) and (until is None or self.last < until):
                message = orjson.loads(await self.ws.recv())
                if message["type"] == "connection_status" and message["data"].get("epoch"):
                    self.epoch = self.epoch or message["data"]["epoch"]
                if message.get("seq") is not None:
                    self.log.receive(message["seq"])
                    self.last = max(self.last, message["seq"])
                    got += 1

    async def drop(self) -> None:
        """Lose the connection abruptly (no close handshake), as a network failure would."""
        self.ws.transport.abort()
        with contextlib.suppress(Exception):
            await self.ws.wait_closed()

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
