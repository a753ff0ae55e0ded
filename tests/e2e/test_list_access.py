"""What the list routes show, over real sockets: a credential limited to one session lists that session and
its jobs only, and the routes about the whole server (the daemon, starting and stopping jobs) refuse it; a
password-protected room is listed by id, name, status and times only, with auth off or on, whoever asks.

Job rows are made straight in the store, as `POST /api/training/start` makes them (tests/e2e/
test_socketio_access.py), so no test here waits for a training process."""

from __future__ import annotations

from functools import partial
from typing import Any

import httpx
import pytest

from bot.config import Settings
from tests.conftest import TIMEOUT, LiveServer, connect_and_sync
from tests.e2e.test_auth import SECRET, bearer, keys, token
from tests.e2e.test_socketio_access import jobs_in_store

BASE = "/api/training/sessions"
DAEMON_READS = [
    "/api/training/daemon/config",
    "/api/training/daemon/status",
    "/api/training/summary",
    "/api/v1/rl-v3/dashboard/training-summary",
]


@pytest.fixture
async def secured(server_factory: Any, settings: Settings) -> LiveServer:
    live: LiveServer = await server_factory(settings.model_copy(update={"enable_auth": True, "jwt_secret_key": SECRET}))
    return live


@pytest.mark.parametrize("credential", ["key", "token"])
async def test_a_session_limited_credential_lists_only_its_session_and_its_jobs(
    secured: LiveServer, settings: Settings, spectators: Any, credential: str
) -> None:
    """Sessions, jobs, the latest job (`/api/training/status`) and spectators per session (`/status`) are its
    session's only; another session's job is a 403 naming its session; the daemon's routes are refused."""
    admin, reader = keys(settings.database_url, (["admin"], None), (["read"], None))
    if credential == "key":
        limited, idle = keys(settings.database_url, (["read"], "mine"), (["read"], "idle"))
    else:
        limited, idle = token(session="mine"), token(session="idle")
    async with httpx.AsyncClient(base_url=secured.url, timeout=TIMEOUT, headers=bearer(admin)) as client:
        for session_id in ("mine", "theirs", "idle"):
            assert (await client.post(BASE, json={"training_id": session_id})).status_code == 201
        mine, theirs = jobs_in_store(settings.database_url, "mine", "theirs")  # theirs is the latest
        for session_id in ("mine", "theirs"):
            await connect_and_sync(partial(spectators, additional_headers=bearer(admin)), secured.ws_url(session_id))

        as_limited = bearer(limited)
        listed = (await client.get(BASE, params={"status": "all"}, headers=as_limited)).json()
        assert [s["session_id"] for s in listed["sessions"]] == ["mine"] and listed["total"] == 1
        everyone = (await client.get(BASE, params={"status": "all"}, headers=bearer(reader))).json()
        assert everyone["total"] == 3

        jobs = (await client.get("/api/training/jobs", headers=as_limited)).json()["jobs"]
        assert [job["job_id"] for job in jobs] == [mine["job_id"]]
        assert len((await client.get("/api/training/jobs", headers=bearer(reader))).json()["jobs"]) == 2
        assert (await client.get(f"/api/training/jobs/{mine['job_id']}", headers=as_limited)).status_code == 200
        for path in (f"/api/training/jobs/{theirs['job_id']}", f"/api/training/jobs/{theirs['job_id']}/logs"):
            refused = await client.get(path, headers=as_limited)
            assert refused.status_code == 403 and "limited to session 'mine'" in refused.json()["detail"], path

        status = (await client.get("/api/training/status", headers=as_limited)).json()
        assert (status["job_id"], status["session_id"]) == (mine["job_id"], "mine")
        assert (await client.get("/api/training/status", headers=bearer(reader))).json()["job_id"] == theirs["job_id"]
        nothing = (await client.get("/api/training/status", headers=bearer(idle))).json()
        assert nothing["job_id"] is None and nothing["is_training"] is False and nothing["current_episode"] == 0

        server = (await client.get("/status", headers=as_limited)).json()
        assert server["spectators"]["per_session"] == {"mine": 1}
        assert (await client.get("/status", headers=bearer(reader))).json()["spectators"]["per_session"] == {
            "mine": 1,
            "theirs": 1,
        }

        for path in DAEMON_READS:
            refused = await client.get(path, headers=as_limited)
            assert refused.status_code == 403 and "limited to session 'mine'" in refused.json()["detail"], path
            assert (await client.get(path, headers=bearer(reader))).status_code == 200, path


async def test_a_session_limited_admin_may_not_run_the_daemon_or_jobs(secured: LiveServer, settings: Settings) -> None:
    """Starting and stopping jobs and the daemon's config and runs are the whole server's: 403 naming the
    session, even with the admin scope, and nothing changes."""
    admin, limited = keys(settings.database_url, (["admin"], None), (["admin"], "mine"))
    async with httpx.AsyncClient(base_url=secured.url, timeout=TIMEOUT, headers=bearer(limited)) as client:
        before = (await client.get("/api/training/daemon/config", headers=bearer(admin))).json()
        attempts = [
            client.put("/api/training/daemon/config", json={"episodes_per_run": 7}),
            client.post("/api/training/daemon/run"),
            client.post("/api/training/start", json={"scenario_name": "mock_cache"}),
            client.post("/api/training/stop", json={}),
        ]
        for attempt in attempts:
            refused = await attempt
            assert refused.status_code == 403 and "limited to session 'mine'" in refused.json()["detail"]
        assert (await client.get("/api/training/daemon/config", headers=bearer(admin))).json() == before
        assert (await client.get("/api/training/jobs", headers=bearer(admin))).json()["jobs"] == []


LISTED_OF_PROTECTED = {"session_id", "name", "status", "created_at", "updated_at", "ended_at", "password_protected"}


@pytest.mark.parametrize("auth", ["off", "on"])
async def test_a_protected_rooms_details_are_not_in_the_list(
    server_factory: Any, settings: Settings, spectators: Any, auth: str
) -> None:
    """With auth off or on (an admin's key), the list shows a protected room's id, name, status and times and
    nulls the rest (metadata, progress, algorithm, epoch, code, audience); `/status` does not count its
    spectators by name. An open session's entry is whole."""
    headers: dict[str, str] = {}
    if auth == "on":
        settings = settings.model_copy(update={"enable_auth": True, "jwt_secret_key": SECRET})
        headers = bearer(keys(settings.database_url, (["admin"], None))[0])
    live = await server_factory(settings)
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT, headers=headers) as client:
        spec = {
            "name": "vault run",
            "algorithm": "PPO",
            "model_generation": 3,
            "total_episodes": 500,
            "metadata": {"note": "launch codes 0000"},
        }
        room = {"password_protected": True, "max_spectators": 4}
        vault = {"training_id": "vault", **spec, "metadata": {"note": "vault only"}, "room": room}
        password = (await client.post(BASE, json=vault)).json()["room_password"]
        assert (await client.post(BASE, json={"training_id": "open", **spec})).status_code == 201
        for session_id in ("vault", "open"):
            metrics = [{"episode": e, "current_reward": 1.0} for e in range(1, 43)]
            assert (await client.post(f"{BASE}/{session_id}/metrics", json=metrics)).status_code == 200
            await client.put(f"{BASE}/{session_id}", json={"status": "running"})
        watch = partial(spectators, additional_headers=headers)
        await connect_and_sync(watch, live.ws_url("vault", f"password={password}"))
        await connect_and_sync(watch, live.ws_url("open"))

        response = await client.get(BASE, params={"status": "all"})
        assert "vault only" not in response.text and "launch codes" in response.text
        listed = {s["session_id"]: s for s in response.json()["sessions"]}
        shown = {key for key, value in listed["vault"].items() if value is not None}
        assert shown == LISTED_OF_PROTECTED - {"ended_at"}  # running: not ended yet
        assert set(listed["vault"]) == set(listed["open"])  # the same keys: hidden ones are null
        assert (listed["vault"]["name"], listed["vault"]["status"]) == ("vault run", "running")
        assert listed["open"]["metadata"] == spec["metadata"] and listed["open"]["current_episode"] == 42
        assert listed["open"]["spectators"] == 1

        per_session = (await client.get("/status")).json()["spectators"]["per_session"]
        assert per_session == {"open": 1}
        details = await client.get(f"{BASE}/vault", headers={"X-Room-Password": password})
        assert details.json()["metadata"] == {"note": "vault only"}  # the password still shows them
