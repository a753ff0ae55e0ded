"""History pages joined by the database (bot/store/joined_frames.py), on both backends: the same frames,
byte for byte and in seq order, as the live path built, in one chunk or several, and when a chunk is too
big for the database to join."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Connection

from bot.frames import data_frames
from bot.schemas import SessionCreate
from bot.store import Store, joined_frames as joined_module
from bot.store.batch import metrics_batch
from bot.store.joined_frames import frame_runs
from bot.store.reads import MessageFilter, get_session
from bot.store.writes import CreateSession, Ingest, IngestResult

# Characters that a format template or a SQL literal could take for its own: %, quotes, a backslash.
SESSION_ID = 'run %s 100% "q" \\ é'


async def stored(store: Store, count: int) -> tuple[int, list[str]]:
    """A session of `count` points; its pk and the frames the live path built for them."""
    await store.write(CreateSession(SESSION_ID, SessionCreate()))
    batch = metrics_batch([{"episode": i, "custom": {"p%": i / 3}} for i in range(count)])
    result = await store.write(Ingest(SESSION_ID, batch))
    assert isinstance(result, IngestResult)
    row = await store.read(get_session, SESSION_ID)
    assert row is not None
    received = orjson.loads(
        (await store.read(lambda conn: joined_frames(conn, row.pk, SESSION_ID, MessageFilter(), 1)))[2][0]
    )["timestamp"]
    return row.pk, data_frames("training_metrics", SESSION_ID, 1, received, batch.data)


def joined_frames(
    conn: Connection, pk: int, session_id: str, where: MessageFilter, limit: int
) -> tuple[int, int, list[bytes]]:
    """(how many frames, the last one's seq or 0, the pieces) of all of frame_runs' chunks."""
    runs = list(frame_runs(conn, pk, session_id, where, limit))
    return sum(n for n, _, _ in runs), runs[-1][1] if runs else 0, [piece for _, _, piece in runs]


def page(pieces: list[bytes]) -> list[str]:
    return [orjson.dumps(frame).decode() for frame in orjson.loads(b"[" + b",".join(pieces) + b"]")]


async def test_a_page_is_the_live_frames_byte_for_byte_in_any_number_of_chunks(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    pk, live = await stored(store, 25)
    for chunk in (1000, 7, 1):
        monkeypatch.setattr(joined_module, "CHUNK", chunk)
        count, last, pieces = await store.read(joined_frames, pk, SESSION_ID, MessageFilter(after_seq=3), 20)
        assert (count, last) == (20, 23)
        assert b",".join(pieces).decode() == ",".join(live[3:23])  # the stored bytes, not a re-encoding
    count, last, pieces = await store.read(joined_frames, pk, SESSION_ID, MessageFilter(after_seq=25), 20)
    assert (count, last, pieces) == (0, 0, [])


async def test_a_chunk_too_big_for_sqlite_to_join_is_read_row_by_row(tmp_path: Path) -> None:
    """Only SQLite joins in the database (PostgreSQL returns rows), and its largest string can be lowered."""
    async with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        await too_big_chunk_is_read_row_by_row(store)


async def too_big_chunk_is_read_row_by_row(store: Store) -> None:
    pk, live = await stored(store, 30)

    def with_small_strings(conn: Connection) -> Any:
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        before = raw.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 2000)  # a few frames' worth
        try:
            return joined_frames(conn, pk, SESSION_ID, MessageFilter(), 30)
        finally:
            raw.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, before)

    count, last, pieces = await store.read(with_small_strings)
    assert (count, last) == (30, 30)
    assert page(pieces) == live
