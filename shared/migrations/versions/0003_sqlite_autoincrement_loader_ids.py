"""SQLite: loader_job and loader_job_run ids AUTOINCREMENT (never reused after a delete)

A SQLite database made by create_all before the models asked for AUTOINCREMENT (schema as of 1e85d76) was
adopted at the baseline as it was: its loader ids came from max(rowid) + 1, so deleting the newest job handed
its id to the next one (a client holding the old id would then read or delete someone else's job). SQLite
cannot alter that in place: each table is copied into one declared AUTOINCREMENT (rows, indexes and the unique
constraint kept). Tables that already have it (made by the baseline) are left alone, as is every other backend
(Postgres sequences never reuse ids).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 23:30:00
"""

from __future__ import annotations

from alembic import op
from sqlalchemy import text

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("loader_job", "loader_job_run")


def _lacks_autoincrement(table: str) -> bool:
    sql = op.get_bind().execute(text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": table})
    created = sql.scalar_one_or_none()
    return created is not None and "AUTOINCREMENT" not in created.upper()


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        if _lacks_autoincrement(table):
            with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": True}):
                pass


def downgrade() -> None:
    # Ids that were never reused stay valid without AUTOINCREMENT: nothing to undo.
    pass
