"""The whole API with auth on, read off its own OpenAPI document: every operation but /health refuses a
missing credential, and schemathesis (its CLI, against the live server, every default check) finds nothing,
with an admin, a read and a write key, a read key limited to one session, and with none."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings
from tests.conftest import TIMEOUT, LiveServer
from tests.e2e.test_auth import SECRET, keys

# Operations that start processes (training jobs; a PUT enabling the daemon schedules them at once):
# exercised by tests/training, not fuzzed.
NOT_FUZZED = r"/api/training/(start|stop)|/api/training/daemon/run"
NOT_FUZZED_OPERATION = "PUT /api/training/daemon/config"
HOOKS = Path(__file__).with_name("schemathesis_hooks.py")
CONFIG = Path(__file__).with_name("schemathesis.toml")  # 414 and 431 count as rejections; nothing else changed


@pytest.fixture
async def secured(server_factory: Any, settings: Settings, db_path: Path) -> LiveServer:
    """On SQLite only (db_path): what is checked here is the API's surface, the same on either backend."""
    update = {"enable_auth": True, "jwt_secret_key": SECRET, "database_url": f"sqlite:///{db_path}"}
    live: LiveServer = await server_factory(settings.model_copy(update=update))
    return live


async def test_every_operation_refuses_a_missing_credential(secured: LiveServer) -> None:
    async with httpx.AsyncClient(base_url=secured.url, timeout=TIMEOUT) as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
        answers = {}
        for path, operations in paths.items():
            for method in operations:
                url = re.sub(r"\{[^}]+\}", "x", path)
                answers[f"{method.upper()} {path}"] = (await client.request(method, url, json={})).status_code
    assert answers.pop("GET /health") == 200
    assert len(answers) > 20 and set(answers.values()) == {401}, answers


@pytest.mark.slow  # some two thousand generated requests per credential
@pytest.mark.skipif(shutil.which("schemathesis") is None, reason="schemathesis is a dev dependency")
@pytest.mark.parametrize(
    ("scopes", "session"),
    [(["admin"], None), (["read"], None), (["write"], None), ([], None), (["read"], "fuzzed")],
    ids=["admin", "read", "write", "none", "read-one-session"],
)
async def test_schemathesis_finds_nothing_with_every_default_check(
    secured: LiveServer, db_path: Path, scopes: list[str], session: str | None
) -> None:
    """All of schemathesis' default checks (no server error; statuses, content types, headers and bodies as
    documented; schema-valid requests taken and schema-violating ones refused; `Allow` on 405; no operation
    answering without the documented credential): with the admin key in its coverage, fuzzing and stateful
    phases, with the others in fuzzing and stateful."""
    command = [
        "schemathesis", "--config-file", str(CONFIG), "run", f"{secured.url}/openapi.json",
        # The admin key reaches every operation's every answer: 10 examples each, in every phase. The other
        # credentials are about who is refused, which a few fuzzed examples per operation and the stateful
        # phase show; the coverage phase's boundary values (its CPU, most of a run's) are the admin's.
        "--max-examples", "10" if scopes == ["admin"] else "4", "--seed", "1", "--generation-database", "none",
        "--exclude-path-regex", NOT_FUZZED, "--exclude-name", NOT_FUZZED_OPERATION,
        "--phases", "examples,coverage,fuzzing,stateful" if scopes == ["admin"] else "examples,fuzzing,stateful",
    ]  # fmt: skip
    if scopes:
        (key,) = keys(f"sqlite:///{db_path}", (scopes, session))
        command += ["--header", f"Authorization: Bearer {key}"]
    environment = {**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)}
    result = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=600, env=environment, cwd=db_path.parent
    )
    assert result.returncode == 0, result.stdout[-4000:]
    assert " passed" in result.stdout, result.stdout[-4000:]
