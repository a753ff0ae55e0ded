"""Downsampling keeps first, last and every bucket's extremes, deterministically."""

from __future__ import annotations

import contextlib
import math
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import create_engine

from bot.schemas import SessionCreate, TrainingMetricsData
from bot.server.broker import MemoryBroker
from bot.server.live.publisher import Publisher
from bot.server.services import TrainingService
from bot.store import Store
from bot.store.batch import prepare
from bot.store.downsample import min_max
from bot.store.queries import read_session_series
from bot.store.reads import MessageFilter, frames_query, get_session, read_series
from bot.store.tables import ROLLUP_BLOCK
from bot.store.writes import CreateSession, Ingest


@contextlib.asynccontextmanager
async def service_on(path: Path) -> AsyncIterator[TrainingService]:
    async with Store(f"sqlite:///{path}", sqlite_synchronous="NORMAL") as store, MemoryBroker() as broker:
        async with Publisher(broker, timeout=1.0) as publisher:
            yield TrainingService(store, broker, publisher)


async def rewards(service: TrainingService, session_id: str, values: list[float], per_batch: int) -> None:
    """A new session whose episode i has current_reward values[i], ingested `per_batch` points at a time."""
    await service.create_session(SessionCreate(training_id=session_id))
    for first in range(0, len(values), per_batch):
        points = [TrainingMetricsData(episode=i, current_reward=values[i]) for i in range(first, first + per_batch)]
        await service.ingest(session_id, prepare("training_metrics", points), None)


def rows(values: list[float]) -> list[tuple[int, int | None, float, float]]:
    return [(i + 1, i, float(i), v) for i, v in enumerate(values)]


def test_short_series_is_returned_whole() -> None:
    data = rows([1.0, 2.0, 3.0])
    assert min_max(data, 10) == data


def test_spikes_first_and_last_survive() -> None:
    """A single spike and a single dip in 100,000 points are both kept, with the first and last points."""
    values = [math.sin(i / 500) for i in range(100_000)]
    values[31_337], values[77_777] = 50.0, -50.0
    kept = min_max(rows(values), 200)
    assert len(kept) <= 200
    kept_values = [r[3] for r in kept]
    assert 50.0 in kept_values and -50.0 in kept_values
    assert kept[0][0] == 1 and kept[-1][0] == 100_000
    assert [r[0] for r in kept] == sorted(r[0] for r in kept)
    assert min_max(rows(values), 200) == kept


async def test_two_or_three_points_are_at_most_that_many_on_both_paths(tmp_path: Path) -> None:
    """`points` 2 and 3 (the smallest the API takes) gave 4: one bucket's minimum and maximum on top of the
    first and the last. Below 4 there is room for the first and the last only, raw or from the rollups."""
    assert [r[0] for r in min_max(rows([5.0, 1.0, 9.0, 2.0, 7.0]), 2)] == [1, 5]
    assert [r[0] for r in min_max(rows([5.0, 1.0, 9.0, 2.0, 7.0]), 3)] == [1, 5]
    async with service_on(tmp_path / "r.db") as service:
        await rewards(service, "few", [math.sin(i / 50) for i in range(5_000)], 5_000)
        for points in (2, 3):
            whole = (await service.series("few", ["current_reward"], MessageFilter(), points))["series"]
            ranged = MessageFilter(start_episode=0)
            part = (await service.series("few", ["current_reward"], ranged, points))["series"]
            for series in (whole["current_reward"], part["current_reward"]):
                assert series["episode"] == [0, 4_999], (points, series["episode"])


async def test_rollups_give_the_extremes_of_a_long_series(tmp_path: Path) -> None:
    """A long series is downsampled from its per-block rollups: first, last and every spike are kept,
    the same points on every call, and NaN points are counted, not drawn."""
    async with service_on(tmp_path / "r.db") as service:
        values = [math.sin(i / 300) for i in range(30_000)]
        values[12_345], values[23_456] = 40.0, -40.0
        await rewards(service, "long", values, 5_000)
        nan = [TrainingMetricsData(episode=30_000, loss_value=math.nan)]
        await service.ingest("long", prepare("training_metrics", nan), None)
        series = (await service.series("long", ["current_reward"], MessageFilter(), 20))["series"]["current_reward"]
        again = (await service.series("long", ["current_reward"], MessageFilter(), 20))["series"]["current_reward"]
        loss = (await service.series("long", ["loss_value"], MessageFilter(), 20))["series"]["loss_value"]
    assert series == again and series["total"] == 30_000 and len(series["value"]) <= 20
    assert 40.0 in series["value"] and -40.0 in series["value"]
    assert series["episode"][0] == 0 and series["episode"][-1] == 29_999
    assert series["seq"] == sorted(series["seq"])
    assert loss["nan_count"] == 1 and loss["value"] == []


async def test_a_whole_series_past_a_chart_of_blocks_is_drawn_from_rollups_alone(tmp_path: Path) -> None:
    """A whole series with a rollup block for every two of the chart's points (here 40,000 points, far below
    the half-million where this used to start) is drawn from the rollups without reading its points: with
    the points themselves gone from the table, the chart is still there, spikes, first and last included."""
    path = tmp_path / "r.db"
    async with service_on(path) as service:
        values = [math.cos(i / 700) for i in range(40_000)]
        values[9_999], values[33_333] = 25.0, -25.0
        await rewards(service, "mid", values, 10_000)
        with sqlite3.connect(path) as conn:
            conn.execute("DELETE FROM messages")
        series = (await service.series("mid", ["current_reward"], MessageFilter(), 1000))["series"]["current_reward"]
    assert series["total"] == 40_000 and 500 <= len(series["value"]) <= 1000
    assert 25.0 in series["value"] and -25.0 in series["value"]
    assert series["episode"][0] == 0 and series["episode"][-1] == 39_999


async def test_a_session_s_statuses_are_read_from_the_type_index(tmp_path: Path) -> None:
    """The page's status history (history?type=training_status) reads the few index entries, not every metric
    row: on a new SQLite database, without statistics, the planner walked the primary key through all of
    them (120 ms at 1M points). Checked on the query plan of the store's own read, so without timing."""
    async with service_on(tmp_path / "plan.db") as service:
        await rewards(service, "planned", [1.0] * 10, per_batch=10)
    query = frames_query(1, "planned", MessageFilter(types=("training_status",)), 1000, "sqlite")
    compiled = query.compile(create_engine("sqlite://"), compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    with contextlib.closing(sqlite3.connect(tmp_path / "plan.db")) as conn:
        plan = conn.execute(f"EXPLAIN QUERY PLAN {compiled}", [params[name] for name in compiled.positiontup or ()])
        steps = [row[3] for row in plan]
    assert any("ix_messages_type" in step for step in steps), steps


async def test_a_long_series_ends_at_its_first_and_last_real_points(tmp_path: Path) -> None:
    """The ends a chart keeps are the first and the last non-NaN points, read from the first and the last
    blocks that have one, whole blocks of NaN before and after them (and a metric absent from most blocks)."""
    async with service_on(tmp_path / "ends.db") as service:
        values = [math.nan] * 300 + [math.sin(i / 50) for i in range(39_400)] + [math.nan] * 300
        await rewards(service, "edges", values, 10_000)
        both = await service.series("edges", ["current_reward", "loss_value"], MessageFilter(), 1000)
    series = both["series"]["current_reward"]
    assert series["episode"][0] == 300 and series["episode"][-1] == 39_699
    assert series["total"] == 39_400 and series["nan_count"] == 600
    assert both["series"]["loss_value"]["value"] == []


async def test_a_long_series_is_each_run_of_blocks_extremes_on_both_backends(store: Store) -> None:
    """Downsampled from rollups, a long series is, on SQLite and PostgreSQL alike, its first and last real
    points and the lowest and highest point (the earliest of equals) of each run of consecutive blocks:
    the same points as those runs taken from the raw points. Values repeat, so ties decide; NaN blocks lead."""
    values = [math.nan] * 200 + [float((i * 7919) % 13) for i in range(60_000)] + [math.nan] * 100
    values[31_337] = 99.0
    await store.write(CreateSession("runs", SessionCreate()))
    for first in range(0, len(values), 10_000):
        chunk = enumerate(values[first : first + 10_000], first)
        items = [TrainingMetricsData(episode=i, current_reward=v) for i, v in chunk]
        await store.write(Ingest("runs", prepare("training_metrics", items), None))
    series = (await store.read(read_session_series, "runs", ["current_reward"], MessageFilter(), 1000))["series"]
    got = list(zip(series["current_reward"]["seq"], series["current_reward"]["value"], strict=True))

    row = await store.read(get_session, "runs")
    assert row is not None
    raw, _ = (await store.read(read_series, row.pk, ["current_reward"], MessageFilter()))["current_reward"]
    blocks = [seq // ROLLUP_BLOCK for seq, *_ in raw]
    width = -(-(blocks[-1] - blocks[0] + 1) // 499)  # a chart of 1,000 points: 499 buckets and both ends
    runs: dict[int, list[tuple[int, float]]] = {}
    for (seq, _, _, value), block in zip(raw, blocks, strict=True):
        runs.setdefault((block - blocks[0]) // width, []).append((seq, value))
    expected = {raw[0][0]: raw[0][3], raw[-1][0]: raw[-1][3]}
    for points in runs.values():
        expected.update([min(points, key=lambda p: p[1]), max(points, key=lambda p: (p[1], -p[0]))])
    assert got == sorted(expected.items())
    assert 99.0 in series["current_reward"]["value"] and series["current_reward"]["total"] == 60_000
