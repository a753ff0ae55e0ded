"""The whole API with auth on, read off its own OpenAPI document: every operation but /health refuses a
missing credential, and schemathesis (its CLI, against the live server) finds no server error and no answer
outside the documented statuses, content types and schemas, with an admin, a read and a write key."""

from __future__ import annotations

import asyncio
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

# Operations that start processes (training jobs): exercised by tests/training, not fuzzed.
NOT_FUZZED = r"/api/training/(start|stop)|/api/training/daemon/run"


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


@pytest.mark.slow  # a few hundred generated requests per credential
@pytest.mark.skipif(shutil.which("schemathesis") is None, reason="schemathesis is a dev dependency")
@pytest.mark.parametrize("scopes", [["admin"], ["read"], ["write"]], ids=["admin", "read", "write"])
async def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    secured: LiveServer, db_path: Path, scopes: list[str]
) -> None:
    (key,) = keys(f"sqlite:///{db_path}", (scopes, None))
    checks = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
    command = [
        "schemathesis", "run", f"{secured.url}/openapi.json", "--checks", checks, "--max-examples", "5",
        "--header", f"Authorization: Bearer {key}", "--exclude-path-regex", NOT_FUZZED, "--seed", "1",
    ]  # fmt: skip
    result = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:]
