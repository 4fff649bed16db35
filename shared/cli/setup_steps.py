"""One-shot set-up steps shared by ``up``, ``migrate``, ``bootstrap`` and ``keys``."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from shared.auth import ApiKey, create_api_key
from shared.cli.config import SERVICES, CliSettings, read_admin_key
from shared.db import create_engine, create_tables, session_factory


def import_all_models() -> None:
    """Import every service's models so SQLModel's metadata knows all tables."""
    _ = ApiKey  # the shared table
    for service in SERVICES:
        try:
            importlib.import_module(f"services.{service}.models")
        except ModuleNotFoundError as exc:
            if exc.name != f"services.{service}.models":
                raise


async def migrate(settings: CliSettings) -> None:
    """Create every table of every service (idempotent)."""
    import_all_models()
    engine = create_engine(settings)
    try:
        await create_tables(engine)
    finally:
        await engine.dispose()


async def new_api_key(settings: CliSettings, scopes: list[str], name: str = "") -> str:
    """Create and return a new API key (stored hashed)."""
    engine = create_engine(settings)
    try:
        await create_tables(engine)
        async with session_factory(engine)() as session:
            return await create_api_key(session=session, scopes=scopes, name=name)
    finally:
        await engine.dispose()


async def ensure_admin_key(settings: CliSettings) -> tuple[Path, bool]:
    """Create the local admin key on first start; return (where it is kept, whether it was created)."""
    from shared.auth import KeyVerifier

    existing = read_admin_key(settings)
    if existing:
        engine = create_engine(settings)
        try:
            if await KeyVerifier(session_factory(engine)).verify(existing):
                return settings.admin_key_file, False
        finally:
            await engine.dispose()
    key = await new_api_key(settings, ["admin"], name="local admin (headwater up)")
    path = settings.admin_key_file
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return path, True
