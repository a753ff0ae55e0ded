"""Helpers for benchmarks: a real server in its own process, so its CPU is not the client's."""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def workers_cpu_seconds(self) -> float:
        """The same for the server's child processes (the ingest worker and the resource tracker)."""
        return sum(cpu_seconds(int(child)) for child in self._children())

    def rss_kb(self, pid: int | None = None) -> int:
        for line in Path(f"/proc/{pid or self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def workers_rss_kb(self) -> int:
        """The server's child processes (the ingest worker and multiprocessing's resource tracker)."""
        return sum(self.rss_kb(int(child)) for child in self._children())

    def _children(self) -> list[str]:
        return Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()


@contextlib.contextmanager
def server_process(extra_env: dict[str, str] | None = None, database: Path | None = None) -> Iterator[Server]:
    """`bot serve` on a fresh SQLite file (or `database`); yields it; stops it after."""
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        path = database or Path(directory) / "bench.db"
        env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
        env.update({"DATABASE_URL": f"sqlite:///{path}", **(extra_env or {})})
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                time.sleep(0.1)
            else:
                raise RuntimeError("the server did not start within 30 s")
            yield Server(url, process.pid)
        finally:
            process.terminate()
            process.wait(10)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f}  p99 {percentile(values, 0.99):.2f}"
