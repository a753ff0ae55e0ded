"""Many rows in few statements: the messages of an ingest commit, most of the writer's work.

sqlite3's executemany binds and steps one row at a time and lets go of the GIL around every step; with the
event loop busy, taking it back is a wait per row, and 1,000 rows cost several times what one statement of
1,000 rows costs. So SQLite gets INSERTs of many rows each: whole chunks of CHUNK rows, then the rest in
power-of-two pieces, so that a handful of statement texts (each prepared once, then cached) cover every
batch size. PostgreSQL gets COPY, its own bulk path, in one round trip instead of one per row, in the
binary format: psycopg's binary dumpers take half the CPU of its text ones, and they run on the writer
thread, holding the GIL (server CPU per 1,000 points ingested: 6.7 ms with text, 5.6 ms with binary here;
PostgreSQL's own share grows by about 0.6 ms). The rollups' upserts are multi-row INSERTs on both.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from itertools import chain
from typing import Any

from sqlalchemy import Connection, Dialect, Table
from sqlalchemy.exc import DataError, DBAPIError

from bot.store.driver import driver_sql

# Rows per statement: 256 rows of the widest table (series_rollups, 22 columns) stay well under SQLite's
# 32,766 parameters and PostgreSQL's 65,535.
CHUNK = 256


def insert_rows(conn: Connection, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert `rows` (one value per column of `table`, in order) within the connection's transaction."""
    if conn.dialect.name == "postgresql":
        _copy(conn, table, rows)
    else:
        upsert_rows(conn, table, rows, "")


def upsert_rows(conn: Connection, table: Table, rows: Sequence[tuple[Any, ...]], on_conflict: str) -> None:
    """Insert `rows` in INSERTs of many rows each, `on_conflict` (an ON CONFLICT clause) after their VALUES.
    No two rows may share a key: PostgreSQL refuses a statement that would update a row twice."""
    start = 0
    while start < len(rows):
        size = min(CHUNK, 1 << (len(rows) - start).bit_length() - 1)  # the largest power of two that fits
        sql = _values_sql(table, size, on_conflict)
        driver_sql(conn, sql, tuple(chain.from_iterable(rows[start : start + size])))
        start += size


@functools.cache
def _values_sql(table: Table, rows: int, on_conflict: str) -> str:
    columns = ", ".join(column.name for column in table.c)
    row = f"({', '.join(['?'] * len(table.c))})"
    return f"INSERT INTO {table.name} ({columns}) VALUES {', '.join([row] * rows)} {on_conflict}".rstrip()


def _copy(conn: Connection, table: Table, rows: Sequence[tuple[Any, ...]]) -> None:
    """COPY FROM STDIN on the connection's own psycopg cursor. Its errors are made SQLAlchemy's, as an
    execute's would be: a value the database or the driver refuses becomes a DataError (a 422), the rest a
    DBAPIError (a 503)."""
    columns = ", ".join(column.name for column in table.c)
    statement = f"COPY {table.name} ({columns}) FROM STDIN (FORMAT BINARY)"
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    driver_error = conn.dialect.loaded_dbapi.Error  # psycopg's, imported only where PostgreSQL is used
    try:
        with cursor.copy(statement) as copy:
            copy.set_types(_copy_types(table, conn.dialect))
            for row in rows:
                copy.write_row(row)
    except driver_error as exc:
        raise DBAPIError.instance(statement, None, exc, driver_error) from exc
    except (ValueError, OverflowError) as exc:  # a lone surrogate, an integer past 64 bits
        raise DataError(statement, None, exc) from exc
    finally:
        cursor.close()


@functools.cache
def _copy_types(table: Table, dialect: Dialect) -> list[str]:
    """Each column's PostgreSQL type by a name psycopg knows: "VARCHAR(32)" is "varchar", "BIGINT" "bigint"."""
    return [column.type.compile(dialect).split("(", 1)[0].lower() for column in table.c]
