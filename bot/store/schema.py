"""The database's schema version, kept by Alembic (bot/store/migrations/).

A new database is created at the newest revision. One that is behind is never changed silently: the
server refuses it, naming `bot db upgrade`, unless `TMS_AUTO_MIGRATE=1`. A database made before
migrations existed (tables, no `alembic_version`) is taken as the baseline revision if it has the
baseline's columns, and refused otherwise.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, inspect

from bot.store.errors import StoreError
from bot.store.planner import tell_the_planner
from bot.store.tables import metadata

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
BASELINE = "0001"


class SchemaBehindError(StoreError):
    """The database is at an older schema revision than this version needs."""


@functools.cache
def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    revision = scripts().get_current_head()
    assert revision is not None
    return revision


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def current_revision(conn: Connection) -> str | None:
    """The database's revision; the baseline for a database made before migrations; None when empty."""
    revision = MigrationContext.configure(conn).get_current_revision()
    if revision is not None:
        return revision
    existing = set(inspect(conn).get_table_names())
    if not existing & set(metadata.tables):
        return None
    problems = []
    for table, columns in sorted(_baseline_columns().items()):
        if table not in existing:
            problems.append(f"no table {table}")
            continue
        have = {column["name"] for column in inspect(conn).get_columns(table)}
        if lacks := sorted(columns - have):
            problems.append(f"table {table} lacks {', '.join(lacks)}")
    if problems:
        raise StoreError(
            f"the database {_name(conn)} was made by a version older than the first migration "
            f"({'; '.join(problems)}): it cannot be upgraded; move it aside and start again"
        )
    return BASELINE


@functools.cache
def _baseline_columns() -> dict[str, frozenset[str]]:
    """The baseline revision's tables and columns, read off a scratch in-memory database migrated to it."""
    engine = create_engine("sqlite://")
    with engine.begin() as conn:
        command.upgrade(_config(conn), BASELINE)
        inspector = inspect(conn)
        tables = {
            table: frozenset(column["name"] for column in inspector.get_columns(table))
            for table in inspector.get_table_names()
            if table != "alembic_version"
        }
    engine.dispose()
    return tables


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Bring the database to the newest revision (creating it when empty); (revision before, after)."""
    with engine.begin() as conn:
        before = current_revision(conn)
        if before is None:
            metadata.create_all(conn)
            MigrationContext.configure(conn).stamp(scripts(), "head")
        elif before != head():
            _check_known(conn, before)
            if MigrationContext.configure(conn).get_current_revision() is None:
                MigrationContext.configure(conn).stamp(scripts(), BASELINE)
            command.upgrade(_config(conn), "head")
            logger.info("database %s migrated from revision %s to %s", _name(conn), before, head())
    return before, head()


def prepare_schema(engine: Engine, auto_migrate: bool = False) -> None:
    """Create a new database; accept one at the newest revision; migrate or refuse one that is behind. Then
    SQLite's planner is told what it has not measured (store/planner.py)."""
    _to_head(engine, auto_migrate)
    tell_the_planner(engine)


def _to_head(engine: Engine, auto_migrate: bool) -> None:
    with engine.connect() as conn:
        revision = current_revision(conn)
        if revision == head():
            return
        if revision is not None:
            _check_known(conn, revision)
            if not auto_migrate:
                raise SchemaBehindError(
                    f"the database {_name(conn)} is at schema revision {revision} and this version needs {head()}: "
                    f"run `bot db upgrade` with the same database URL (back it up first), or start the server "
                    f"with TMS_AUTO_MIGRATE=1"
                )
    upgrade(engine)


def _check_known(conn: Connection, revision: str) -> None:
    if revision not in {script.revision for script in scripts().walk_revisions()}:
        raise StoreError(
            f"the database {_name(conn)} is at schema revision {revision!r}, which this version does not know: "
            "it was made by a newer version"
        )


def _name(conn: Connection) -> str:
    return repr(conn.engine.url.render_as_string(hide_password=True))
