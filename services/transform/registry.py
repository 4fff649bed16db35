"""The schema registry: immutable schema versions in the metadata DB, mirrored to S3 for the loader."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from services.transform.builtin_schemas import BUILTIN_SCHEMAS
from services.transform.models import SchemaRead, SchemaSummary, SchemaVersion
from shared.contracts import schema_key
from shared.errors import ConflictError, NotFoundError, UnprocessableError
from shared.logging import get_logger
from shared.schemas import SchemaError, TableSchema, parse_schema_yaml
from shared.settings import HeadwaterSettings

log = get_logger(__name__)


def validate_schema_text(text: str) -> TableSchema:
    """Parse a schema document or raise a 422 naming the line and the reason."""
    try:
        return parse_schema_yaml(text)
    except SchemaError as exc:
        detail: dict[str, Any] = {"field": exc.field or "schema", "reason": exc.message, "line": exc.line}
        raise UnprocessableError(f"invalid schema: {exc}", details=[detail]) from exc


def summary(row: SchemaVersion, settings: HeadwaterSettings) -> SchemaSummary:
    """Shape a stored version for the API."""
    uri = f"s3://{settings.bucket('curated')}/{schema_key(row.name, row.version)}"
    return SchemaSummary(name=row.name, version=row.version, sha256=row.sha256, created_at=row.created_at, s3_uri=uri)


def read_model(row: SchemaVersion, settings: HeadwaterSettings) -> SchemaRead:
    """Shape a stored version with its definition for the API."""
    definition = parse_schema_yaml(row.yaml_text).model_dump(mode="json")
    return SchemaRead(**summary(row, settings).model_dump(), definition=definition, yaml=row.yaml_text)


async def _find(session: AsyncSession, name: str, version: int) -> SchemaVersion | None:
    query = select(SchemaVersion).where(SchemaVersion.name == name, SchemaVersion.version == version)
    return (await session.exec(query)).first()


async def register_schema(
    *, session: AsyncSession, s3: Any, settings: HeadwaterSettings, text: str
) -> tuple[SchemaVersion, bool]:
    """Register a schema version; return (row, created). Re-uploading the same document is a no-op.

    Versions are immutable: a different document under an existing name and version is a 409. The document is
    parsed in a thread: a large one never holds the event loop.
    """
    schema = await asyncio.to_thread(validate_schema_text, text)
    digest = hashlib.sha256(text.encode()).hexdigest()
    existing = await _find(session, schema.name, schema.version)
    if existing is not None:
        if existing.sha256 != digest:
            raise ConflictError(
                f"schema {schema.name} v{schema.version} already exists with different content; "
                "versions are immutable, upload a new version",
                details=[{"field": "version", "reason": "already registered"}],
            )
        return existing, False
    # S3 first: the loader reads schemas from there, and a retried upload rewrites the same bytes.
    await s3.put_object(
        Bucket=settings.bucket("curated"),
        Key=schema_key(schema.name, schema.version),
        Body=text.encode(),
        ContentType="application/yaml",
        Metadata={"sha256": digest},
    )
    row = SchemaVersion(name=schema.name, version=schema.version, yaml_text=text, sha256=digest)
    session.add(row)
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        existing = await _find(session, schema.name, schema.version)
        if existing is None or existing.sha256 != digest:
            raise ConflictError(f"schema {schema.name} v{schema.version} was registered concurrently") from None
        return existing, False
    await session.refresh(row)
    log.info("schema_registered", schema=schema.name, version=schema.version)
    return row, True


async def list_schemas(*, session: AsyncSession, name: str | None = None) -> list[SchemaVersion]:
    """Return registered versions ordered by name, newest version first."""
    query = select(SchemaVersion)
    if name:
        query = query.where(SchemaVersion.name == name)
    query = query.order_by(col(SchemaVersion.name), col(SchemaVersion.version).desc())
    return list((await session.exec(query)).all())


async def get_schema_row(*, session: AsyncSession, name: str, version: int) -> SchemaVersion:
    """Return one version or raise 404."""
    row = await _find(session, name, version)
    if row is None:
        raise NotFoundError(f"schema {name} v{version} is not registered")
    return row


async def load_schema(*, session: AsyncSession, name: str, version: int) -> TableSchema:
    """Return the parsed schema of a registered version (404 when unknown)."""
    return parse_schema_yaml((await get_schema_row(session=session, name=name, version=version)).yaml_text)


async def ensure_builtin_schemas(*, session: AsyncSession, s3: Any, settings: HeadwaterSettings) -> None:
    """Register the built-in schemas (idempotent; also repairs a missing S3 copy)."""
    for text in BUILTIN_SCHEMAS.values():
        row, created = await register_schema(session=session, s3=s3, settings=settings, text=text)
        if not created:
            await s3.put_object(
                Bucket=settings.bucket("curated"),
                Key=schema_key(row.name, row.version),
                Body=row.yaml_text.encode(),
                ContentType="application/yaml",
                Metadata={"sha256": row.sha256},
            )
