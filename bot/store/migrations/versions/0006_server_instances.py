"""Server instances' leases: a dead owner's training jobs and daemon runs are found by any instance; a stop
asked of another instance reaches the job's owner through its row.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "server_instances",
        sa.Column("instance_id", sa.String(length=256), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("heartbeat_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("instance_id"),
    )
    op.add_column("training_jobs", sa.Column("stop_requested_at", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_column("stop_requested_at")
    op.drop_table("server_instances")
