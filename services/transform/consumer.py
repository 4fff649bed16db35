"""Consume ``transform-requests`` from SQS: record a run per request and enqueue its job."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from pydantic import ValidationError

from services.transform.run_store import enqueue_run, run_from_request
from services.transform.wiring import TransformWiring
from shared.logging import get_logger
from shared.messages import TransformRequest, parse_message
from shared.queues import Unprocessable, consume_queue

log = get_logger(__name__)


async def handle_request_message(wiring: TransformWiring, message: dict[str, Any]) -> None:
    """Handle one SQS message; raising leaves it on the queue for a retry (then the dead-letter queue)."""
    try:
        request = parse_message(message["Body"])
    except ValidationError as exc:
        # Retrying cannot help: straight to the dead-letter queue, where `headwater dlq` shows it.
        raise Unprocessable(f"not a message envelope: {str(exc)[:500]}") from exc
    if not isinstance(request, TransformRequest):
        raise Unprocessable(f"unexpected message type {request.type!r} on transform-requests")
    async with wiring.sessions() as session:
        run, created = await run_from_request(session=session, request=request)
    await enqueue_run(wiring.arq, wiring.settings, run.id)
    log.info(
        "transform_request_accepted",
        transform_id=run.id,
        table=run.table_name,
        dt=run.dt.isoformat(),
        new=created,
        job_id=request.job_id,
        run_id=request.run_id,
    )


async def consume_requests(wiring: TransformWiring, stop: asyncio.Event) -> None:
    """Long-poll the transform-requests queue until ``stop`` is set."""
    sqs = await wiring.aws.get("sqs")

    async def _handler(message: dict[str, Any]) -> None:
        await handle_request_message(wiring, message)

    await consume_queue(sqs, wiring.settings.queue("transform-requests"), _handler, stop=stop)


def start_request_consumer(wiring: TransformWiring) -> asyncio.Task[None]:
    """Start consuming in the background; the wiring stops the consumer when it closes."""
    stop = asyncio.Event()
    task = asyncio.create_task(consume_requests(wiring, stop), name="transform-requests")

    async def _stop() -> None:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    wiring.on_close(_stop)
    return task
