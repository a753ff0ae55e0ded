"""Two instances on one PostgreSQL writing the same thing at once: the loser of the race gets the answer a
retry would get (a duplicate, an existing session), never a 503 and an error in the log.

Another instance is played by a transaction of the test's own, held open until this store's write is
waiting on its locks (seen in pg_locks): the write has then made its checks and not seen the other's rows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, Engine, create_engine, insert, text, update

from bot.schemas import SessionCreate
from bot.store import SessionExistsError, Store
from bot.store.batch import metrics_batch
from bot.store.engine import normalise_url
from bot.store.reads import get_session
from bot.store.tables import idempotency_keys, sessions
from bot.store.writes import CreateSession, Ingest, IngestResult
from tests.conftest import TIMEOUT


@pytest.fixture
def other_instance(postgres_url: str) -> Iterator[Engine]:
    engine = create_engine(normalise_url(postgres_url))
    yield engine
    engine.dispose()


def wait_until_blocked(watcher: Connection, other: Connection) -> None:
    """Until a backend waits for a lock that `other`'s transaction holds (the store's write)."""
    pid = other.execute(text("SELECT pg_backend_pid()")).scalar_one()
    query = text("SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))")
    deadline = time.monotonic() + TIMEOUT
    while watcher.execute(query, {"pid": pid}).scalar_one() == 0:
        assert time.monotonic() < deadline, "the store's write never waited for the other instance's lock"
        time.sleep(0.01)


async def test_a_key_another_instance_commits_meanwhile_is_a_duplicate(
    postgres_url: str, other_instance: Engine
) -> None:
    async with Store(postgres_url) as store:
        await store.write(CreateSession("s", SessionCreate()))
        row = await store.read(get_session, "s")
        assert row is not None
        with other_instance.connect() as other, other_instance.connect() as watcher:
            # The other instance has stored the batch under key "k" (seq 1..3) and not committed yet.
            other.execute(update(sessions).where(sessions.c.pk == row.pk).values(last_seq=3, message_count=3))
            other.execute(
                insert(idempotency_keys).values(
                    session_pk=row.pk, type="training_metrics", key="k", body_hash="same", first_seq=1, last_seq=3
                )
            )
            batch = metrics_batch([{"episode": i} for i in range(3)])
            write = asyncio.create_task(store.write(Ingest("s", batch, idempotency_key="k", body_hash="same")))
            await asyncio.to_thread(wait_until_blocked, watcher, other)
            other.commit()
        result = await asyncio.wait_for(write, TIMEOUT)
    assert isinstance(result, IngestResult)
    assert (result.duplicate, result.first_seq, result.last_seq) == (True, 1, 3)


async def test_a_session_another_instance_creates_meanwhile_exists(postgres_url: str, other_instance: Engine) -> None:
    async with Store(postgres_url) as store:
        with other_instance.connect() as other, other_instance.connect() as watcher:
            other.execute(
                insert(sessions).values(
                    session_id="s", epoch="0" * 16, status="created", metadata="{}", tags="[]",
                    created_at=1.0, updated_at=1.0, last_seq=0, message_count=0,
                )
            )  # fmt: skip
            create = asyncio.create_task(store.write(CreateSession("s", SessionCreate())))
            await asyncio.to_thread(wait_until_blocked, watcher, other)
            other.commit()
        with pytest.raises(SessionExistsError):
            await asyncio.wait_for(create, TIMEOUT)
