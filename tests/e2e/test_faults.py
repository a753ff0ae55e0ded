"""Faults at the store: a failed commit is never acknowledged and leaves no seq hole."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from bot.config import Settings
from tests.conftest import TIMEOUT, LiveServer, PrivateRedis, connect_and_sync, create_session, recv_data, recv_json


def arm_fault(db_path: Path, armed: bool) -> None:
    """A real SQLite error on insert, switched from outside the server: the commit itself fails."""
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS fault (armed INTEGER)")
        conn.execute("DELETE FROM fault")
        conn.execute("INSERT INTO fault VALUES (?)", (int(armed),))
        conn.execute(
            "CREATE TRIGGER IF NOT EXISTS fail_insert BEFORE INSERT ON messages "
            "WHEN (SELECT armed FROM fault) BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
        )


async def test_failed_commit_is_503_and_leaves_no_hole(
    live: LiveServer, client: httpx.AsyncClient, db_path: Path
) -> None:
    """While commits fail: 503 with Retry-After and nothing stored; afterwards seq continues with no hole."""
    session_id = await create_session(client)
    url = f"/api/training/sessions/{session_id}/metrics"
    assert (await client.post(url, json=[{"episode": 1}, {"episode": 2}])).json()["last_seq"] == 2

    arm_fault(db_path, True)
    failed = await client.post(url, json=[{"episode": 3}], headers={"Idempotency-Key": "retry-me"})
    assert failed.status_code == 503 and failed.headers["Retry-After"] == "1"
    assert "nothing was stored" in failed.json()["detail"]

    arm_fault(db_path, False)
    retried = (await client.post(url, json=[{"episode": 3}], headers={"Idempotency-Key": "retry-me"})).json()
    assert (retried["first_seq"], retried["last_seq"], retried["duplicate"]) == (3, 3, False)
    history = (await client.get(f"/api/training/sessions/{session_id}/history")).json()
    assert [m["seq"] for m in history["messages"]] == [1, 2, 3]


async def test_a_server_bug_in_a_write_is_503_and_logged_as_ours_never_422(
    live: LiveServer,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A ValueError from the server's own code while a batch is written is not the client's fault: 503 with
    Retry-After (the SDK keeps the batch and sends it again), never a 422 it would give up on; the log has it
    as an error with its traceback. Once the bug is gone the same batch is stored."""
    session_id = await create_session(client, "bug")
    url = f"/api/training/sessions/{session_id}/metrics"

    def broken(*args: Any, **kwargs: Any) -> None:
        raise ValueError("a bug of ours")

    with monkeypatch.context() as patched, caplog.at_level(logging.ERROR, logger="bot.store"):
        patched.setattr("bot.store.writes.update_rollups", broken)
        failed = await client.post(
            url, json=[{"episode": 1, "current_reward": 0.5}], headers={"Idempotency-Key": "again"}
        )
    assert failed.status_code == 503, failed.text
    assert failed.headers["Retry-After"] == "1" and "nothing was stored" in failed.json()["detail"]
    [record] = [r for r in caplog.records if r.name == "bot.store.writes"]
    assert record.exc_info is not None and "a bug of ours" in str(record.exc_info[1])
    stored = (
        await client.post(url, json=[{"episode": 1, "current_reward": 0.5}], headers={"Idempotency-Key": "again"})
    ).json()
    assert (stored["first_seq"], stored["last_seq"]) == (1, 1)


async def assert_error_then_1011(ws: Any) -> None:
    error = await recv_json(ws)
    assert error["type"] == "error" and error["data"]["code"] == "internal_error", error
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await recv_json(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011


async def test_a_store_failure_while_joining_is_an_error_and_1011(
    live: LiveServer, client: httpx.AsyncClient, db_path: Path, spectators: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A spectator whose join fails on the store gets an `error` and close 1011, and the log names the
    session and the spectator; the server goes on serving."""
    session_id = await create_session(client, "broken")
    with sqlite3.connect(db_path) as conn:
        conn.execute("ALTER TABLE messages RENAME TO messages_away")
    with caplog.at_level(logging.ERROR, logger="bot.server.live.ws"):
        await assert_error_then_1011(await spectators(live.ws_url(session_id)))
    assert any("broken" in r.getMessage() and "spectator-" in r.getMessage() for r in caplog.records)
    with sqlite3.connect(db_path) as conn:
        conn.execute("ALTER TABLE messages_away RENAME TO messages")
    assert (await client.get("/health")).status_code == 200


async def test_a_broker_failure_while_joining_leaves_the_spectator_fed_from_the_store(
    server_factory: Any,
    settings: Settings,
    private_redis: PrivateRedis,
    spectators: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis gone when a spectator joins: it joins all the same and gets what is pushed from the store (the
    broker is a fast path, not the log), the log says the subscribe failed, and ingest still answers."""
    live = await server_factory(settings.model_copy(update={"redis_url": private_redis.url, "broker_timeout": 0.2}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        session_id = await create_session(client, "no-broker")
        await asyncio.to_thread(private_redis.stop)
        with caplog.at_level(logging.WARNING, logger="bot.server.live.hub"):
            ws = await connect_and_sync(spectators, live.ws_url(session_id))
        assert any("subscribe" in r.getMessage() and "no-broker" in r.getMessage() for r in caplog.records)
        response = await client.post(f"/api/training/sessions/{session_id}/metrics", json={"episode": 1})
        assert response.status_code == 200
        assert [m["data"]["episode"] for m in await recv_data(ws, 1)] == [1]
