"""Faults at the store: a failed commit is never acknowledged and leaves no seq hole."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx

from tests.conftest import LiveServer, create_session


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
