"""loader_job.redshift_target: a Redshift job's own cluster or Serverless workgroup

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 22:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("loader_job", schema=None) as batch_op:
        batch_op.add_column(sa.Column("redshift_target", sqlmodel.sql.sqltypes.AutoString(length=2048), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("loader_job", schema=None) as batch_op:
        batch_op.drop_column("redshift_target")
