"""The disk spool: torn records are dropped and counted, refused batches go to the dead-letter file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from bot.sdk import Spool, SyncReport, upload_spool
from bot.sdk.spool import read_spool
from tests.conftest import LiveServer


def record(key: str, **point: object) -> dict[str, object]:
    return {
        "kind": "data",
        "session_id": "spooled",
        "type": "training_metrics",
        "key": key,
        "items": [point],
        "session": {"algorithm": "DQN"},
    }


def test_torn_tail_is_dropped_and_counted(tmp_path: Path) -> None:
    """A record cut short (the process died mid-write) or corrupted is skipped; intact ones survive."""
    spool = Spool(tmp_path)
    spool.append([record("a", episode=1), record("b", episode=2)])
    spool.close()
    path = next(tmp_path.glob("spool-*.jsonl"))
    content = path.read_bytes()
    path.write_bytes(content.replace(b'"episode":1', b'"episode":7') + content[: len(content) // 3])
    read = read_spool(path)
    assert [r["key"] for r in read.records] == ["b"] and read.torn == 2


async def test_refused_batch_goes_to_dead_letter_and_the_rest_is_delivered(live: LiveServer, tmp_path: Path) -> None:
    """Uploading a spool: a batch the server refuses is kept in dead-letter.jsonl, never retried; others arrive."""
    spool = Spool(tmp_path)
    spool.append([record("ok-1", episode=1), record("bad", win_rate=500), record("ok-2", episode=2)])
    spool.close()

    def upload_twice() -> tuple[SyncReport, SyncReport]:  # a blocking client: off the server's event loop
        with httpx.Client(base_url=live.url) as http:
            return upload_spool(http, spool), upload_spool(http, spool)

    report, again = await asyncio.to_thread(upload_twice)
    assert (report.delivered, report.rejected, report.remaining) == (2, 1, 0)
    assert again.files == 0
    dead = read_spool(tmp_path / "dead-letter.jsonl").records
    assert [r["key"] for r in dead] == ["bad"] and "win_rate" in str(dead[0]["rejected"])
    async with httpx.AsyncClient(base_url=live.url) as http:
        assert (await http.get("/api/training/sessions/spooled")).json()["last_seq"] == 2
