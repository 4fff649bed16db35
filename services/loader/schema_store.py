"""Read table schemas from the registry's S3 copies (contract 2: ``shared.contracts.schema_key``)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from shared.contracts import schema_key
from shared.schemas import TableSchema, parse_schema_yaml
from shared.settings import HeadwaterSettings


class SchemaNotFound(LookupError):
    """No schema document exists for the name and version."""


async def load_schema(s3: Any, settings: HeadwaterSettings, name: str, version: int) -> TableSchema:
    """Fetch and parse a schema version; raise SchemaNotFound when it is not registered."""
    try:
        response = await s3.get_object(Bucket=settings.bucket("curated"), Key=schema_key(name, version))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
            raise SchemaNotFound(f"schema {name} v{version} is not registered") from exc
        raise
    async with response["Body"] as body:
        text = (await body.read()).decode()
    return parse_schema_yaml(text)
