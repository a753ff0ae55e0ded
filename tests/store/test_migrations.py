"""Migrations: a database of an older schema is upgraded by `bot db upgrade` with nothing lost, refused
(naming the command) by a server that is not told to migrate, and every revision chain ends at tables.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, text

from bot.config import Settings
from bot.schemas import RoomSpec, SessionCreate, TrainingMetricsData
from bot.store import Store, StoreError
from bot.store.batch import prepare
from bot.store.engine import normalise_url
from bot.store.reads import MessageFilter, get_session, read_frames
from bot.store.rooms import hash_password
from bot.store.schema import BASELINE, SchemaBehindError, _config, head
from bot.store.tables import metadata
from bot.store.writes import CreateSession, Ingest, commit_group
from tests.conftest import TIMEOUT

pytestmark = pytest.mark.slow  # each test runs `bot db` or `bot serve` in a process of its own


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    postgres: str = request.getfixturevalue("postgres_url")
    return postgres


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = create_engine(normalise_url(url))
    yield engine
    engine.dispose()


def at_baseline_with_data(engine: Engine) -> None:
    """A database as the release before migrations left it: its schema, two sessions, 100 points. Written by
    today's code at the newest revision, then migrated down to the baseline (today's writes name columns the
    baseline has not got)."""
    with engine.begin() as conn:
        command.upgrade(_config(conn), "head")
    points = [TrainingMetricsData(episode=i, current_reward=float(i)) for i in range(100)]
    jobs = [
        CreateSession("kept", SessionCreate(name="old run", metadata={"lr": 0.001})),
        Ingest("kept", prepare("training_metrics", points), "key-1", "hash"),
        CreateSession("room", SessionCreate(room=RoomSpec(max_spectators=3))),
    ]
    outcomes = commit_group(engine, jobs, time.time())
    assert not [outcome for outcome in outcomes if isinstance(outcome, Exception)], outcomes
    with engine.begin() as conn:
        command.downgrade(_config(conn), BASELINE)


def bot_db(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "db", *args, "--database-url", url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )


async def test_an_older_database_is_refused_then_upgraded_with_nothing_lost(url: str, engine: Engine) -> None:
    at_baseline_with_data(engine)
    with pytest.raises(SchemaBehindError, match="run `bot db upgrade`"):
        async with Store(url):
            pass
    assert bot_db("current", url=url).stdout.strip() == f"{BASELINE} (behind {head()})"
    upgraded = bot_db("upgrade", url=url)
    assert upgraded.returncode == 0 and f"at revision {head()} (was {BASELINE})" in upgraded.stdout, upgraded
    assert bot_db("current", url=url).stdout.strip() == f"{head()} (up to date)"
    async with Store(url) as store:
        row = await store.read(get_session, "kept")
        assert row is not None and row.name == "old run" and row.last_seq == 100
        frames = await store.read(read_frames, row.pk, "kept", MessageFilter(), 1000)
        assert [seq for seq, _, _ in frames] == list(range(1, 101))
        # What the old schema could not hold on PostgreSQL: a room password's hash.
        spec = SessionCreate(room=RoomSpec(password="correct horse"))
        await store.write(CreateSession("guarded", spec, hash_password("correct horse")))
        guarded = await store.read(get_session, "guarded")
        assert guarded is not None and len(guarded.room_password_hash) == 168


async def test_a_database_made_before_migrations_is_taken_as_the_baseline(url: str, engine: Engine) -> None:
    """No alembic_version table, the baseline's tables: TMS_AUTO_MIGRATE's path upgrades it in place."""
    at_baseline_with_data(engine)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    assert bot_db("current", url=url).stdout.strip() == f"{BASELINE} (behind {head()})"
    async with Store(url, auto_migrate=True) as store:
        row = await store.read(get_session, "kept")
        assert row is not None and row.last_seq == 100
    assert bot_db("current", url=url).stdout.strip() == f"{head()} (up to date)"


async def test_a_database_older_than_the_baseline_is_refused(url: str, engine: Engine) -> None:
    with engine.begin() as conn:
        command.upgrade(_config(conn), BASELINE)
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("DROP TABLE graph_points"))
    with pytest.raises(StoreError, match="older than the first migration .*no table graph_points"):
        async with Store(url):
            pass
    assert bot_db("upgrade", url=url).returncode == 1


def test_current_on_a_missing_sqlite_file_says_so_and_creates_nothing(tmp_path: Path) -> None:
    """Review 1 finding 14: `bot db current` on a path with a typo made an empty database there and exited
    0. A status command creates nothing: it names the missing file and exits 2; `upgrade` still creates."""
    missing = tmp_path / "no" / "such" / "typo.db"
    answer = bot_db("current", url=f"sqlite:///{missing}")
    assert answer.returncode == 2 and not (tmp_path / "no").exists(), answer  # not even its folders
    assert str(missing) in answer.stderr and len(answer.stderr.strip().splitlines()) == 1, answer.stderr
    assert bot_db("upgrade", url=f"sqlite:///{missing}").returncode == 0 and missing.exists()


def test_the_migrations_end_at_the_tables(engine: Engine) -> None:
    """Upgrading an empty database revision by revision gives exactly what tables.py describes."""
    with engine.begin() as conn:
        command.upgrade(_config(conn), "head")
    with engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert differences == []


async def test_a_server_migrates_at_start_only_when_told(
    server_factory: Any, settings: Settings, db_path: Path
) -> None:
    """Behind: `bot serve` exits naming the command; with TMS_AUTO_MIGRATE=1 it serves the old data."""
    url = f"sqlite:///{db_path}"
    engine = create_engine(url)
    at_baseline_with_data(engine)
    engine.dispose()
    refused = subprocess.run(
        [sys.executable, "-m", "bot", "serve", "--database-url", url, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert refused.returncode != 0 and "bot db upgrade" in refused.stderr + refused.stdout, refused
    live = await server_factory(settings.model_copy(update={"database_url": url, "auto_migrate": True}))
    async with httpx.AsyncClient(base_url=live.url, timeout=TIMEOUT) as client:
        history = (await client.get("/api/training/sessions/kept/history", params={"limit": 1000})).json()
        assert [m["seq"] for m in history["messages"]] == list(range(1, 101))
