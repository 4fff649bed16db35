"""SQS helpers: send envelopes, and a long-polling consumer loop that deletes only what it handled."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from shared.logging import get_logger
from shared.messages import Envelope, dump_message

log = get_logger(__name__)

# A failing handler gets this long before the message counts as failed: it must end before the queue's
# visibility timeout (60 s) hands the message to another receive, and a hanging message must not stall the loop.
HANDLER_TIMEOUT_S = 50.0
DEAD_LETTER_SUFFIX = "-dlq"

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


def dead_letter_name(queue: str) -> str:
    """Return the name of the dead-letter queue of ``queue`` (a full queue name)."""
    return f"{queue}{DEAD_LETTER_SUFFIX}"


class Unprocessable(Exception):
    """Raised by a handler for a message no retry can handle (not an envelope): it goes to the DLQ at once."""


MessageHandler = Callable[[dict[str, Any]], Awaitable[None]]


async def consume_queue(
    sqs: Any,
    queue: str,
    handler: MessageHandler,
    *,
    stop: asyncio.Event,
    wait_seconds: int = 2,
    batch_size: int = 10,
    handler_timeout: float = HANDLER_TIMEOUT_S,
) -> None:
    """Long-poll ``queue`` until ``stop`` is set, calling ``handler`` on each raw SQS message.

    A message is deleted only after its handler returns; if the handler raises, the message becomes
    visible again after the queue's visibility timeout and is retried (the redrive policy moves it to
    the dead-letter queue after repeated failures). A handler that hangs past ``handler_timeout`` counts as
    failed, and one that raises ``Unprocessable`` sends the message to the dead-letter queue at once, so a
    poison message never stalls the messages behind it.
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
                await asyncio.wait_for(handler(message), timeout=handler_timeout)
            except asyncio.CancelledError:
                raise
            except Unprocessable as exc:
                log.warning(
                    "sqs_message_unprocessable", queue=queue, message_id=message.get("MessageId"), error=str(exc)
                )
                await _dead_letter(sqs, queue, url, message)
                continue
            except Exception as exc:
                log.exception("sqs_message_failed", queue=queue, message_id=message.get("MessageId"), error=str(exc))
                continue
            await sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


async def _dead_letter(sqs: Any, queue: str, url: str, message: dict[str, Any]) -> None:
    """Move ``message`` to ``queue``'s dead-letter queue: sent there first, then deleted here (never lost)."""
    try:
        dlq = await queue_url(sqs, dead_letter_name(queue))
        await sqs.send_message(QueueUrl=dlq, MessageBody=message["Body"])
        await sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    except Exception as exc:  # left on the queue: the redrive policy moves it after its receives
        log.warning("sqs_dead_letter_failed", queue=queue, message_id=message.get("MessageId"), error=str(exc))


async def _wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
