"""`bot train` and `bot demo` as users run them: real processes, a real server, a real spool."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings
from bot.sdk import Spool
from tests.conftest import LiveServer
from tests.e2e.test_deploy import free_port
from tests.sdk.test_client import history

pytestmark = pytest.mark.slow  # each starts Python, torch and gymnasium afresh


def bot(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


async def test_train_pushes_into_a_new_session_and_says_where(live: LiveServer, tmp_path: Path) -> None:
    """`bot train --server URL`: the session's history holds every episode's metrics in order, sampled
    decisions and the status changes, and the run said where to watch it."""
    args = ("train", "--env", "MockCache-v0", "-e", "12", "--seed", "2", "-o", str(tmp_path / "out"))
    done = await asyncio.to_thread(bot, *args, "--server", live.url, cwd=tmp_path, env={"TMS_SPOOL_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stderr.splitlines() if "live at" in line)
    session_id = line.split("'")[1]
    assert f"{live.url}/sessions/{session_id}" in line
    episodes = [m["data"]["episode"] for m in await history(live.url, session_id) if "current_reward" in m["data"]]
    assert episodes == list(range(1, 13))  # system samples (every 5 s) are messages too
    assert len(await history(live.url, session_id, "bot_decision")) >= 1  # sampled, at most one a second
    statuses = [m["data"] for m in await history(live.url, session_id, "training_status")]
    assert statuses[0]["status"] == "running" and statuses[-1]["status"] == "completed"
    assert not [s for s in statuses if "evaluat" in (s["message"] or "")], statuses  # evaluations: a graph only
    assert (tmp_path / "out" / "checkpoints" / "latest.pt").exists()
    session = await read_session(live.url, session_id)
    assert session["name"].startswith("dqn MockCache-v0 seed 2 · ") and session["total_episodes"] == 12, session
    config = session["metadata"]
    assert config["max_episodes"] == 12 and config["seed"] == 2 and config["env_id"] == "MockCache-v0", config
    assert config["learning_rate"] > 0 and "hidden_sizes" in config  # the whole configuration, defaults too


async def read_session(url: str, session_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.get(f"/api/training/sessions/{session_id}")
        assert response.status_code == 200, response.text
        session: dict[str, Any] = response.json()
        return session


async def test_ctrl_c_marks_the_run_stopped_on_the_server(live: LiveServer, tmp_path: Path) -> None:
    """Ctrl-C during `bot train --server`: the session ends `stopped`, said once, never `completed`."""
    out = tmp_path / "out"
    args = ["train", "--env", "MockCache-v0", "-e", "100000", "-o", str(out), "--server", live.url]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, cwd=tmp_path, env={**os.environ, "TMS_SPOOL_DIR": str(tmp_path)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(120):
        while not (out / "logs" / "training.log").exists():  # training has begun
            assert process.returncode is None
            await asyncio.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = await process.communicate()
    assert process.returncode == 130, stderr
    session_id = next(line for line in stderr.decode().splitlines() if "live at" in line).split("'")[1]
    session = await read_session(live.url, session_id)
    statuses = [m["data"]["status"] for m in await history(live.url, session_id, "training_status")]
    assert session["status"] == "stopped" and statuses.count("stopped") == 1 and "completed" not in statuses, statuses


async def test_training_finishes_with_the_server_down_and_the_spool_goes_later(
    server_factory: Any, settings: Settings, tmp_path: Path
) -> None:
    """With its server away, a run trains to the end all the same; `bot sync` delivers it once it is back."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ("train", "--env", "MockCache-v0", "-e", "8", "--seed", "2", "-o", str(tmp_path / "out"), "--server", url)
    done = await asyncio.to_thread(bot, *args, cwd=tmp_path, env={"TMS_SPOOL_DIR": str(tmp_path / "spool")})
    assert done.returncode == 0, done.stderr
    assert "'episodes': 8" in done.stdout and Spool(tmp_path / "spool").pending(url) > 0
    live = await server_factory(settings, port=port)
    synced = await asyncio.to_thread(bot, "sync", str(tmp_path / "spool"), cwd=tmp_path)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    session_id = next(line for line in done.stderr.splitlines() if "live at" in line).split("'")[1]
    episodes = [m["data"]["episode"] for m in await history(live.url, session_id) if "current_reward" in m["data"]]
    assert episodes == list(range(1, 9))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--env", "NoSuchEnv-v0"), "unknown environment 'NoSuchEnv-v0'"),
        (("--config", "bad.yaml"), "learning_rat"),
        (("--resume", "missing.pt"), "checkpoint 'missing.pt' does not exist"),
        (("--eval-only",), "--eval-only needs --checkpoint"),
        (("--episodes", "0"), "max_episodes must be > 0"),
        (("--resume", "garbage.pt"), "checkpoint 'garbage.pt' is corrupt or truncated"),
        (("--eval-only", "--checkpoint", "foreign.pt"), "checkpoint 'foreign.pt' is not a checkpoint of this trainer"),
        (("--resume", "hostile.pt"), "checkpoint 'hostile.pt' holds Python objects"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    """An unknown environment, a bad setting, a missing, corrupt or foreign checkpoint (as the README promises):
    one line naming it, exit code 2, no files; a hostile pickle is refused unread."""
    import torch

    (tmp_path / "bad.yaml").write_text("learning_rat: 0.1\n")
    (tmp_path / "garbage.pt").write_bytes(b"PK\x03\x04 half a zip file")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    torch.save({"agent": Hostile()}, tmp_path / "hostile.pt")
    done = bot("train", *args, "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2 and needle in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and not (tmp_path / "pwned").exists()


class Hostile:
    """A pickle that would run a command when loaded unsafely."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, ("touch pwned",))


SMALL = "env_id: MockCache-v0\nhidden_sizes: [16]\neval_frequency: 2\neval_episodes: 2\ncheckpoint_frequency: 2\n"


def test_resume_and_eval_only_take_the_checkpoints_configuration(tmp_path: Path) -> None:
    """The design's command lines as written there (`bot train` for its `python scripts/train.py`): after a run
    made with `-c small.yaml` (MockCache-v0, a 16-unit network), `--resume .../latest.pt --episodes N` and
    `--eval-only --checkpoint .../best.pt` need no `-c`: the configuration comes from the checkpoint. A
    checkpoint for another network is one line and exit code 2."""
    (tmp_path / "small.yaml").write_text(SMALL)
    first = bot("train", "-c", "small.yaml", "--episodes", "4", "--output", "results/run1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr

    resumed = bot("train", "--resume", "results/run1/checkpoints/latest.pt", "--episodes", "6", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "'episodes': 6" in resumed.stdout
    history = json.loads((tmp_path / "runs" / "latest" / "metrics.json").read_text())["history"]
    assert len(history["reward"]) == 6 and history["length"] == [50] * 6  # MockCache-v0's episodes, all six

    evaluated = bot("train", "--eval-only", "--checkpoint", "results/run1/checkpoints/best.pt", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "greedy evaluation over 2 episodes" in evaluated.stdout

    other = bot("train", "--resume", "results/run1/checkpoints/latest.pt", "--env", "CartPole-v1", cwd=tmp_path)
    assert other.returncode == 2 and len(other.stderr.strip().splitlines()) == 1
    assert "holds another network (60 inputs, hidden [16], 7 actions)" in other.stderr
    assert "(4 inputs, hidden [16], 2 actions)" in other.stderr


def test_demo_serves_trains_and_says_where_to_watch(tmp_path: Path) -> None:
    """`bot demo`: a server on its defaults, a short CartPole run pushed into it, and the URLs to open."""
    port = str(free_port())
    done = bot("demo", "--port", port, "--episodes", "3", "--no-keep-serving", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"http://127.0.0.1:{port}/" in done.stdout and "the run is at" in done.stdout
    assert (tmp_path / "data" / "training_metrics.db").exists()


def test_wandb_gets_every_episode_when_installed(tmp_path: Path) -> None:
    """`--wandb` logs each episode to Weights & Biases, offline unless WANDB_MODE says otherwise. W&B is an
    outside service: a stand-in `wandb` module (first on the path) records what it is given."""
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "wandb.py").write_text(
        "import json, os\n"
        "class Run:\n"
        "    def log(self, data):\n"
        "        open(os.environ['FAKE_WANDB'], 'a').write(json.dumps(data) + '\\n')\n"
        "    def finish(self):\n"
        "        open(os.environ['FAKE_WANDB'], 'a').write('finished\\n')\n"
        "def init(project, config, mode, dir):\n"
        "    open(os.environ['FAKE_WANDB'], 'a').write(f'init {project} {mode}\\n')\n"
        "    return Run()\n"
    )
    record = tmp_path / "wandb.log"
    env = {"PYTHONPATH": f"{fake}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "FAKE_WANDB": str(record)}
    done = bot(
        "train", "--env", "MockCache-v0", "-e", "4", "--wandb", "-o", str(tmp_path / "out"), cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr
    lines = record.read_text().splitlines()
    assert lines[0] == "init training-metrics offline" and lines[-1] == "finished"
    assert [json.loads(line)["episode"] for line in lines[1:-1]] == [1, 2, 3, 4]


def test_ctrl_c_leaves_an_emergency_checkpoint_to_resume_from(tmp_path: Path) -> None:
    """Ctrl-C during `bot train`: an emergency checkpoint, a line saying how to resume, exit code 130."""
    import signal
    import time

    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "train", "--env", "MockCache-v0", "-e", "100000", "-o", str(out)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (out / "logs" / "training.log").exists():  # training has begun
        assert process.poll() is None and time.monotonic() < deadline, process.stderr and process.stderr.read()
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=120)
    assert process.returncode == 130 and "--resume" in stdout
    assert (out / "checkpoints" / "emergency.pt").exists()


def test_sigterm_leaves_an_emergency_checkpoint_to_resume_from(tmp_path: Path) -> None:
    """SIGTERM (a service manager's or `docker stop`'s) during `bot train`: as Ctrl-C, an emergency checkpoint
    (latest.pt too) and a line saying how to resume; exit code 143 (128 + SIGTERM)."""
    import signal
    import time

    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "train", "--env", "MockCache-v0", "-e", "100000", "-o", str(out)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (out / "logs" / "training.log").exists():  # training has begun
        assert process.poll() is None and time.monotonic() < deadline, process.stderr and process.stderr.read()
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=120)
    assert process.returncode == 143 and f"--resume {out / 'checkpoints' / 'emergency.pt'}" in stdout
    emergency = json.loads((out / "checkpoints" / "emergency.json").read_text())
    assert json.loads((out / "checkpoints" / "latest.json").read_text())["episode"] == emergency["episode"]


def test_wandb_offline_with_the_real_package(tmp_path: Path) -> None:
    """`--wandb` with the real `wandb` package (the `wandb` extra), offline as W&B's service cannot be reached
    from here: the run's records are in an offline run under the output folder, for `wandb sync` later."""
    pytest.importorskip("wandb")
    args = ("train", "--env", "MockCache-v0", "-e", "2", "--eval-episodes", "1", "--wandb", "-o", "out")
    done = bot(*args, cwd=tmp_path, env={"WANDB_MODE": "offline"})
    assert done.returncode == 0, done.stderr
    (record,) = (tmp_path / "out" / "wandb").glob("offline-run-*/run-*.wandb")
    assert b"epsilon" in record.read_bytes() and b"training-metrics" in record.read_bytes()
