"""One-shot set-up steps shared by ``up``, ``migrate``, ``bootstrap`` and ``keys``."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from headwater.config import SERVICES, CliSettings
from shared.auth import ApiKey, KeyVerifier, create_api_key
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


async def ensure_local_key(settings: CliSettings, path: Path, scopes: list[str], name: str) -> tuple[str, bool]:
    """Return the key kept in ``path`` (mode 0600) if it still verifies, else create one; also say if created."""
    existing = _read_key(path)
    if existing:
        engine = create_engine(settings)
        try:
            principal = await KeyVerifier(session_factory(engine)).verify(existing)
        finally:
            await engine.dispose()
        if principal is not None and principal.scopes == frozenset(scopes):
            return existing, False
    key = await new_api_key(settings, scopes, name=name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key, True


def _read_key(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


async def ensure_admin_key(settings: CliSettings) -> tuple[Path, bool]:
    """Create the local admin key on first start; return (where it is kept, whether it was created)."""
    _, created = await ensure_local_key(settings, settings.admin_key_file, ["admin"], "local admin (headwater up)")
    return settings.admin_key_file, created


async def ensure_poller_ingest_key(settings: CliSettings) -> str:
    """Return the ingest:write key the local poller posts meter reads with (kept beside the admin key)."""
    key, _ = await ensure_local_key(
        settings, settings.home / "poller-ingest.key", ["ingest:write"], "poller -> ingest (headwater up)"
    )
    return key


async def list_api_keys(settings: CliSettings) -> list[dict[str, Any]]:
    """Return every API key's id, name, scopes, creation time and revocation, oldest first (never the hash)."""
    columns = (ApiKey.key_id, ApiKey.name, ApiKey.scopes, ApiKey.created_at, ApiKey.revoked)
    engine = create_engine(settings)
    try:
        await create_tables(engine)
        async with session_factory(engine)() as session:
            rows = (await session.exec(select(*columns).order_by(col(ApiKey.created_at)))).all()
    finally:
        await engine.dispose()
    return [
        {
            "key_id": key_id,
            "name": name,
            "scopes": scopes.split(),
            "created_at": created.isoformat(),
            "revoked": revoked,
        }
        for key_id, name, scopes, created, revoked in rows
    ]
