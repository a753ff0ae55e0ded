"""Opening the database: URL normalisation, SQLite durability pragmas, and the two engines.

The store uses SQLAlchemy's synchronous engine on its own threads: one writer thread (group commit)
and a few reader threads, so the event loop never waits on the database.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import DataError
from sqlalchemy.pool import StaticPool

SUPPORTED = "sqlite:///PATH, sqlite:// (in memory) or postgresql://USER@HOST/DB"


def normalise_url(url: str) -> URL:
    """Map the URLs users write to the drivers we ship: sqlite3 and psycopg 3."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ValueError(f"invalid database URL {url!r}; expected {SUPPORTED}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(f"unsupported database URL {url!r}; expected {SUPPORTED}")


def is_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def create_engines(url: str, *, sqlite_synchronous: str = "FULL", readers: int = 4) -> tuple[Engine, Engine]:
    """Return (writer, reader) engines; for an in-memory SQLite database both are one engine."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() != "sqlite":
        writer = create_engine(parsed, pool_size=1, max_overflow=0, pool_pre_ping=True)
        # Readers skip the two round trips a read would otherwise add (pre-ping, ROLLBACK): in autocommit each
        # statement sees the latest commit, as it does under READ COMMITTED in a transaction; a connection
        # that PostgreSQL dropped fails its read once and the read is tried again (Store.read).
        reader = create_engine(
            parsed, pool_size=readers, max_overflow=0, isolation_level="AUTOCOMMIT", pool_reset_on_return=None
        )
        _driver_refusals(writer)
        return writer, reader
    if is_memory(parsed):
        engine = create_engine(parsed, poolclass=StaticPool, connect_args={"check_same_thread": False})
        _sqlite_pragmas(engine, sqlite_synchronous, begin="BEGIN")
        _driver_refusals(engine)
        return engine, engine
    if parsed.database:
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    writer = create_engine(parsed, pool_size=1, max_overflow=0, connect_args={"check_same_thread": False})
    reader = create_engine(parsed, pool_size=readers, max_overflow=0, connect_args={"check_same_thread": False})
    # IMMEDIATE takes the write lock at BEGIN, so the writer's read-then-update cannot be raced.
    _sqlite_pragmas(writer, sqlite_synchronous, begin="BEGIN IMMEDIATE")
    _sqlite_pragmas(reader, sqlite_synchronous, begin="BEGIN")
    _driver_refusals(writer)
    return writer, reader


def _driver_refusals(engine: Engine) -> None:
    """A value the driver cannot bind is refused with a plain ValueError or OverflowError (sqlite3: an integer
    past 64 bits, a lone surrogate; psycopg: a lone surrogate), which SQLAlchemy passes on as it is, like a bug
    of ours. Raised while a statement executes, it is the database's refusal of the value: it becomes the
    DataError a DBAPI raises for the values it refuses itself, so only those are answered 422 (writes.py)."""

    @event.listens_for(engine, "handle_error")
    def _value_refused(context: ExceptionContext) -> DataError | None:
        original = context.original_exception
        if context.sqlalchemy_exception is None and isinstance(original, ValueError | OverflowError):
            return DataError(context.statement, context.parameters, original)
        return None


def _sqlite_pragmas(engine: Engine, synchronous: str, *, begin: str) -> None:
    # pysqlite's own transaction handling is off (isolation_level=None) so that BEGIN is ours to emit;
    # this is SQLAlchemy's documented recipe for correct SQLite transactions.
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)
