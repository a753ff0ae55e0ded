"""No background loop dies silently (#25.1): the supervisor restarts a failed loop and names it, stopping never
raises a loop's error nor swallows the caller's cancellation; a live server whose database goes away for a
while has every loop running again afterwards (the daemon among them)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.config import Settings
from bot.server.supervisor import Supervisor
from bot.server.tasks import cancel_and_wait
from bot.store.daemon import PutConfig
from bot.store.engine import create_engines
from bot.store.errors import StoreUnavailableError
from bot.store.schema import prepare_schema
from tests.conftest import TIMEOUT, LiveServer


async def test_a_failed_loop_is_logged_by_name_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []
    ran_again = asyncio.Event()

    async def flaky() -> None:
        runs.append(1)
        if len(runs) <= 2:
            raise StoreUnavailableError("database away")
        ran_again.set()
        await asyncio.Event().wait()

    supervisor = Supervisor()
    supervisor.spawn("flaky", flaky)
    async with asyncio.timeout(TIMEOUT):
        await ran_again.wait()
    assert supervisor.loops["flaky"].crashes == 2 and "database away" in (supervisor.loops["flaky"].last_error or "")
    assert supervisor.failing() == {}
    await supervisor.stop()
    failures = [r for r in caplog.records if r.levelno == logging.ERROR and "flaky" in r.getMessage()]
    assert len(failures) == 2


async def test_stopping_never_raises_a_loops_error_and_stops_every_loop() -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    crashed = asyncio.create_task(broken())
    await asyncio.sleep(0)
    sleeper = asyncio.create_task(asyncio.Event().wait())
    await cancel_and_wait([crashed, sleeper])  # the old version re-raised "boom" and left `sleeper` running
    assert sleeper.cancelled()


async def test_the_callers_cancellation_is_not_swallowed() -> None:
    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                await asyncio.sleep(0.2)  # takes its time to end
                return

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    closer = asyncio.create_task(cancel_and_wait([task]))
    await asyncio.sleep(0.05)
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closer
    await asyncio.wait([task])


@pytest.mark.slow
async def test_every_loop_survives_a_database_outage(server_factory: Any, tmp_path: Path) -> None:
    """Every store call fails for a while (as when the database is away): /health says so, and afterwards
    every loop runs again; the daemon goes on counting its iterations, as it did not on the old code."""
    url = f"sqlite:///{tmp_path / 'metrics.db'}"
    writer, reader = create_engines(url)
    prepare_schema(writer)
    with writer.begin() as conn:  # a daemon that is on but has nothing to run
        PutConfig({"enabled": False}).apply(conn, 0.0)
    writer.dispose()
    reader.dispose()
    settings = Settings(database_url=url, training_daemon=True, ingest_processes=0, stale_timeout_seconds=1.0)
    live: LiveServer = await server_factory(settings)
    state = live.server.lifespan.state
    store = state["service"].store
    originals = {name: getattr(store, name) for name in ("read", "read_heavy", "write")}

    async def away(*args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailableError("the database is away (injected)")

    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        before = (await client.get("/api/training/daemon/status")).json()["iterations"]
        for name in originals:
            setattr(store, name, away)
        state["daemon"].reconfigured()  # it reads its configuration now, not at its 10th iteration
        async with asyncio.timeout(TIMEOUT * 3):  # /health names the daemon while it waits to be restarted
            while "daemon" not in (during := await client.get("/health")).json()["loops"]:
                await asyncio.sleep(0.05)
        for name, original in originals.items():
            setattr(store, name, original)
        async with asyncio.timeout(TIMEOUT * 3):
            while True:
                health = (await client.get("/health")).json()
                status = (await client.get("/api/training/daemon/status")).json()
                if health["status"] == "ok" and status["iterations"] > before + 3:
                    break
                await asyncio.sleep(0.2)
    assert during.status_code == 503 and "daemon" in during.json()["loops"]
    assert status["state"] == "disabled" and status["last_loop_error"] is None
    supervisor: Supervisor = state["supervisor"]
    assert {"daemon", "hub.consume", "hub.watchdog", "publisher", "jobs.lease", "stale"} <= supervisor.alive()
    assert supervisor.alive() == set(supervisor.loops) and supervisor.loops["daemon"].crashes >= 1
