"""HTTP routes of stream archives: attach the archiver to a Kinesis stream Headwater does not write."""

from __future__ import annotations

from fastapi import APIRouter

from services.replay import archives as archive_service
from services.replay.archive_models import ArchiveCreate, ArchiveList, ArchiveRead
from services.replay.deps import AwsDep, SettingsDep
from shared.auth import JobsAdminScope, ReadScope
from shared.deps import RedisDep
from shared.guard import body_limit
from shared.openapi import error_responses, rule_responses

router = APIRouter(prefix="/v1")

ARCHIVE_BODY_LIMIT = 4096


@router.post(
    "/archives",
    tags=["archives"],
    summary="Archive an existing Kinesis stream into the raw archive",
    description=(
        "Registers `stream` (one Headwater does not write) for the archiver process, which reads every shard from "
        "its oldest retained record on, with checkpoints, and writes the raw archive under `source` in the usual "
        "layout (`<source>/dt=/hour=/`, by arrival time) and `_COMPLETE` markers. `raw_events`, `live_events` and "
        "`all_events` in `POST /v1/query` then include the stream. Idempotent for the same `source` (202)."
    ),
    status_code=202,
    response_model=ArchiveRead,
    responses={
        **error_responses(404, 409),
        **rule_responses(422, "`stream` is not one of Headwater's own streams (events, replay)"),
    },
    openapi_extra=body_limit(ARCHIVE_BODY_LIMIT),
)
async def create_archive(
    _: JobsAdminScope, body: ArchiveCreate, settings: SettingsDep, redis: RedisDep, aws: AwsDep
) -> ArchiveRead:
    """Register the stream; 404 when it does not exist, 409 when it is archived under another source."""
    kinesis = await aws.get("kinesis")
    return await archive_service.create_archive(settings=settings, redis=redis, kinesis=kinesis, request=body)


@router.get(
    "/archives", tags=["archives"], summary="List archived streams and their progress", response_model=ArchiveList
)
async def list_archives(_: ReadScope, settings: SettingsDep, redis: RedisDep) -> ArchiveList:
    """List every registered archive with each shard's checkpoint and count."""
    return ArchiveList(archives=await archive_service.list_archives(settings=settings, redis=redis))
