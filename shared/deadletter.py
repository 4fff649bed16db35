"""Dead-letter queues: create each queue with one, list what landed there, and redrive it once fixed.

Every mesh queue ``Q`` has ``Q-dlq``. SQS itself moves a message there after ``MAX_RECEIVES`` receives that
did not delete it (a handler that keeps failing); a consumer sends a message it can never handle (not an
envelope at all) there at once with ``shared.queues.Unprocessable``. Nothing is dropped silently, and the
``headwater dlq`` commands show and redrive what is held.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from shared.queues import dead_letter_name, queue_url
from shared.redaction import redact_account_ids

MAX_RECEIVES = 5
VISIBILITY_TIMEOUT_S = 60
# How long listed messages stay hidden while the listing pages through the queue (then made visible again).
_LIST_HOLD_S = 30
_SUMMARY_CHARS = 200
# Values of keys like these never leave the queue in a summary.
_SECRET_KEY = re.compile(
    r"secret|password|passwd|token|api[_-]?key|authori[sz]ation|credential|signature|private", re.I
)
_MASK = "***"


async def ensure_queue_with_dead_letter(sqs: Any, queue: str) -> str:
    """Create ``queue`` (a full queue name) and its dead-letter queue with a redrive policy; return its URL."""
    dlq_url = (await sqs.create_queue(QueueName=dead_letter_name(queue)))["QueueUrl"]
    attributes = await sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    policy = {"deadLetterTargetArn": attributes["Attributes"]["QueueArn"], "maxReceiveCount": str(MAX_RECEIVES)}
    created = await sqs.create_queue(
        QueueName=queue,
        Attributes={"VisibilityTimeout": str(VISIBILITY_TIMEOUT_S), "RedrivePolicy": json.dumps(policy)},
    )
    return str(created["QueueUrl"])


@dataclass(frozen=True)
class DeadLetter:
    """One message held in a dead-letter queue, as ``headwater dlq list`` shows it."""

    queue: str
    message_id: str
    receive_count: int
    summary: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (_MASK if _SECRET_KEY.search(str(k)) else _mask(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def summarize_body(body: str, limit: int = _SUMMARY_CHARS) -> str:
    """Return a short one-line view of a message body with secret-looking values and account ids masked."""
    try:
        text = json.dumps(_mask(json.loads(body)), separators=(",", ":"), default=str)
    except ValueError:
        text = " ".join(body.split())  # not JSON: shown as text, whitespace folded
    text = redact_account_ids(text) or ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def _receive_all(sqs: Any, url: str, hold_s: int) -> list[dict[str, Any]]:
    """Receive every visible message of ``url`` once, hiding each for ``hold_s`` seconds."""
    seen: dict[str, dict[str, Any]] = {}
    while True:
        response = await sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=hold_s,
            AttributeNames=["ApproximateReceiveCount"],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        fresh = [m for m in messages if m["MessageId"] not in seen]
        if not fresh:
            return list(seen.values())
        seen.update((m["MessageId"], m) for m in fresh)


async def list_dead_letters(sqs: Any, queues: list[str]) -> list[DeadLetter]:
    """Return what each queue's dead-letter queue holds, leaving it there (visible again at once)."""
    letters: list[DeadLetter] = []
    for queue in queues:
        url = await queue_url(sqs, dead_letter_name(queue))
        messages = await _receive_all(sqs, url, _LIST_HOLD_S)
        for message in messages:
            # The listing's own receive counts too: report the receives before it.
            received = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1")) - 1
            letters.append(DeadLetter(queue, message["MessageId"], received, summarize_body(message["Body"])))
            await sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
    return letters


async def redrive(sqs: Any, queue: str) -> int:
    """Move every message of ``queue``'s dead-letter queue back to ``queue``; return how many moved.

    Each message is sent before it is deleted from the dead-letter queue, so a crash in between redrives it
    twice rather than losing it (the consumers are idempotent per message content).
    """
    source, dlq = await queue_url(sqs, queue), await queue_url(sqs, dead_letter_name(queue))
    moved = 0
    for message in await _receive_all(sqs, dlq, VISIBILITY_TIMEOUT_S):
        kwargs: dict[str, Any] = {"QueueUrl": source, "MessageBody": message["Body"]}
        if message.get("MessageAttributes"):
            kwargs["MessageAttributes"] = message["MessageAttributes"]
        await sqs.send_message(**kwargs)
        await sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])
        moved += 1
    return moved
