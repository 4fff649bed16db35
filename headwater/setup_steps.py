"""One-shot set-up steps shared by ``up``, ``migrate``, ``bootstrap`` and ``keys``."""

from __future__ import annotations

import importlib
import os
import secrets
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlmodel import SQLModel, col, select

from headwater.config import SERVICES, CliSettings
from shared.auth import ApiKey, KeyVerifier, create_api_key
from shared.db import create_engine, create_tables, session_factory, upgrade_schema
from shared.logging import get_logger

log = get_logger(__name__)


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
    """Apply the versioned migrations (shared/migrations) up to the newest; a pre-Alembic database is adopted."""
    import_all_models()
    engine = create_engine(settings)
    try:
        await upgrade_schema(engine, SQLModel.metadata)
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


class ProvisionedKeys(BaseSettings):
    """Keys a deployment hands to ``bootstrap`` (from its Secret): the poller's key, the first admin key's hash."""

    model_config = SettingsConfigDict(env_prefix="HEADWATER_", extra="ignore")

    # The whole key (hw_<id>_<secret>): the poller's pods get the same value as HEADWATER_INGEST_API_KEY.
    poller_ingest_api_key: SecretStr | None = None
    # "<key id>:<argon2 hash>": the operator keeps the key, the cluster only ever holds its hash.
    admin_key_hash: SecretStr | None = None


def _split_key(key: str) -> tuple[str, str]:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "hw" or not parts[1].isalnum() or len(parts[1]) > 32 or len(parts[2]) < 16:
        raise ValueError("HEADWATER_POLLER_INGEST_API_KEY must look like hw_<id>_<secret> (secret >= 16 characters)")
    return parts[1], key


async def _store_key(settings: CliSettings, *, key_id: str, key_hash: str, scopes: list[str], name: str) -> None:
    """Insert or update the row of ``key_id`` so it holds ``key_hash`` and exactly ``scopes`` (a revocation stays)."""
    engine = create_engine(settings)
    try:
        async with session_factory(engine)() as session:
            row = await session.get(ApiKey, key_id)
            if row is None:
                session.add(ApiKey(key_id=key_id, name=name, scopes=" ".join(sorted(scopes)), key_hash=key_hash))
            else:
                row.key_hash, row.scopes = key_hash, " ".join(sorted(scopes))
                if row.revoked:
                    log.warning("provisioned_key_revoked", key_id=key_id)
                session.add(row)
            await session.commit()
    finally:
        await engine.dispose()


async def _hash_matches(settings: CliSettings, key_id: str, key: str) -> bool:
    engine = create_engine(settings)
    try:
        async with session_factory(engine)() as session:
            row = await session.get(ApiKey, key_id)
    finally:
        await engine.dispose()
    if row is None:
        return False
    try:
        return PasswordHasher().verify(row.key_hash, key)
    except (VerificationError, InvalidHashError):  # a changed key or a malformed hash: store it again
        return False


async def provision_keys(settings: CliSettings, keys: ProvisionedKeys | None = None) -> list[str]:
    """Store the hashes of the keys a deployment provides (idempotent); return the ids stored or kept."""
    keys = keys or ProvisionedKeys()
    done: list[str] = []
    # An empty value (compose's ${VAR:-}) means "not provided", like an absent one.
    poller_key = keys.poller_ingest_api_key.get_secret_value() if keys.poller_ingest_api_key else ""
    admin_hash = keys.admin_key_hash.get_secret_value() if keys.admin_key_hash else ""
    if poller_key:
        key_id, key = _split_key(poller_key)
        # argon2 salts every hash: re-hash only when the stored one no longer verifies, so upgrades change nothing.
        if not await _hash_matches(settings, key_id, key):
            scopes = ["ingest:write"]
            await _store_key(
                settings, key_id=key_id, key_hash=PasswordHasher().hash(key), scopes=scopes, name="poller -> ingest"
            )
        done.append(key_id)
    if admin_hash:
        key_id, _, key_hash = admin_hash.partition(":")
        if not key_id.isalnum() or not key_hash.startswith("$argon2"):
            raise ValueError("HEADWATER_ADMIN_KEY_HASH must look like <key id>:$argon2id$...")
        await _store_key(settings, key_id=key_id, key_hash=key_hash, scopes=["admin"], name="first admin (bootstrap)")
        done.append(key_id)
    return done


def new_key_with_hash() -> tuple[str, str]:
    """Return a new key and its "<key id>:<argon2 hash>" line for HEADWATER_ADMIN_KEY_HASH (nothing is stored)."""
    key_id = secrets.token_hex(6)
    key = f"hw_{key_id}_{secrets.token_urlsafe(32)}"
    return key, f"{key_id}:{PasswordHasher().hash(key)}"
