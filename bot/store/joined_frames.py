"""A history page's frames as comma-separated pieces of one JSON array, joined by the database, a chunk
at a time (the first is sent while the next is read: bot/server/relay.py).

On SQLite, fetching a page of 100,000 frames as 100,000 rows cost more than building them (a Python
string and a row tuple each, then a join and an encode): SQLite joins them itself, in chunks of CHUNK
frames (group_concat over the page in seq order, as a BLOB so that nothing is decoded). A chunk stays far
below SQLite's largest string (1 GB) for the messages the API accepts in practice; one that does not fit
is read row by row. On PostgreSQL rows are faster: string_agg has to sort them again (a fifth slower).

SQLite before 3.44 has no ORDER BY inside an aggregate: group_concat takes the rows in the order the
subquery gives them, which is seq order (the subquery runs as a co-routine over the primary key; a test
checks the order on the SQLite in use).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import orjson
from sqlalchemy import Connection, LargeBinary, cast, func, literal, select

from bot.store.reads import MessageFilter, fetch_tuples, frames_query

CHUNK = 10_000  # frames per query: about 2 MB, sent while the next is read


def frame_runs(
    conn: Connection, session_pk: int, session_id: str, where: MessageFilter, limit: int
) -> Iterator[tuple[int, int, bytes]]:
    """At most `limit` frames in seq order, as (how many, the last one's seq, those frames joined by `,`),
    a chunk at a time: a JSON array is `[` + the pieces joined by `,` + `]`, left to whoever sends it."""
    count, last = 0, 0
    while count < limit:
        chunk = replace(where, after_seq=last or where.after_seq)
        n, top, joined = _chunk(conn, session_pk, session_id, chunk, min(CHUNK, limit - count))
        if n:
            yield n, top, joined
            count, last = count + n, top
        if n < CHUNK:
            break


def _chunk(
    conn: Connection, session_pk: int, session_id: str, where: MessageFilter, limit: int
) -> tuple[int, int, bytes]:
    dialect = conn.dialect.name
    if dialect == "sqlite":
        page = frames_query(session_pk, session_id, where, limit, dialect).subquery()
        joined = cast(func.group_concat(page.c.frame, literal(",")), LargeBinary)
        query = select(func.count(), func.max(page.c.seq), joined)
        try:
            [(n, top, text)] = fetch_tuples(conn, query)
        except conn.dialect.loaded_dbapi.Error as exc:
            if not _too_big(exc):
                raise
        else:
            return (int(n), int(top), text) if n else (0, 0, b"")
    query = frames_query(session_pk, session_id, where, limit, dialect)
    frames = [frame for (frame,) in fetch_tuples(conn, query.with_only_columns(query.selected_columns.frame))]
    last = orjson.loads(frames[-1])["seq"] if frames else 0  # the frame alone: a third of the objects per row
    return len(frames), last, ",".join(frames).encode()


def _too_big(exc: Exception) -> bool:
    """The joined chunk is past SQLite's largest string (SQLITE_TOOBIG)."""
    return "too big" in str(exc)
