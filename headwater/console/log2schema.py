"""``POST /console/log2schema``: propose a schema from a sample of JSON lines (transform's ``infer``), for the upload
form. Nothing is stored: the proposal goes into the form, and registering it is the normal ``POST /v1/schemas``.

Any valid key may ask (the inference costs CPU, so not anonymously); the sample is bounded by ``MAX_SAMPLE_BYTES``.
"""

from __future__ import annotations

import asyncio
import io
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from headwater.console.auth import principal_of
from services.transform.infer import Inference, build_schema, read_records, render_yaml
from shared.errors import ApiError, UnprocessableError

MAX_SAMPLE_BYTES = 16 * 1024 * 1024
MAX_LINES = 200_000

router = APIRouter()


class SampleTooLargeError(ApiError):
    status_code = 413
    code = "payload_too_large"


def _infer(sample: bytes, name: str, version: int) -> dict[str, Any]:
    inference = read_records(io.BytesIO(sample), Inference(), MAX_LINES)
    schema, notes = build_schema(inference, name=name, version=version)
    return {"yaml": render_yaml(schema, notes), "records": inference.records, "bad_lines": inference.bad_lines}


@router.post("/console/log2schema", include_in_schema=False)
async def propose_schema(
    request: Request,
    name: Annotated[str, Query(min_length=1, max_length=127, pattern=r"^[a-z_][a-z0-9_]*$")] = "inferred",
    version: Annotated[int, Query(ge=1, le=2_147_483_647)] = 1,
) -> dict[str, Any]:
    """Infer a schema from the body (JSON lines, plain or gzip)."""
    await principal_of(request)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_SAMPLE_BYTES:
            raise SampleTooLargeError(f"a sample is at most {MAX_SAMPLE_BYTES // (1024 * 1024)} MiB; send fewer lines")
        chunks.append(chunk)
    try:
        return await asyncio.to_thread(_infer, b"".join(chunks), name, version)
    except ValueError as exc:
        raise UnprocessableError(str(exc), details=[{"field": "file", "reason": str(exc)}]) from exc
