"""What SQLite's query planner is told about the messages table before it has measured it.

The partial index by type (tables.ix_messages_type) leaves out training_metrics, which are most rows: it
is small by design. Without statistics SQLite cannot know that, and for "the statuses of this session, in
seq order" it walked the primary key in seq order through every metric row (no sort needed) rather than
read the few index entries: 120 ms for the session page's status history at 1M points, to find none. Where
`ANALYZE` has never measured the table, a plausible measurement is written for it (SQLite documents writing
sqlite_stat1 for this); a later ANALYZE, or `PRAGMA optimize`, replaces it with the real one.
"""

from __future__ import annotations

from sqlalchemy import Connection, Engine

# sqlite_stat1 rows: the table (its primary key) and the type index, as a million metrics and a thousand
# other messages in a few sessions would measure. The numbers only need the right proportions.
MESSAGES_STATISTICS = (
    ("messages", "1000000 100000 1"),  # rows; rows per session_pk; per (session_pk, seq)
    ("ix_messages_type", "1000 100 20 1"),  # rows; per session_pk; per (session_pk, type); per all three
)


def tell_the_planner(engine: Engine) -> None:
    """Write the messages table's statistics where SQLite has none (other databases measure their own)."""
    if engine.dialect.name != "sqlite":
        return
    with engine.begin() as conn:
        if _measured(conn):
            return  # by an earlier start, or by ANALYZE: nothing to write
        conn.exec_driver_sql("ANALYZE alembic_version")  # a one-row table: creates sqlite_stat1 if missing
        if not _measured(conn):
            conn.exec_driver_sql(
                "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES " + ", ".join(["('messages', ?, ?)"] * 2),
                tuple(value for row in MESSAGES_STATISTICS for value in row),
            )
        conn.exec_driver_sql("ANALYZE sqlite_schema")  # this connection reads them now; new ones on opening


def _measured(conn: Connection) -> bool:
    if conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first() is None:
        return False
    return conn.exec_driver_sql("SELECT 1 FROM sqlite_stat1 WHERE tbl = 'messages'").first() is not None
