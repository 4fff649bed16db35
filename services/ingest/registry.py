"""Which custom event types exist: a type is accepted when transform's registry holds a schema of that name.

The registry stores every schema YAML in the curated bucket at ``shared.contracts.schema_key``; answers are
cached briefly so a batch of custom events costs at most one listing per type.
"""

from __future__ import annotations

import time
from typing import Any

from shared.aws import AwsClients
from shared.contracts import schema_versions_prefix

POSITIVE_TTL_S = 60.0
NEGATIVE_TTL_S = 5.0


class SchemaRegistry:
    """Look up registered schema names in S3, with a short cache."""

    def __init__(self, aws: AwsClients, *, bucket: str) -> None:
        self._aws = aws
        self._bucket = bucket
        self._cache: dict[str, tuple[float, bool]] = {}

    async def is_registered(self, name: str) -> bool:
        """Return whether a schema called ``name`` is registered."""
        now = time.monotonic()
        cached = self._cache.get(name)
        if cached and cached[0] > now:
            return cached[1]
        s3: Any = await self._aws.get("s3")
        listing = await s3.list_objects_v2(Bucket=self._bucket, Prefix=schema_versions_prefix(name), MaxKeys=1)
        found = bool(listing.get("KeyCount") or listing.get("Contents"))
        self._cache[name] = (now + (POSITIVE_TTL_S if found else NEGATIVE_TTL_S), found)
        return found
