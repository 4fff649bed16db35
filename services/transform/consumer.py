"""Consume ``transform-requests`` from SQS: record a run per request and enqueue its job."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import ValidationError

from services.transform.runs import enqueue_run, run_from_request
from shared.logging import get_logger
from shared.messages import TransformRequest, parse_message
from shared.queues import consume_queue

log = get_logger(__name__)


async def handle_request_message(ctx: dict[str, Any], message: dict[str, Any]) -> None:
    """Handle one SQS message; raising leaves it on the queue for a retry (then the dead-letter queue)."""
    try:
        request = parse_message(message["Body"])
    except ValidationError as exc:
        log.warning("transform_request_invalid", message_id=message.get("MessageId"), error=str(exc)[:500])
        return  # unparseable: retrying cannot help; deleting it keeps the queue moving
    if not isinstance(request, TransformRequest):
        log.warning("transform_request_unexpected_type", type=request.type)
        return
    async with ctx["sessions"]() as session:
        run, created = await run_from_request(session=session, request=request)
    await enqueue_run(ctx["redis"], ctx["settings"], run.id)
    log.info(
        "transform_request_accepted",
        transform_id=run.id,
        table=run.table_name,
        dt=run.dt.isoformat(),
        new=created,
        job_id=request.job_id,
        run_id=request.run_id,
    )


async def consume_requests(ctx: dict[str, Any], stop: asyncio.Event) -> None:
    """Long-poll the transform-requests queue until ``stop`` is set."""
    sqs = await ctx["aws"].get("sqs")

    async def _handler(message: dict[str, Any]) -> None:
        await handle_request_message(ctx, message)

    await consume_queue(sqs, ctx["settings"].queue("transform-requests"), _handler, stop=stop)
