"""The job's event lines (bot/training/job.py's `emit`) reach the supervisor whole: a stop signal that arrives
while one is written waits until its newline is out. CI once saw a progress line and the `stopped` line after
it run together (`print` writes the text and its newline in two calls under PYTHONUNBUFFERED), which failed a
stopped job."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
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
