"""The job's event lines (bot/training/job.py's `emit`) reach the supervisor whole: a stop signal that arrives
while one is written waits until its newline is out. CI once saw a progress line and the `stopped` line after
it run together (`print` writes the text and its newline in two calls under PYTHONUNBUFFERED), which failed a
stopped job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from bot.training import job


class Stopped(Exception):
    pass


class SignallingStdout:
    """A stdout that records each write and, in its first, sends this process SIGTERM (the job's stop)."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        if len(self.writes) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return len(text)

    def flush(self) -> None:
        pass


@pytest.fixture
def sigterm_raises() -> Iterator[None]:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise Stopped

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_stop_during_an_event_waits_for_the_whole_line(sigterm_raises: None, monkeypatch: pytest.MonkeyPatch) -> None:
    stdout = SignallingStdout()
    monkeypatch.setattr("sys.stdout", stdout)
    with pytest.raises(Stopped):  # the stop is not lost: it is raised once the line is out
        job.emit("progress", episode=7, reward=1.5)
    written = "".join(stdout.writes)
    assert written.endswith("\n") and written.count("\n") == 1, stdout.writes
    assert written.startswith(job.EVENT_PREFIX)
    assert json.loads(written[len(job.EVENT_PREFIX) :]) == {"event": "progress", "episode": 7, "reward": 1.5}


def test_signals_are_delivered_again_after_an_event() -> None:
    job.emit("progress", episode=1)
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())


def test_a_stop_while_numpy_imports_is_a_stop_not_a_failure(tmp_path: Path) -> None:
    """A stop that arrives while the job imports its libraries waits until they are in: the job then stops
    as it does before training (`stopped`, exit 130). numpy turned a SIGINT inside its C core's import into an
    ImportError (exit 1), and CI recorded a stopped job `failed`. The SIGINT is sent from inside that import
    by the sitecustomize in stop_during_import/; the server is a closed port the job never reaches."""
    root = Path(__file__).parents[2]
    command = [sys.executable, "-m", "bot.training.job", "--scenario", "cartpole"]
    command += ["--scenario-file", str(root / "bot" / "training" / "scenarios" / "cartpole.yaml")]
    command += ["--episodes", "2", "--save-interval", "1", "--eval-episodes", "1", "--server", "http://127.0.0.1:9"]
    command += ["--session", "s", "--models-dir", str(tmp_path), "--job-id", "j"]
    path = os.pathsep.join([str(Path(__file__).parent / "stop_during_import"), str(root)])
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": path})
    assert done.returncode == job.EXIT_STOPPED, done.stderr
    events = [json.loads(line.removeprefix(job.EVENT_PREFIX)) for line in done.stdout.splitlines()]
    assert events == [{"event": "stopped", "episodes_completed": 0, "checkpoint": None}]
