"""The tables: sessions, messages (the history: one row per message, for replay and per-metric reads),
series_rollups (per-metric min/max per block, for charts of long series).

Timestamps are float seconds since the epoch (UTC), so time ranges compare numbers on every backend.
`messages.data` holds the exact JSON text of a frame's `data`, and with `received` (the envelope's
timestamp) the frame spectators got is rebuilt byte for byte; a metric's points are read from it.
One small row per point is what keeps ingest fast: a row per metric per point cost four more inserts.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    literal_column,
)

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
    Column("model_generation", BigInteger),
    Column("total_episodes", BigInteger),
    Column("status", String(16), nullable=False),
    Column("metadata", Text, nullable=False, default="{}"),
    Column("tags", Text, nullable=False, server_default="[]"),  # a JSON list of labels (schemas.Tags)
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("ended_at", Double),
    # Allocated in the transaction that stores the rows, so commit order and seq order agree.
    Column("last_seq", BigInteger, nullable=False, default=0),
    Column("current_episode", BigInteger),
    Column("message_count", BigInteger, nullable=False, default=0),
    Column("latest_metrics", Text),
    # Spectator rooms: a short code to join by, an optional password (salted scrypt), a spectator limit.
    Column("room_code", String(16)),
    Column("room_password_hash", String(255)),  # scrypt$<salt hex>$<digest hex>: 168 characters
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
    Column("episode", BigInteger),
    Column("ts", Double, nullable=False),
    # The frame spectators got is rebuilt from these (by the database, see reads.frame_text): the rest of
    # the envelope is 40 % of a frame and needn't be stored. `received` is the envelope's ISO timestamp.
    Column("received", String(32), nullable=False),
    Column("data", Text, nullable=False),
    sqlite_with_rowid=False,
)
# By type, for every type but training_metrics: those are most rows, and a scan in seq order finds them
# anyway, so indexing them would cost a third of ingest for nothing. Queries repeat NOT_METRICS to use it.
NOT_METRICS = messages.c.type != literal_column("'training_metrics'")
Index(
    "ix_messages_type",
    messages.c.session_pk,
    messages.c.type,
    messages.c.seq,
    sqlite_where=NOT_METRICS,
    postgresql_where=NOT_METRICS,
)

# Per metric and per block of ROLLUP_BLOCK seqs: how many points, and the lowest and highest of them.
# Kept by the ingest transaction, so a chart of a million points reads eight thousand rows, not a million;
# small enough that a series of 32,000 points already has a block per two of a chart's 1,000 points.
ROLLUP_BLOCK = 128
series_rollups = Table(
    "series_rollups",
    metadata,
    Column("session_pk", Integer, primary_key=True),
    Column("metric", String(128), primary_key=True),
    Column("block", BigInteger, primary_key=True),
    Column("block_size", Integer, nullable=False),  # ROLLUP_BLOCK; older databases (1,024, no column) are refused
    Column("count", Integer, nullable=False),
    Column("nan_count", Integer, nullable=False),
    Column("min_seq", BigInteger),
    Column("min_episode", BigInteger),
    Column("min_ts", Double),
    Column("min_value", Double),
    Column("max_seq", BigInteger),
    Column("max_episode", BigInteger),
    Column("max_ts", Double),
    Column("max_value", Double),
    # The block's first and last non-NaN points: a chart always keeps the ends of a series.
    Column("first_seq", BigInteger),
    Column("first_episode", BigInteger),
    Column("first_ts", Double),
    Column("first_value", Double),
    Column("last_seq", BigInteger),
    Column("last_episode", BigInteger),
    Column("last_ts", Double),
    Column("last_value", Double),
    sqlite_with_rowid=False,
)

# A performance graph: its description (title, labels, metrics, max_points) here, its points appended to
# graph_points, so that an update costs the same whatever the graph holds; the newest max_points per
# series are read back when someone looks. Older points are trimmed now and then (`untrimmed` counts).
graphs = Table(
    "graphs",
    metadata,
    Column("session_pk", Integer, primary_key=True),
    Column("graph_id", String(128), primary_key=True),
    Column("meta", Text, nullable=False),
    Column("untrimmed", Integer, nullable=False),
    Column("updated_at", Double, nullable=False),
    sqlite_with_rowid=False,
)

graph_points = Table(
    "graph_points",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("session_pk", Integer, nullable=False),
    Column("graph_id", String(128), nullable=False),
    Column("metric", String(128), nullable=False),
    Column("point", Text, nullable=False),  # {"timestamp": ..., "value": ...} as spectators receive it
    Index("graph_points_series", "session_pk", "graph_id", "metric", "id"),
)

# Kept for the life of the session: an SDK spool may be replayed hours later.
idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("session_pk", Integer, primary_key=True),
    Column("type", String(32), primary_key=True),  # a key is scoped to its session and message type
    Column("key", String(128), primary_key=True),
    Column("body_hash", String(32), nullable=False),  # the same key with another body is a conflict, not a retry
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    sqlite_with_rowid=False,
)

# Training jobs started through the API (bot/server/training/jobs.py): one row per job, its child process's fate
# included, so that status survives the server and a restart can tell what a crash left running.
training_jobs = Table(
    "training_jobs",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), nullable=False, unique=True),
    Column("scenario", String(128), nullable=False),
    Column("status", String(16), nullable=False),  # running, stopping, completed, stopped, failed
    Column("session_id", String(128), nullable=False),
    Column("params", Text, nullable=False),  # the start request's body, as JSON
    Column("total_episodes", BigInteger, nullable=False),
    Column("episodes_completed", BigInteger, nullable=False, default=0),
    Column("latest_progress", Text),  # the last training_progress payload, as JSON
    Column("host", String(256), nullable=False),  # the server instance that supervises the process (its lease)
    Column("pid", Integer),
    Column("exit_code", Integer),
    Column("error", Text),
    Column("created_at", Double, nullable=False),
    Column("ended_at", Double),
    Column("stop_requested_at", Double),  # a stop asked of another instance, for the owner to carry out
    Index("ix_training_jobs_status", "status", "created_at"),
)

# The training daemon (bot/server/training/daemon.py): its configuration (one row, id 1; absent: the defaults) and
# its runs. A scheduled run claims its slot ("after:<the previous scheduled run>", or "first") by inserting
# it: with several instances on one database, the unique slot lets exactly one of them run it.
daemon_config = Table(
    "daemon_config",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("enabled", Boolean, nullable=False),
    Column("interval_minutes", Double, nullable=False),
    Column("episodes_per_run", Integer, nullable=False),
    Column("scenario", String(64), nullable=False),
    Column("updated_at", Double, nullable=False),
)

daemon_runs = Table(
    "daemon_runs",
    metadata,
    Column("pk", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False, unique=True),
    Column("slot", String(128), unique=True),  # scheduled runs only: "first" or "after:<run id>"
    Column("trigger", String(16), nullable=False),  # schedule or manual
    Column("status", String(16), nullable=False),  # running, succeeded, failed
    Column("scenario", String(64), nullable=False),
    Column("episodes", Integer, nullable=False),
    Column("job_id", String(64)),
    Column("instance", String(256), nullable=False),
    Column("started_at", Double, nullable=False),
    Column("ended_at", Double),
    Column("avg_reward", Double),
    Column("final_reward", Double),
    Column("error", Text),
)

# Server instances that supervise training jobs (bot/server/training/jobs.py): each renews its lease (`heartbeat_at`)
# every few seconds. A job or daemon run whose owner (`training_jobs.host`, `daemon_runs.instance`) holds no
# live lease lost its process with its server: any instance then ends it as failed.
server_instances = Table(
    "server_instances",
    metadata,
    Column("instance_id", String(256), primary_key=True),
    Column("started_at", Double, nullable=False),
    Column("heartbeat_at", Double, nullable=False),
)

# API keys (bot/server/edge/auth.py): only a SHA-256 of each key is kept, and keys are looked up by it. `key_id` is
# the public handle (`bot keys list`, `bot keys revoke`); `scopes` are space-separated (read, write, admin);
# `session_id` limits a key to one session.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("name", String(128)),
    Column("scopes", String(64), nullable=False),
    Column("session_id", String(128)),
    Column("created_at", Double, nullable=False),
    Column("revoked_at", Double),
)
