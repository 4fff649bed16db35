"""SQS helpers: send envelopes, and a long-polling consumer loop that deletes only what it handled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from shared.logging import get_logger
from shared.messages import Envelope, dump_message

log = get_logger(__name__)

# Queue URLs never change for a name at an endpoint; caching saves a round trip per message.
_url_cache: dict[tuple[str, str], str] = {}


async def queue_url(sqs: Any, name: str) -> str:
    """Return the URL of queue ``name`` (cached per client)."""
    key = (str(sqs.meta.endpoint_url), name)
    if key not in _url_cache:
        response = await sqs.get_queue_url(QueueName=name)
        _url_cache[key] = response["QueueUrl"]
    return _url_cache[key]


async def send_message(sqs: Any, queue: str, message: Envelope) -> None:
    """Send one envelope to the named queue."""
    await sqs.send_message(QueueUrl=await queue_url(sqs, queue), MessageBody=dump_message(message))


MessageHandler = Callable[[dict[str, Any]], Awaitable[None]]


async def consume_queue(
    sqs: Any,
    queue: str,
    handler: MessageHandler,
    *,
    stop: asyncio.Event,
    wait_seconds: int = 2,
    batch_size: int = 10,
) -> None:
    """Long-poll ``queue`` until ``stop`` is set, calling ``handler`` on each raw SQS message.

    A message is deleted only after its handler returns; if the handler raises, the message becomes
    visible again after the queue's visibility timeout and is retried (the redrive policy moves it to
    the dead-letter queue after repeated failures).
    """
    url = await queue_url(sqs, queue)
    while not stop.is_set():
        try:
            response = await sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=batch_size, WaitTimeSeconds=wait_seconds
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("sqs_receive_failed", queue=queue, error=str(exc))
            await _wait_or_stop(stop, 1.0)
            continue
        for message in response.get("Messages", []):
            try:
                await handler(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("sqs_message_failed", queue=queue, message_id=message.get("MessageId"), error=str(exc))
                continue
            await sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
