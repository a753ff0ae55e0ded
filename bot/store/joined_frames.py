"""A history page's frames as one JSON array, joined by the database.

Fetching a page of 100,000 frames as 100,000 rows cost more than building them (a Python string and a
row tuple each, then a join and an encode): the database joins them itself, in chunks of CHUNK frames
(SQLite's group_concat over the page in seq order, as a BLOB so that nothing is decoded; PostgreSQL's
string_agg ordered by seq), and Python joins the few chunks. A chunk stays far below SQLite's largest
string (1 GB) for any messages the API accepts in practice; one that does not fit is read row by row.

SQLite before 3.44 has no ORDER BY inside an aggregate: group_concat takes the rows in the order the
subquery gives them, which is seq order (the subquery runs as a co-routine over the primary key; a test
checks the order on the SQLite in use).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, LargeBinary, cast, func, literal, literal_column, select
from sqlalchemy.dialects.postgresql import aggregate_order_by

from bot.store.reads import MessageFilter, fetch_tuples, frames_query

CHUNK = 50_000  # frames per query


def joined_frames(
    conn: Connection, session_pk: int, session_id: str, where: MessageFilter, limit: int
) -> tuple[int, int, list[bytes]]:
    """(how many frames, the last one's seq or 0, the page's frames as comma-separated pieces): a JSON
    array is `[` + the pieces joined by `,` + `]`, which is left to whoever sends it (bot/server/api/pieces.py)."""
    parts: list[bytes] = []
    count, last = 0, 0
    while count < limit:
        chunk = replace(where, after_seq=last or where.after_seq)
        n, top, joined = _chunk(conn, session_pk, session_id, chunk, min(CHUNK, limit - count))
        if n:
            parts.append(joined)
            count, last = count + n, top
        if n < CHUNK:
            break
    return count, last, parts


def _chunk(
    conn: Connection, session_pk: int, session_id: str, where: MessageFilter, limit: int
) -> tuple[int, int, bytes]:
    page = frames_query(session_pk, session_id, where, limit).subquery()
    if conn.dialect.name == "postgresql":
        joined: Any = func.string_agg(page.c.frame, aggregate_order_by(literal_column("','"), page.c.seq))
    else:
        joined = cast(func.group_concat(page.c.frame, literal(",")), LargeBinary)
    try:
        [(n, top, text)] = fetch_tuples(conn, select(func.count(), func.max(page.c.seq), joined))
    except conn.dialect.loaded_dbapi.Error as exc:
        if not _too_big(exc):
            raise
        rows = fetch_tuples(conn, frames_query(session_pk, session_id, where, limit))
        return len(rows), rows[-1][0], ",".join(frame for _, _, frame in rows).encode()
    if not n:
        return 0, 0, b""
    return int(n), int(top), text if isinstance(text, bytes) else text.encode()


def _too_big(exc: Exception) -> bool:
    """The joined chunk is past the database's largest string: SQLite's SQLITE_TOOBIG, PostgreSQL's
    program_limit_exceeded (class 54) or a refused allocation (out of memory, class 53)."""
    sqlstate = getattr(exc, "sqlstate", None) or ""
    return "too big" in str(exc) or sqlstate[:2] in ("53", "54")
