"""A Ray job's output reaches its supervisor whole even when Ray's log stream lags: what the stream had not
given RAY_LOG_DRAIN seconds after the job ended is read from the job's whole log. CI once lost a job's
`completed` line this way (a busy machine), and the job was failed though it had succeeded. Ray itself is
outside this test: a stand-in client answers as Ray's JobSubmissionClient does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from bot.server.training import job_backends
from bot.server.training.job_backends import RayRun

LOG = 'start\nTMS-EVENT {"event": "progress", "episode": 1}\nTMS-EVENT {"event": "completed", "episodes": 1}\n'


class LaggingRay:
    """Ray's client, whose log stream has given only the first 30 characters when the job has ended."""

    def __init__(self, full: str | None) -> None:
        self.full = full

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        yield LOG[:30]
        await asyncio.Event().wait()  # the stream stays open, saying nothing more

    def get_job_info(self, job_id: str) -> Any:
        return SimpleNamespace(status="SUCCEEDED", driver_exit_code=0, message="")

    def get_job_logs(self, job_id: str) -> str:
        if self.full is None:
            raise ConnectionError("the dashboard is away")
        return self.full


async def lines_of(client: LaggingRay) -> list[bytes]:
    async def give() -> LaggingRay:
        return client

    run = RayRun(SimpleNamespace(client=give), "job-1")  # type: ignore[arg-type]
    return [line async for line in run.lines()]


@pytest.fixture(autouse=True)
def short_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_backends, "RAY_LOG_DRAIN", 0.05)


async def test_what_the_stream_had_not_given_is_read_from_the_whole_log() -> None:
    assert b"".join(await lines_of(LaggingRay(LOG))) == LOG.encode()
    assert (await lines_of(LaggingRay(LOG)))[-1].startswith(b'TMS-EVENT {"event": "completed"')


async def test_without_the_whole_log_the_stream_s_part_is_given() -> None:
    assert b"".join(await lines_of(LaggingRay(None))) == LOG[:30].encode()
