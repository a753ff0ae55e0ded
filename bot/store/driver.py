"""Plain SQL straight on the driver, for the statements of every ingest commit.

Built as SQLAlchemy constructs, those statements cost more than SQLite takes to run them; their text is
written once, with `?` markers, and turned into the driver's own style (psycopg wants `%s`) once.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Connection, CursorResult


def driver_sql(conn: Connection, sql: str, params: Any) -> CursorResult[Any]:
    """Run `sql` (with `?` markers) on the driver: one tuple of parameters, or a list of them (executemany)."""
    return conn.exec_driver_sql(_in_style(sql, conn.dialect.paramstyle), params)


@functools.cache
def _in_style(sql: str, paramstyle: str) -> str:
    return sql if paramstyle == "qmark" else sql.replace("?", "%s")
