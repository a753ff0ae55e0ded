"""Bulk inserts (bot/store/bulk.py) on both backends: every batch size stores exactly its rows, in order,
and a value the database or the driver refuses fails only its own job."""

from __future__ import annotations

import asyncio

from bot.schemas import SessionCreate
from bot.store import Store, StoreRejectedError
from bot.store.batch import Batch, metrics_batch
from bot.store.bulk import CHUNK
from bot.store.reads import MessageFilter, get_session, read_frames
from bot.store.writes import CreateSession, Ingest, IngestResult


async def test_every_batch_size_stores_exactly_its_rows_in_order(store: Store) -> None:
    await store.write(CreateSession("s", SessionCreate()))
    sizes = [1, 2, 3, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 7, 1000]
    episode = 0
    for size in sizes:
        result = await store.write(Ingest("s", metrics_batch([{"episode": episode + i} for i in range(size)])))
        assert isinstance(result, IngestResult) and result.count == size
        episode += size
    row = await store.read(get_session, "s")
    assert row is not None and row.last_seq == episode
    frames = await store.read(read_frames, row.pk, "s", MessageFilter(), 10_000)
    assert [seq for seq, _, _ in frames] == list(range(1, episode + 1))
    assert all(f'"episode":{seq - 1}' in frame for seq, _, frame in frames)


async def test_a_value_the_driver_cannot_write_fails_only_its_own_job(store: Store) -> None:
    """A lone surrogate (which validation stops before it gets here) cannot be encoded for the database:
    its job is refused (422), the others of its group commit with no seq hole."""
    await store.write(CreateSession("s", SessionCreate()))
    good = metrics_batch([{"episode": i} for i in range(300)])
    bad = Batch("training_metrics", ['{"note":"\ud800"}'] * 300, [None] * 300, [1.0] * 300)
    results = await asyncio.gather(
        store.write(Ingest("s", good)), store.write(Ingest("s", bad)), store.write(Ingest("s", good)),
        return_exceptions=True,
    )  # fmt: skip
    assert isinstance(results[1], StoreRejectedError), results
    assert all(isinstance(result, IngestResult) for result in (results[0], results[2])), results
    row = await store.read(get_session, "s")
    assert row is not None and row.last_seq == 600
    frames = await store.read(read_frames, row.pk, "s", MessageFilter(), 10_000)
    assert [seq for seq, _, _ in frames] == list(range(1, 601))
