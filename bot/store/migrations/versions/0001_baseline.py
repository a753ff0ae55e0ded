"""The schema of 0.1.0 as it was before migrations: what `create_all` made until then.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "graph_points",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("session_pk", sa.Integer(), nullable=False),
        sa.Column("graph_id", sa.String(length=128), nullable=False),
        sa.Column("metric", sa.String(length=128), nullable=False),
        sa.Column("point", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("graph_points", schema=None) as batch_op:
        batch_op.create_index("graph_points_series", ["session_pk", "graph_id", "metric", "id"], unique=False)

    op.create_table(
        "graphs",
        sa.Column("session_pk", sa.Integer(), nullable=False),
        sa.Column("graph_id", sa.String(length=128), nullable=False),
        sa.Column("meta", sa.Text(), nullable=False),
        sa.Column("untrimmed", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("session_pk", "graph_id"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("session_pk", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("body_hash", sa.String(length=32), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("session_pk", "type", "key"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "messages",
        sa.Column("session_pk", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("episode", sa.BigInteger(), nullable=True),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("received", sa.String(length=32), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("session_pk", "seq"),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_messages_type",
            ["session_pk", "type", "seq"],
            unique=False,
            sqlite_where=sa.text("type != 'training_metrics'"),
            postgresql_where=sa.text("type != 'training_metrics'"),
        )

    op.create_table(
        "series_rollups",
        sa.Column("session_pk", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=128), nullable=False),
        sa.Column("block", sa.BigInteger(), nullable=False),
        sa.Column("block_size", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("nan_count", sa.Integer(), nullable=False),
        sa.Column("min_seq", sa.BigInteger(), nullable=True),
        sa.Column("min_episode", sa.BigInteger(), nullable=True),
        sa.Column("min_ts", sa.Double(), nullable=True),
        sa.Column("min_value", sa.Double(), nullable=True),
        sa.Column("max_seq", sa.BigInteger(), nullable=True),
        sa.Column("max_episode", sa.BigInteger(), nullable=True),
        sa.Column("max_ts", sa.Double(), nullable=True),
        sa.Column("max_value", sa.Double(), nullable=True),
        sa.Column("first_seq", sa.BigInteger(), nullable=True),
        sa.Column("first_episode", sa.BigInteger(), nullable=True),
        sa.Column("first_ts", sa.Double(), nullable=True),
        sa.Column("first_value", sa.Double(), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=True),
        sa.Column("last_episode", sa.BigInteger(), nullable=True),
        sa.Column("last_ts", sa.Double(), nullable=True),
        sa.Column("last_value", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("session_pk", "metric", "block"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "sessions",
        sa.Column("pk", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.String(length=128), nullable=False),
        sa.Column("epoch", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=True),
        sa.Column("algorithm", sa.String(length=64), nullable=True),
        sa.Column("model_generation", sa.BigInteger(), nullable=True),
        sa.Column("total_episodes", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.Column("ended_at", sa.Double(), nullable=True),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("current_episode", sa.BigInteger(), nullable=True),
        sa.Column("message_count", sa.BigInteger(), nullable=False),
        sa.Column("latest_metrics", sa.Text(), nullable=True),
        sa.Column("room_code", sa.String(length=16), nullable=True),
        sa.Column("room_password_hash", sa.String(length=160), nullable=True),
        sa.Column("max_spectators", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("pk"),
        sa.UniqueConstraint("room_code", name="uq_sessions_room_code"),
        sa.UniqueConstraint("session_id", name="uq_sessions_session_id"),
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index("ix_sessions_status", ["status", "updated_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_status")

    op.drop_table("sessions")
    op.drop_table("series_rollups")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_messages_type",
            sqlite_where=sa.text("type != 'training_metrics'"),
            postgresql_where=sa.text("type != 'training_metrics'"),
        )

    op.drop_table("messages")
    op.drop_table("idempotency_keys")
    op.drop_table("graphs")
    with op.batch_alter_table("graph_points", schema=None) as batch_op:
        batch_op.drop_index("graph_points_series")

    op.drop_table("graph_points")
