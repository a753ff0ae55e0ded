"""Where a training job's process runs: a child process of the server (the embedded default), or a Ray job on a
cluster through Ray's Job Submission API (`TMS_JOB_BACKEND=ray`, `TMS_RAY_ADDRESS`; `pip install .[ray]`).

Either way the job is `python -m bot.training.job ARGS`: it pushes its data into its session through the SDK
like any engine, and tells its supervisor (bot/server/training/jobs.py) what happens in `TMS-EVENT` lines on its
output. A backend hands the supervisor a `JobRun`: those lines, the exit status, a stop that lets the job save
its checkpoint, a kill, and its logs. Ray is imported only by its backend, only when it is chosen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import signal
import sys
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.server.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

JOB_MODULE = ["-m", "bot.training.job"]
EXIT_STOPPED = 130  # the job's exit status after a stop (bot/training/job.py)
LOG_TAIL_BYTES = 64 * 1024
# Environment variables a job's process never inherits: secrets, and what only the server talks to.
SECRET_NAME = re.compile(r"SECRET|PASSWORD|TOKEN|API_KEY|CREDENTIAL|DATABASE_URL|REDIS_URL", re.IGNORECASE)


def child_environment(api_key: str | None) -> dict[str, str]:
    """The server's environment for a job's process, less every secret; its own credential when auth is on."""
    env = {name: value for name, value in os.environ.items() if not SECRET_NAME.search(name)}
    env["PYTHONUNBUFFERED"] = "1"
    if api_key is not None:
        env["TMS_API_KEY"] = api_key
    return env


def exit_reason(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the training process was killed by {name} (exit status {code})"
    return f"the training process exited with status {code}"


def last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("TMS-EVENT ")]
    return lines[-1][:500] if lines else ""


class JobRun(ABC):
    """One started job, wherever it runs."""

    pid: int | None = None  # a child process's; None on a cluster

    @abstractmethod
    def lines(self) -> AsyncIterator[bytes]:
        """The job's output, a line at a time, until it ends."""

    @abstractmethod
    async def wait(self) -> int:
        """The exit status, once the job has ended: 0, EXIT_STOPPED after a stop, anything else a failure."""

    @abstractmethod
    def interrupt(self) -> None:
        """Ask the job to stop: it saves a checkpoint and exits EXIT_STOPPED."""

    @abstractmethod
    def kill(self) -> None:
        """End it now."""

    @property
    @abstractmethod
    def running(self) -> bool: ...

    @abstractmethod
    async def describe_exit(self, code: int) -> str:
        """Why the job failed, in one line: its exit and the last line it wrote."""


class JobBackend(ABC):
    name: str
    stop_answer_within: float  # seconds a stop waits for the job's checkpoint and exit before it answers

    @abstractmethod
    async def start(self, job_id: str, args: list[str], api_key: str | None, log: Path) -> JobRun:
        """Start `python -m bot.training.job ARGS` with this credential; raises OSError if it cannot."""

    @abstractmethod
    async def logs(self, job_id: str, log: Path) -> str | None:
        """The end of the job's output (at most LOG_TAIL_BYTES), None if there is none."""

    @abstractmethod
    async def abandon(self, job_id: str) -> None:
        """A job whose supervising server died: ended where it may still run."""


# -- a child process of the server ----------------------------------------------------------------


class ProcessRun(JobRun):
    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process, self.log, self.pid = process, log, process.pid

    async def lines(self) -> AsyncIterator[bytes]:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            yield line

    async def wait(self) -> int:
        return await self.process.wait()

    def interrupt(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGINT)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    async def describe_exit(self, code: int) -> str:
        why = exit_reason(code)
        line = last_line(await asyncio.to_thread(_tail, self.log)) if code > 0 else ""
        return f"{why}: {line}" if line else why


class ProcessBackend(JobBackend):
    """Jobs as child processes of this server: a job never outlives it (see bot/training/job.py)."""

    name = "process"
    stop_answer_within = 4.0  # SIGINT, the checkpoint, the last points handed over, the interpreter's exit

    async def start(self, job_id: str, args: list[str], api_key: str | None, log: Path) -> JobRun:
        command = [sys.executable, *JOB_MODULE, *args, "--parent-pid", str(os.getpid())]
        with log.open("ab") as stderr:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,  # a Ctrl-C at the server's terminal reaches the server, which stops jobs
                env=child_environment(api_key),
            )
        return ProcessRun(process, log)

    async def logs(self, job_id: str, log: Path) -> str | None:
        return await asyncio.to_thread(_tail, log) if log.is_file() else None

    async def abandon(self, job_id: str) -> None:
        """Nothing to do: the kernel stopped the child when its server died (PR_SET_PDEATHSIG)."""


def _tail(log: Path) -> str:
    """The end of a log file, read without reading the whole of it."""
    with contextlib.suppress(OSError), log.open("rb") as file:
        file.seek(max(0, file.seek(0, os.SEEK_END) - LOG_TAIL_BYTES))
        return file.read().decode(errors="replace")
    return ""


# -- a Ray cluster --------------------------------------------------------------------------------

RAY_ENDED = ("SUCCEEDED", "FAILED", "STOPPED")
RAY_POLL = 0.5  # seconds between two looks at a Ray job's status
RAY_LOG_DRAIN = 1.0  # seconds the log stream is read on after Ray says the job ended


class RayRun(JobRun):
    def __init__(self, backend: RayBackend, job_id: str) -> None:
        self.backend, self.job_id = backend, job_id
        self.status = "PENDING"
        self.stop_asked = False
        self._stopping: asyncio.Task[Any] | None = None

    async def lines(self) -> AsyncIterator[bytes]:
        """The job's log, a line at a time, until the log stream ends, or until RAY_LOG_DRAIN seconds after Ray
        says the job ended: the dashboard's stream can stay open well after that (seen: over 10 s). What the
        stream had not given by then (on a busy machine it lags seconds behind) is read from the whole log."""
        seen: list[str] = []  # the whole lines the stream gave, then what it gave of the next one
        async for streamed in self._streamed(seen):
            yield streamed
        rest = await self._unseen("".join(seen[:-1]))
        if rest is None:  # the whole log could not be read: the stream's last part line is all there is
            rest = seen[-1]
        for line in rest.splitlines(keepends=True):
            yield line.encode()

    async def _unseen(self, seen: str) -> str | None:
        """What the job's whole log holds after the text the stream gave; None if it cannot be read."""
        client = await self.backend.client()
        try:
            full: str = await asyncio.to_thread(client.get_job_logs, self.job_id)
        except Exception as exc:
            logger.warning("reading the log of Ray job %s failed: %r", self.job_id, exc, extra={"job_id": self.job_id})
            return None
        return full[len(seen) :] if full.startswith(seen) else None

    async def _streamed(self, seen: list[str]) -> AsyncIterator[bytes]:
        client = await self.backend.client()
        chunks: asyncio.Queue[str | None] = asyncio.Queue()

        async def tail() -> None:
            try:
                async for chunk in client.tail_job_logs(self.job_id):
                    chunks.put_nowait(chunk)
            except Exception as exc:  # the log stream broke: the job's status still tells how it ended
                why = "reading the logs of Ray job %s failed: %r"
                logger.warning(why, self.job_id, exc, extra={"job_id": self.job_id})
            finally:
                chunks.put_nowait(None)

        async def ended() -> None:
            await self.wait()
            await asyncio.sleep(RAY_LOG_DRAIN)
            chunks.put_nowait(None)

        tasks = [asyncio.create_task(tail()), asyncio.create_task(ended())]
        pending = ""
        try:
            while (chunk := await chunks.get()) is not None:
                pending += chunk
                *complete, pending = pending.split("\n")
                for line in complete:
                    seen.append(line + "\n")
                    yield line.encode() + b"\n"
        finally:
            await cancel_and_wait(tasks)
        seen.append(pending)  # a line without its newline yet: the whole log has the rest of it

    async def wait(self) -> int:
        client = await self.backend.client()
        while True:
            info = await asyncio.to_thread(client.get_job_info, self.job_id)
            self.status = str(getattr(info.status, "value", info.status))
            if self.status in RAY_ENDED:
                break
            await asyncio.sleep(RAY_POLL)
        if self.status == "SUCCEEDED":
            return 0
        if self.status == "STOPPED":
            return EXIT_STOPPED if self.stop_asked else -signal.SIGKILL
        code = int(info.driver_exit_code) if info.driver_exit_code is not None else 1
        # Ray runs the job through a shell, which reports a death by signal N as 128 + N.
        return -(code - 128) if 128 < code < 160 and code != EXIT_STOPPED else code

    def interrupt(self) -> None:
        """Ray's stop sends SIGTERM (the job saves its checkpoint and exits), and SIGKILL after
        RAY_JOB_STOP_WAIT_TIME_S (3 s by default) if it has not ended."""
        self.stop_asked = True
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self.backend.stop(self.job_id))

    def kill(self) -> None:
        self.interrupt()

    @property
    def running(self) -> bool:
        return self.status not in RAY_ENDED

    async def describe_exit(self, code: int) -> str:
        client = await self.backend.client()
        info = await asyncio.to_thread(client.get_job_info, self.job_id)
        why = f"{exit_reason(code)}; the Ray job {self.job_id} ended {self.status}"
        if code > 0:
            line = last_line(await self.backend.logs(self.job_id, Path()) or "") or last_line(info.message or "")
            why += f": {line}" if line else ""
        return why


class RayBackend(JobBackend):
    """Jobs on a Ray cluster through its Job Submission API: the submission id is the job's id, so any
    instance can stop, read or end it. The cluster's Python must have this package with the train extra."""

    name = "ray"
    stop_answer_within = 8.0  # Ray's stop, the job's SIGTERM, and its log stream's latency (about 1-3 s)

    def __init__(self, settings: Settings) -> None:
        self.address = settings.ray_address
        self.num_cpus, self.num_gpus = settings.ray_num_cpus, settings.ray_num_gpus
        self.python = settings.ray_python
        self._client: Any = None

    async def client(self) -> Any:
        if self._client is None:
            from ray.job_submission import JobSubmissionClient  # the `ray` extra, only when chosen

            self._client = await asyncio.to_thread(JobSubmissionClient, self.address)
        return self._client

    async def start(self, job_id: str, args: list[str], api_key: str | None, log: Path) -> JobRun:
        env = {"PYTHONUNBUFFERED": "1", **({"TMS_API_KEY": api_key} if api_key is not None else {})}
        try:
            client = await self.client()
            await asyncio.to_thread(
                client.submit_job,
                entrypoint=shlex.join([self.python, *JOB_MODULE, *args]),
                submission_id=job_id,
                runtime_env={"env_vars": env},
                entrypoint_num_cpus=self.num_cpus,
                entrypoint_num_gpus=self.num_gpus,
                metadata={"tms_job_id": job_id},
            )
        except Exception as exc:  # unreachable cluster, refused submission: the job could not start
            raise OSError(f"Ray at {self.address or 'the default address'}: {exc}") from exc
        return RayRun(self, job_id)

    async def stop(self, job_id: str) -> None:
        with contextlib.suppress(Exception):
            client = await self.client()
            await asyncio.to_thread(client.stop_job, job_id)

    async def abandon(self, job_id: str) -> None:
        await self.stop(job_id)

    async def logs(self, job_id: str, log: Path) -> str | None:
        try:
            client = await self.client()
            text: str = await asyncio.to_thread(client.get_job_logs, job_id)
        except Exception:
            return None
        return text[-LOG_TAIL_BYTES:]


def job_backend(settings: Settings) -> JobBackend:
    return RayBackend(settings) if settings.job_backend == "ray" else ProcessBackend()
