"""A local Ray head of the test run's own (`ray start --head --block`), for the jobs' Ray backend.

Its ports are free ones, its temporary directory its own, and everything stays on 127.0.0.1 (Ray otherwise
advertises the machine's outward address; RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 keeps it on loopback). At the
end only its own processes are stopped, by id: its jobs first (through Ray, then any process whose environment
names this head's address), then those of the session `ray start` was started in.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.e2e.test_deploy import free_port

START_WITHIN = 90.0  # seconds: a head starts in about 5-10 s on a quiet machine


def session_members(session_id: int) -> list[int]:
    """The processes of a session (setsid) by id: a Ray head's raylet, GCS, dashboard and workers."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == session_id:
                    members.append(int(entry.name))
    return members


@contextlib.contextmanager
def ray_head() -> Iterator[str]:
    """Start a head; yield its Job Submission address (http://127.0.0.1:PORT); stop it and its processes."""
    temp = tempfile.mkdtemp(prefix="tms-ray-")  # short: Ray's socket paths live below it
    dashboard, gcs = free_port(), free_port()
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    command = ["ray", "start", "--head", "--block", "--temp-dir", temp, "--disable-usage-stats"]
    command += ["--port", str(gcs), "--ray-client-server-port", str(free_port())]
    command += ["--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard), "--include-dashboard", "true"]
    command += ["--num-cpus", "2", "--min-worker-port", "0", "--max-worker-port", "0"]
    log = open(Path(temp) / "head.log", "wb")
    head = subprocess.Popen(command, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        _wait_for(address, head, Path(temp) / "head.log")
        yield address
    finally:
        _stop_jobs(address)
        jobs = processes_with(f"RAY_ADDRESS=127.0.0.1:{gcs}".encode())  # its jobs run in sessions of their own
        head.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(15)
        for pid in {*session_members(head.pid), *jobs, *processes_with(f"RAY_ADDRESS=127.0.0.1:{gcs}".encode())}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(5)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


def processes_with(marker: bytes) -> list[int]:
    """Processes whose environment holds `marker` (a Ray job's processes carry their cluster's address)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
    return found


def _stop_jobs(address: str) -> None:
    """Ask Ray to stop every job still running (they save a checkpoint), and wait a little for them."""
    from ray.job_submission import JobSubmissionClient

    with contextlib.suppress(Exception):
        client = JobSubmissionClient(address)
        running = [job.submission_id for job in client.list_jobs() if str(job.status) in ("PENDING", "RUNNING")]
        for job_id in running:
            client.stop_job(job_id)
        deadline = time.monotonic() + 10
        while running and time.monotonic() < deadline:
            running = [j for j in running if str(client.get_job_status(j)) in ("PENDING", "RUNNING")]
            time.sleep(0.2)


def _wait_for(address: str, head: subprocess.Popen[bytes], log: Path) -> None:
    from ray.job_submission import JobSubmissionClient

    deadline = time.monotonic() + START_WITHIN
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise RuntimeError(f"ray start exited with {head.returncode}: {log.read_text(errors='replace')[-2000:]}")
        try:
            JobSubmissionClient(address).list_jobs()
            return
        except Exception:
            time.sleep(0.5)
    raise RuntimeError(f"the Ray head did not answer within {START_WITHIN} s")
