"""A room's password hash is 168 characters: PostgreSQL refused it in VARCHAR(160) (SQLite never checked).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.alter_column(
            "room_password_hash",
            existing_type=sa.VARCHAR(length=160),
            type_=sa.String(length=255),
            existing_nullable=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.alter_column(
            "room_password_hash",
            existing_type=sa.String(length=255),
            type_=sa.VARCHAR(length=160),
            existing_nullable=True,
        )
