"""poller_device: the durable copy of the poller's device registry

The registry was kept only in Redis, so a flush lost every registered meter. Each registration (the credentials
as a Fernet token, never clear text) is now written here first; Redis is rebuilt from these rows when it lost them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 00:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "poller_device",
        sa.Column("cloud_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("owner_email", sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column("secret", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("protocol", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("host", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("cloud_id"),
    )


def downgrade() -> None:
    op.drop_table("poller_device")
