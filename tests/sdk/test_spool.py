"""The disk spool: each batch kept with its server, whole or not at all; refused ones become dead letters."""

from __future__ import annotations

import asyncio
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from bot.sdk import MetricsClient, Spool, SyncReport, upload_spool
from tests.conftest import LiveServer

OTHER = "http://127.0.0.1:9/"  # another server's batches: never ours to upload


def record(key: str, **point: object) -> dict[str, object]:
    return {
        "kind": "data",
        "session_id": "spooled",
        "type": "training_metrics",
        "key": key,
        "items": [point],
        "session": {"algorithm": "DQN"},
    }


def keys(spool: Spool, url: str) -> list[str]:
    return [str(r["key"]) for _, r in spool.oldest(url, 10_000)]


def test_a_torn_log_tail_loses_only_the_transactions_it_tore(tmp_path: Path) -> None:
    """A power loss that cuts the write-ahead log at any byte leaves the records committed before the cut,
    in order, each whole; never a half record, never a crash."""
    live = tmp_path / "live"
    spool = Spool(live)
    written = [f"k{i}" for i in range(40)]
    for key in written:  # one transaction each, as the sender spills
        spool.append([record(key, episode=1)], "http://a/")
    wal = live / "spool.db-wal"
    assert wal.exists(), "the spool keeps its log while open"
    rng = random.Random(7)
    for cut in sorted(rng.sample(range(1, wal.stat().st_size), 8)):
        torn = tmp_path / f"torn-{cut}"
        torn.mkdir()
        shutil.copy(live / "spool.db", torn / "spool.db")
        (torn / "spool.db-wal").write_bytes(wal.read_bytes()[:cut])
        survivor = Spool(torn)
        kept = keys(survivor, "http://a/")
        survivor.close()
        assert kept == written[: len(kept)]
    spool.close()


def test_a_damaged_spool_is_moved_aside_and_a_new_one_starts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A file that is not a database any more is never a crash: it is kept aside, named in the log."""
    (tmp_path / "spool.db").write_bytes(b"this is not a database" * 100)
    spool = Spool(tmp_path)
    spool.append([record("fresh", episode=1)], "http://a/")
    assert keys(spool, "http://a/") == ["fresh"]
    assert list(tmp_path.glob("spool.db.damaged-*")) and "damaged" in caplog.text
    spool.close()


async def test_upload_sends_only_this_servers_batches_and_dead_letters_the_refused(
    live: LiveServer, tmp_path: Path
) -> None:
    """Uploading to a server: its batches arrive in order, a refused one becomes a dead letter (never retried),
    and another server's batches stay where they are."""
    url = live.url
    spool = Spool(tmp_path)
    spool.append([record("ok-1", episode=1), record("bad", win_rate=500), record("ok-2", episode=2)], url)
    spool.append([record("elsewhere", episode=9)], OTHER)

    def upload_twice() -> tuple[SyncReport, SyncReport]:  # a blocking client: off the server's event loop
        with httpx.Client(base_url=url) as http:
            return upload_spool(http, spool, url), upload_spool(http, spool, url)

    report, again = await asyncio.to_thread(upload_twice)
    assert (report.delivered, report.rejected, report.remaining) == (2, 1, 0)
    assert (again.delivered, again.remaining) == (0, 0)
    [(dead_url, dead, reason)] = spool.dead_letters()
    assert dead_url == url and dead["key"] == "bad" and "win_rate" in reason
    assert keys(spool, OTHER) == ["elsewhere"] and spool.pending(url) == 0
    spool.close()
    async with httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/api/training/sessions/spooled")).json()["last_seq"] == 2


def test_one_uploader_per_server_at_a_time(tmp_path: Path) -> None:
    """A second process that finds a server's batches being uploaded leaves them to the first."""
    first, second = Spool(tmp_path), Spool(tmp_path)
    first.append([record("a", episode=1)], "http://a/")
    assert first.claim("http://a/") and not second.claim("http://a/")
    first.release("http://a/")
    assert second.claim("http://a/")
    first.close()
    second.close()


async def test_a_server_is_one_server_however_its_url_is_written(live: LiveServer, tmp_path: Path) -> None:
    """Batches spooled for `http://127.0.0.1:P/` (a trailing slash, an upper-case scheme, a row an older version
    wrote as given) are the server's at `http://127.0.0.1:P`: `bot sync --url` without the slash delivers them,
    and so does the next client of that server."""
    spool = Spool(tmp_path)
    spool.append([record("slash", episode=1)], f"{live.url}/")
    spool.close()
    with sqlite3.connect(tmp_path / "spool.db") as conn:  # as an older version kept it: the URL as it was given
        row = (f"HTTP://127.0.0.1:{live.port}/", orjson.dumps(record("older", episode=2)))
        conn.execute("INSERT INTO batches (url, record, created) VALUES (?, ?, 0)", row)
    conn.close()
    sync = [sys.executable, "-m", "bot", "sync", str(tmp_path), "--url", live.url]
    done = await asyncio.to_thread(subprocess.run, sync, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "delivered 2" in done.stdout, done.stdout + done.stderr

    Spool(tmp_path).append([record("later", episode=3)], f"{live.url}//")

    def next_client() -> None:
        with MetricsClient(live.url, spool_dir=tmp_path) as client, client.session(training_id="next") as run:
            run.log_metrics(episode=1)

    await asyncio.to_thread(next_client)
    assert Spool(tmp_path).pending() == 0
    async with httpx.AsyncClient(base_url=live.url) as http:
        assert (await http.get("/api/training/sessions/spooled")).json()["last_seq"] == 3
