"""How long a training script takes to exit, and what of its last run is kept: the SDK's exit promise.

    python bench/sdk_exit.py [FLUSH_TIMEOUT]

A script logs a run and leaves its `with client.session(...)` block, then the interpreter exits. Printed:
the time from leaving the block to the block's end, from there to the process's end, and the sum, which
the README promises is at most flush_timeout (default 5 s). Two cases: the server down (a closed port),
and a real server up with 300 older spooled batches of 1000 points for it (another run's, still to be
uploaded); for the second, also how many of the new run's points, and its `completed`, were kept (delivered
or spooled).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import free_port, server_process
from bot.sdk import Spool

POINTS = 2000
OLDER = 300  # older spooled batches
OLDER_POINTS = 1000  # points in each


def run_script(url: str, spool: str, flush_timeout: float) -> tuple[float, float]:
    """(block exit, interpreter exit) in seconds, for a script that logs POINTS points then leaves."""
    script = textwrap.dedent(f"""
        import time
        from bot.sdk import MetricsClient
        client = MetricsClient({url!r}, spool_dir={spool!r}, flush_timeout={flush_timeout})
        with client.session(training_id="exit-run") as run:
            for episode in range({POINTS}):
                run.log_metrics(episode=episode, current_reward=0.5)
            leaving = time.monotonic()
        print(leaving, time.monotonic(), flush=True)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    ended = time.monotonic()  # CLOCK_MONOTONIC: the same clock in both processes
    if result.returncode != 0:
        raise RuntimeError(result.stderr)
    leaving, left = (float(value) for value in result.stdout.split())
    return left - leaving, ended - left


def report(label: str, block: float, interpreter: float, flush_timeout: float) -> None:
    total = block + interpreter
    verdict = "within" if total <= flush_timeout else "OVER"
    print(
        f"{label}: block exit {block:.2f} s, interpreter exit {interpreter:.2f} s, "
        f"total {total:.2f} s ({verdict} flush_timeout {flush_timeout:g} s)"
    )


def older_records() -> list[dict[str, object]]:
    return [
        {
            "kind": "data",
            "session_id": "older-run",
            "type": "training_metrics",
            "key": f"older-{batch}",
            "items": [{"episode": batch * OLDER_POINTS + i, "current_reward": 1.0} for i in range(OLDER_POINTS)],
            "session": {"name": "older"},
        }
        for batch in range(OLDER)
    ]


def kept(url: str, spool_dir: str) -> tuple[int, bool]:
    """The new run's points delivered or spooled (distinct episodes), and whether `completed` was kept."""
    episodes: set[int] = set()
    completed = False
    for _, record in Spool(spool_dir).oldest(url, 1_000_000):
        if record["session_id"] == "exit-run":
            episodes |= {item["episode"] for item in record.get("items", ())}
            completed |= record.get("update", {}).get("status") == "completed"
    with httpx.Client(base_url=url, timeout=30) as http:
        session = http.get("/api/training/sessions/exit-run")
        if session.status_code == 200:
            completed |= session.json()["status"] == "completed"
            cursor: str | None = None
            while True:
                params: dict[str, str | int] = {"type": "training_metrics", "limit": 10000}
                if cursor:
                    params["cursor"] = cursor
                page = http.get("/api/training/sessions/exit-run/history", params=params).json()
                episodes |= {message["data"]["episode"] for message in page["messages"]}
                if (cursor := page["next_cursor"]) is None:
                    break
    return len(episodes), completed


def main() -> None:
    flush_timeout = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    with tempfile.TemporaryDirectory() as spool:
        block, interpreter = run_script(f"http://127.0.0.1:{free_port()}", spool, flush_timeout)
        report("server down", block, interpreter, flush_timeout)
    with tempfile.TemporaryDirectory() as spool, server_process() as server:
        Spool(spool).append(older_records(), server.url)
        block, interpreter = run_script(server.url, spool, flush_timeout)
        report(f"server up, {OLDER} older spooled batches", block, interpreter, flush_timeout)
        points, completed = kept(server.url, spool)
        print(
            f"  the new run's points kept (delivered or spooled): {points} of {POINTS}; "
            f"`completed` kept: {'yes' if completed else 'NO'}"
        )


if __name__ == "__main__":
    main()
