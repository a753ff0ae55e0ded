"""The tables: sessions, messages (history by message, for replay), series (history by metric, for charts).

Timestamps are float seconds since the epoch (UTC), so time ranges compare numbers on every backend.
A NaN metric value is stored as NULL in `series.value` (SQLite cannot store NaN) and read back as NaN;
±Infinity is stored as itself. `messages.frame` holds the exact JSON text spectators receive.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Double, Index, Integer, MetaData, String, Table, Text, UniqueConstraint

metadata = MetaData()

sessions = Table(
    "sessions",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("session_id", String(128), nullable=False),
    # Changes when a session id is deleted and created again, so a returning spectator can tell.
    Column("epoch", String(32), nullable=False),
    Column("name", String(256)),
    Column("algorithm", String(64)),
    Column("model_generation", Integer),
    Column("total_episodes", Integer),
    Column("status", String(16), nullable=False),
    Column("metadata", Text, nullable=False, default="{}"),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("ended_at", Double),
    # Allocated in the transaction that stores the rows, so commit order and seq order agree.
    Column("last_seq", BigInteger, nullable=False, default=0),
    Column("current_episode", Integer),
    Column("message_count", BigInteger, nullable=False, default=0),
    Column("latest_metrics", Text),
    # Spectator rooms: a short code to join by, an optional password (salted scrypt), a spectator limit.
    Column("room_code", String(16)),
    Column("room_password_hash", String(160)),
    Column("max_spectators", Integer),
    UniqueConstraint("session_id", name="uq_sessions_session_id"),
    UniqueConstraint("room_code", name="uq_sessions_room_code"),
)
Index("ix_sessions_status", sessions.c.status, sessions.c.updated_at)

messages = Table(
    "messages",
    metadata,
    Column("session_pk", Integer, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("type", String(32), nullable=False),
    Column("episode", Integer),
    Column("ts", Double, nullable=False),
    Column("frame", Text, nullable=False),
    sqlite_with_rowid=False,
)
Index("ix_messages_type", messages.c.session_pk, messages.c.type, messages.c.seq)

series = Table(
    "series",
    metadata,
    Column("session_pk", Integer, primary_key=True),
    Column("metric", String(128), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("episode", Integer),
    Column("ts", Double, nullable=False),
    Column("value", Double),
    sqlite_with_rowid=False,
)

# Per metric and per block of ROLLUP_BLOCK seqs: how many points, and the lowest and highest of them.
# Kept by the ingest transaction, so a chart of a million points reads a thousand rows, not a million.
ROLLUP_BLOCK = 1024
series_rollups = Table(
    "series_rollups",
    metadata,
    Column("session_pk", Integer, primary_key=True),
    Column("metric", String(128), primary_key=True),
    Column("block", BigInteger, primary_key=True),
    Column("count", Integer, nullable=False),
    Column("nan_count", Integer, nullable=False),
    Column("min_seq", BigInteger),
    Column("min_episode", Integer),
    Column("min_ts", Double),
    Column("min_value", Double),
    Column("max_seq", BigInteger),
    Column("max_episode", Integer),
    Column("max_ts", Double),
    Column("max_value", Double),
    sqlite_with_rowid=False,
)

# The names a session has logged, so that listing them never scans the series.
metric_names = Table(
    "metric_names",
    metadata,
    Column("session_pk", Integer, primary_key=True),
    Column("metric", String(128), primary_key=True),
    sqlite_with_rowid=False,
)

graphs = Table(
    "graphs",
    metadata,
    Column("session_pk", Integer, primary_key=True),
    Column("graph_id", String(128), primary_key=True),
    Column("state", Text, nullable=False),
    Column("updated_at", Double, nullable=False),
    sqlite_with_rowid=False,
)

# Kept for the life of the session: an SDK spool may be replayed hours later.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("session_pk", Integer, primary_key=True),
    Column("key", String(128), primary_key=True),
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)
