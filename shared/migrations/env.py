"""Alembic environment: runs on the connection and metadata `shared.db.upgrade_schema` hands over."""

from __future__ import annotations

from alembic import context

attributes = context.config.attributes
# Batch mode: SQLite alters tables by copying them, which Alembic does only in batch operations.
context.configure(connection=attributes["connection"], target_metadata=attributes["metadata"], render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
