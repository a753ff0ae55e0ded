"""The store on every backend: group commit, gap-free seq, idempotency, rejected jobs that change nothing."""

from __future__ import annotations

import asyncio
import math
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from sqlalchemy import Connection

from bot.schemas import SessionCreate, SessionUpdate, TrainingMetricsData
from bot.store import SessionExistsError, SessionNotFoundError, Store, StoreError, StoreRejectedError
from bot.store.batch import metrics_batch, prepare
from bot.store.daemon import ClaimRun
from bot.store.engine import create_engines
from bot.store.reads import MessageFilter, get_session, read_frames, read_series, session_metrics
from bot.store.writes import CreateSession, Ingest, IngestResult, Published, UpdateSession
from tests.conftest import TIMEOUT


def metrics(*episodes: int) -> list[TrainingMetricsData]:
    return [TrainingMetricsData(episode=e, current_reward=float(e)) for e in episodes]


async def test_concurrent_ingests_share_commits_and_seq_is_gap_free(store: Store) -> None:
    """Many concurrent batches are grouped into fewer commits; together they cover seq 1..N exactly."""
    await store.write(CreateSession("s", SessionCreate()))
    commits_before = store.commits
    results: list[IngestResult] = await asyncio.gather(
        *(store.write(Ingest("s", prepare("training_metrics", metrics(i, i)), None)) for i in range(50))
    )
    ranges = sorted((r.first_seq, r.last_seq) for r in results)
    assert ranges == [(1 + 2 * i, 2 + 2 * i) for i in range(50)]
    assert store.commits - commits_before < 50
    row = await store.read(get_session, "s")
    assert row is not None and row.last_seq == 100
    frames = await store.read(read_frames, row.pk, "s", MessageFilter(), 1000)
    assert [seq for seq, _, _ in frames] == list(range(1, 101))


async def test_rejected_job_does_not_spoil_its_group(store: Store) -> None:
    """A job for an unknown session fails alone; the others in the same commit are stored."""
    await store.write(CreateSession("s", SessionCreate()))
    good, bad = await asyncio.gather(
        store.write(Ingest("s", prepare("training_metrics", metrics(1)), None)),
        store.write(Ingest("ghost", prepare("training_metrics", metrics(1)), None)),
        return_exceptions=True,
    )
    assert isinstance(good, IngestResult) and good.first_seq == 1
    assert isinstance(bad, SessionNotFoundError)
    with pytest.raises(SessionExistsError):
        await store.write(CreateSession("s", SessionCreate()))


async def test_a_value_the_database_refuses_fails_only_its_own_request(store: Store) -> None:
    """A job whose value the database refuses (an episode past 64 bits, which validation now stops before it
    gets here) is refused alone; the other jobs of its group commit, with no seq hole."""
    await store.write(CreateSession("s", SessionCreate()))
    commits_before = store.commits
    bad = Ingest("s", metrics_batch([{"episode": 2**63}]), None)
    results = await asyncio.gather(
        store.write(Ingest("s", prepare("training_metrics", metrics(1)), None)),
        store.write(bad),
        store.write(Ingest("s", prepare("training_metrics", metrics(2, 3)), None)),
        store.write(Ingest("ghost", prepare("training_metrics", metrics(1)), None)),
        return_exceptions=True,
    )
    assert isinstance(results[1], StoreRejectedError), results
    assert isinstance(results[3], SessionNotFoundError), results
    good = [r for r in results if isinstance(r, IngestResult)]
    assert sorted((r.first_seq, r.last_seq) for r in good) == [(1, 1), (2, 3)] or sorted(
        (r.first_seq, r.last_seq) for r in good
    ) == [(1, 2), (3, 3)]
    assert store.commits - commits_before == 1
    row = await store.read(get_session, "s")
    assert row is not None and row.last_seq == 3
    frames = await store.read(read_frames, row.pk, "s", MessageFilter(), 1000)
    assert [seq for seq, _, _ in frames] == [1, 2, 3]


async def test_episodes_and_counts_are_64_bit_on_every_backend(store: Store) -> None:
    """An episode past 2^31 (a long run counting steps) is stored and read back, on PostgreSQL too."""
    big = 2**40
    await store.write(CreateSession("s", SessionCreate(total_episodes=big, model_generation=big)))
    await store.write(Ingest("s", prepare("training_metrics", [TrainingMetricsData(episode=big, loss_value=1.0)])))
    row = await store.read(get_session, "s")
    assert row is not None and (row.current_episode, row.total_episodes, row.model_generation) == (big, big, big)
    points, _ = (await store.read(read_series, row.pk, ["loss_value"], MessageFilter()))["loss_value"]
    assert points[0][1] == big


async def test_graph_updates_append_and_the_view_keeps_the_newest_max_points(store: Store) -> None:
    """Graph points are appended, never rewritten: the view holds the newest max_points per series, labels
    from the latest update that has them, and what is stored stays bounded (trimmed as it grows)."""
    from sqlalchemy import func, select

    from bot.schemas import PerformanceGraphData
    from bot.store.reads import read_graphs
    from bot.store.tables import graph_points

    await store.write(CreateSession("s", SessionCreate()))
    for start in range(0, 60, 3):
        body = {
            "graph_id": "g",
            "max_points": 5,
            "title": "Reward" if start == 0 else None,
            "data_points": {"reward": [{"value": float(v)} for v in range(start, start + 3)], "loss": [{"value": 1}]},
        }
        await store.write(Ingest("s", prepare("graph_update", [PerformanceGraphData.model_validate(body)])))
    row = await store.read(get_session, "s")
    assert row is not None
    [graph] = [orjson.loads(orjson.dumps(fragment)) for fragment in await store.read(read_graphs, row.pk)]
    assert graph["title"] == "Reward" and graph["metrics"] == ["reward", "loss"] and graph["max_points"] == 5
    assert [p["value"] for p in graph["data_points"]["reward"]] == [55.0, 56.0, 57.0, 58.0, 59.0]
    assert len(graph["data_points"]["loss"]) == 5
    stored = await store.read(lambda conn: conn.execute(select(func.count()).select_from(graph_points)).scalar())
    assert stored <= 2 * (5 + 5) + 3


async def test_idempotency_key_applies_a_batch_once(store: Store) -> None:
    """The same key, even sent concurrently, stores one copy and answers the same range."""
    await store.write(CreateSession("s", SessionCreate()))
    results = await asyncio.gather(
        *(store.write(Ingest("s", prepare("training_metrics", metrics(1, 2)), "k1")) for _ in range(5))
    )
    assert {(r.first_seq, r.last_seq) for r in results} == {(1, 2)}
    assert sum(not r.duplicate for r in results) == 1
    row = await store.read(get_session, "s")
    assert row is not None and row.last_seq == 2


async def test_nan_is_counted_and_infinity_kept_in_the_series(store: Store) -> None:
    """A metric's points are read back from the stored frames: NaN is counted, infinity stays infinity."""
    await store.write(CreateSession("s", SessionCreate()))
    points = [
        TrainingMetricsData(episode=1, loss_value=math.nan),
        TrainingMetricsData(episode=2, loss_value=math.inf),
        TrainingMetricsData(episode=3, custom={"kl": -math.inf}),
    ]
    await store.write(Ingest("s", prepare("training_metrics", points), None))
    row = await store.read(get_session, "s")
    assert row is not None
    finite, nan_count = (await store.read(read_series, row.pk, ["loss_value"], MessageFilter()))["loss_value"]
    assert [(seq, value) for seq, _, _, value in finite] == [(2, math.inf)] and nan_count == 1
    where = MessageFilter(start_episode=2)
    ranged, nan_count = (await store.read(read_series, row.pk, ["loss_value"], where))["loss_value"]
    assert [seq for seq, _, _, _ in ranged] == [2] and nan_count == 0
    custom, _ = (await store.read(read_series, row.pk, ["kl"], MessageFilter()))["kl"]
    assert [(seq, value) for seq, _, _, value in custom] == [(3, -math.inf)]
    assert await store.read(session_metrics, row.pk) == ["kl", "loss_value"]


async def test_history_gives_back_the_live_frames_byte_for_byte(store: Store) -> None:
    """The database rebuilds each stored message into the very text spectators got live."""
    live: list[tuple[int, str, str]] = []

    def capture(published: list[Published]) -> None:
        live.extend(frame for item in published for frame in item.frames)

    store.on_commit = capture
    session_id = 'odd "id" \\ é'
    await store.write(CreateSession(session_id, SessionCreate()))
    points = [TrainingMetricsData(episode=1, loss_value=math.nan, custom={"kl": 0.5}), TrainingMetricsData(episode=2)]
    await store.write(Ingest(session_id, prepare("training_metrics", points), None))
    await store.write(UpdateSession(session_id, SessionUpdate(status="running", message='a "quoted" reason')))
    row = await store.read(get_session, session_id)
    assert row is not None
    assert await store.read(read_frames, row.pk, session_id, MessageFilter(), 10) == live and len(live) == 3


async def test_status_update_takes_a_seq(store: Store) -> None:
    """A status change is a stored message with the next seq."""
    await store.write(CreateSession("s", SessionCreate()))
    await store.write(Ingest("s", prepare("training_metrics", metrics(1)), None))
    updated = await store.write(UpdateSession("s", SessionUpdate(status="running")))
    assert updated["status"] == "running" and updated["last_seq"] == 2


async def test_a_database_from_an_older_version_is_refused_by_name(tmp_path: Path) -> None:
    """Opening a database whose tables lack columns (and that no migration knows) stops naming them."""
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE sessions (pk INTEGER PRIMARY KEY, session_id TEXT)")
    with pytest.raises(StoreError, match="older than the first migration .*table sessions lacks .*epoch"):
        async with Store(f"sqlite:///{path}"):
            pass


def waiting_at_a_lock(url: str) -> bool:
    """Whether a store's group commit waits at a lock another connection holds. PostgreSQL says so
    (pg_stat_activity); with SQLite the writer thread is in a group commit, blocked in the driver's call (its
    innermost Python frame is SQLAlchemy's do_execute: the busy wait is in sqlite3's C code)."""
    if url.startswith("postgresql"):
        import psycopg

        with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
        return bool(row and row[0])
    frames = sys._current_frames()
    for thread in threading.enumerate():
        if thread.name.startswith("tms-writer") and thread.ident in frames:
            names = [frame.name for frame in traceback.extract_stack(frames[thread.ident])]
            if "commit_group" in names and names[-1] == "do_execute":
                return True
    return False


async def test_a_key_raced_by_another_instance_fails_no_neighbour(store: Store) -> None:
    """Another instance stores the same idempotency key while this instance's group commit is in flight (on
    PostgreSQL the key's unique index then refuses the insert): the raced job is answered as a duplicate
    with the other instance's seqs, and the job committed beside it in the same group is stored."""
    await store.write(CreateSession("raced", SessionCreate()))
    await store.write(CreateSession("neighbour", SessionCreate()))
    other_writer, other_reader = create_engines(store.url)
    holding, release = threading.Event(), threading.Event()

    def other_instance() -> IngestResult:
        with other_writer.begin() as conn:
            applied = Ingest("raced", prepare("training_metrics", metrics(1)), "key-1", "hash").apply(conn, time.time())
            holding.set()
            release.wait(TIMEOUT)
        result: IngestResult = applied.result
        return result

    other = asyncio.create_task(asyncio.to_thread(other_instance))
    try:
        await asyncio.to_thread(holding.wait, TIMEOUT)
        ours = asyncio.gather(
            store.write(Ingest("neighbour", prepare("training_metrics", metrics(1, 2)), None)),
            store.write(Ingest("raced", prepare("training_metrics", metrics(1)), "key-1", "hash")),
        )
        async with asyncio.timeout(TIMEOUT):  # until our group waits at the other's lock: the race itself
            while not await asyncio.to_thread(waiting_at_a_lock, store.url):
                await asyncio.sleep(0.01)
        release.set()
        neighbour, raced = await ours
        theirs = await other
    finally:
        release.set()
        other_writer.dispose()
        other_reader.dispose()
    assert (neighbour.first_seq, neighbour.last_seq, neighbour.duplicate) == (1, 2, False)
    assert (raced.first_seq, raced.last_seq, raced.duplicate) == (theirs.first_seq, theirs.last_seq, True)


async def test_a_scheduled_daemon_slot_is_claimed_by_one_instance(store: Store) -> None:
    """Several instances claiming one window's run at once (two stores on one database): exactly one
    gets it; the others are told None, and no neighbour in their group commits fails."""
    async with Store(store.url) as other:
        claims = [
            instance.write(ClaimRun(f"run-{i}", "72:1000", "schedule", "mock_cache", 2, f"host-{i % 2}:1"))
            for i, instance in enumerate([store, other] * 4)
        ]
        results = await asyncio.gather(*claims, store.write(CreateSession("beside", SessionCreate())))
    won = [result for result in results[:-1] if result is not None]
    assert len(won) == 1 and won[0]["trigger"] == "schedule"
    assert results[-1]["session_id"] == "beside"
    assert await store.write(ClaimRun("run-next", "72:1001", "schedule", "mock_cache", 2, "host-0:1")) is not None


def blocked_read(started: threading.Event, release: threading.Event) -> Callable[[Connection], bool]:
    """A read that holds its reader thread until `release` is set (or TIMEOUT passes); returns whether it was."""

    def read(conn: Connection) -> bool:
        started.set()
        return release.wait(TIMEOUT)

    return read


async def test_closing_the_store_leaves_the_event_loop_free_while_reads_finish(tmp_path: Path) -> None:
    """Closing waits for the reads still running on another thread, never on the event loop: here the read
    can only end when the loop releases it, while the store is closing."""
    started, release = threading.Event(), threading.Event()
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    await store.__aenter__()
    reading = asyncio.create_task(store.read(blocked_read(started, release)))
    async with asyncio.timeout(TIMEOUT):
        while not started.is_set():
            await asyncio.sleep(0.01)
    asyncio.get_running_loop().call_later(0.1, release.set)  # runs only if closing leaves the loop free
    await store.__aexit__(None, None, None)
    assert await reading is True


async def test_closing_the_store_does_not_wait_past_its_deadline_for_a_stuck_read(tmp_path: Path) -> None:
    """A read that does not end (a database that stopped answering) does not hold the store's close past
    `close_timeout`: the close returns while that read is still running."""
    started, release = threading.Event(), threading.Event()
    store = Store(f"sqlite:///{tmp_path / 'store.db'}", close_timeout=0.2)
    await store.__aenter__()
    reading = asyncio.create_task(store.read(blocked_read(started, release)))
    async with asyncio.timeout(TIMEOUT):
        while not started.is_set():
            await asyncio.sleep(0.01)
        await store.__aexit__(None, None, None)
    still_running = not reading.done()
    release.set()
    assert still_running
    assert await reading is True
