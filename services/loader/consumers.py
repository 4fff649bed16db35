"""The worker's SQS consumers: S3 marker events start days, transform's answers move them to loading or retry.

They run beside the arq worker in the same process and stop when its wiring closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from services.loader import loading, scanner
from services.loader.wiring import LoaderWiring
from shared.queues import MessageHandler, Unprocessable, consume_queue

# How long a stopping consumer may take to finish the message in hand before it is cancelled.
STOP_GRACE_S = 5.0


def _handlers(wiring: LoaderWiring) -> dict[str, MessageHandler]:
    async def on_s3_event(message: dict[str, Any]) -> None:
        try:
            json.loads(message["Body"])
        except ValueError as exc:  # not an S3 notification at all: no retry can help
            raise Unprocessable(f"not JSON: {exc}") from exc
        await scanner.handle_s3_event(wiring, message["Body"])

    async def on_load_message(message: dict[str, Any]) -> None:
        await loading.handle_load_queue_message(wiring, message)

    return {"s3-events": on_s3_event, "load-requests": on_load_message}


async def start_consumers(wiring: LoaderWiring) -> list[asyncio.Task[None]]:
    """Start consuming the loader's queues in the background; the wiring stops them when it closes."""
    sqs = await wiring.aws.get("sqs")
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(
            consume_queue(sqs, wiring.settings.queue(name), handler, stop=stop, wait_seconds=1), name=name
        )
        for name, handler in _handlers(wiring).items()
    ]

    async def _stop() -> None:
        stop.set()
        _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    wiring.on_close(_stop)
    return tasks
