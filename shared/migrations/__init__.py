"""Versioned schema migrations of the metadata database (Alembic); `headwater migrate` applies them."""
