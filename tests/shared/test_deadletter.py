"""Poison SQS messages (issue #17, scenario 5) against the moto server's real SQS and redrive policies.

A message a handler keeps failing moves to the queue's dead-letter queue after ``MAX_RECEIVES`` receives (moto
applies the redrive policy on receive, as SQS does), the messages behind it keep flowing, ``headwater dlq list``
shows it without secrets and ``headwater dlq redrive`` puts it back once the handler is fixed.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from headwater.main import app
from services.loader.consumers import _handlers as loader_handlers
from services.loader.loading import handle_load_queue_message
from services.transform.consumer import handle_request_message
from shared.aws import AwsClients
from shared.deadletter import MAX_RECEIVES, list_dead_letters, summarize_body
from shared.queues import consume_queue, dead_letter_name, queue_url
from shared.settings import QUEUES, HeadwaterSettings
from tests.helpers import wait_until

POISON = json.dumps({"type": "poison", "api_key": "hw_live_sekrit", "nested": {"password": "hunter2"}, "n": 1})


@pytest.fixture
def cli_env(bootstrapped: HeadwaterSettings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HeadwaterSettings:
    """Point the CLI at the test's emulator (AWS_ENDPOINT_URL is set by make_settings) and not at a running mesh."""
    monkeypatch.setenv("HEADWATER_DATA_DIR", str(tmp_path / "cli"))
    return bootstrapped


async def _cli(*args: str) -> Any:
    result = await asyncio.to_thread(CliRunner().invoke, app, ["dlq", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def _fast_retries(sqs: Any, url: str) -> None:
    """A 1 s visibility timeout so a failed message is received again quickly; the redrive policy is kept."""
    await sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "1"})


async def test_poison_message_on_each_queue_goes_to_its_dlq_and_is_redriven_once_fixed(
    cli_env: HeadwaterSettings,
) -> None:
    settings = cli_env
    handled: dict[str, list[str]] = {name: [] for name in QUEUES}
    fixed = asyncio.Event()
    stop = asyncio.Event()
    async with AwsClients(settings) as aws:
        sqs = await aws.get("sqs")

        def handler(name: str) -> Any:
            async def _handle(message: dict[str, Any]) -> None:
                if message["Body"] == POISON and not fixed.is_set():
                    raise RuntimeError("handler bug")
                if not message["Body"].startswith('{"Service"'):  # S3's test event on s3-events
                    handled[name].append(message["Body"])

            return _handle

        consumers = []
        for name in QUEUES:
            url = await queue_url(sqs, settings.queue(name))
            await _fast_retries(sqs, url)
            await sqs.send_message(QueueUrl=url, MessageBody=POISON)
            for i in range(3):
                await sqs.send_message(QueueUrl=url, MessageBody=f"good-{i}")
            consumers.append(
                asyncio.create_task(consume_queue(sqs, settings.queue(name), handler(name), stop=stop, wait_seconds=1))
            )
        try:
            # The queue keeps flowing behind the poison message.
            await wait_until(
                lambda: _true(all(len(handled[n]) == 3 for n in QUEUES)), timeout=20, message="good messages"
            )
            assert all(sorted(handled[n]) == ["good-0", "good-1", "good-2"] for n in QUEUES)

            async def _all_dead() -> list[Any]:
                letters = await list_dead_letters(sqs, [settings.queue(n) for n in QUEUES])
                return letters if len(letters) == len(QUEUES) else []

            await wait_until(_all_dead, timeout=40, interval=0.5, message="poison messages in every DLQ")
            listed = await _cli("list", "--json")
            assert sorted(x["queue"] for x in listed) == sorted(QUEUES)
            for letter in listed:
                assert letter["receive_count"] >= MAX_RECEIVES
                assert "sekrit" not in letter["summary"] and "hunter2" not in letter["summary"]
                assert '"api_key":"***"' in letter["summary"] and '"n":1' in letter["summary"]
            # Listing leaves the messages where they are.
            assert len(await _cli("list", "--json", "--queue", "load-requests")) == 1

            fixed.set()
            assert await _cli("redrive", "--json", "--queue", "s3-events") == {"s3-events": 1}
            assert await _cli("redrive", "--json") == {"s3-events": 0, "transform-requests": 1, "load-requests": 1}
            await wait_until(
                lambda: _true(all(POISON in handled[n] for n in QUEUES)), timeout=20, message="redriven messages"
            )
            assert await _cli("list", "--json") == []
            assert all(handled[n].count(POISON) == 1 for n in QUEUES)
        finally:
            stop.set()
            await asyncio.gather(*consumers)


async def _true(value: bool) -> bool:
    return value


async def test_unparseable_messages_go_to_the_dlq_at_once_not_deleted(bootstrapped: HeadwaterSettings) -> None:
    """Each real consumer handler refuses a body that is no envelope; before, it was deleted and lost.

    Their wiring is not needed to refuse a body, so none is passed (that path must not touch it).
    """
    settings = bootstrapped
    loader = loader_handlers(None)  # type: ignore[arg-type]
    handlers: dict[str, Any] = {
        "transform-requests": lambda m: handle_request_message(None, m),  # type: ignore[arg-type]
        "load-requests": lambda m: handle_load_queue_message(None, m),  # type: ignore[arg-type]
        "s3-events": loader["s3-events"],
    }
    stop = asyncio.Event()
    async with AwsClients(settings) as aws:
        sqs = await aws.get("sqs")
        tasks = []
        for name, handler in handlers.items():
            await sqs.send_message(QueueUrl=await queue_url(sqs, settings.queue(name)), MessageBody="{not json")
            tasks.append(asyncio.create_task(consume_queue(sqs, settings.queue(name), handler, stop=stop)))
        try:
            for name in handlers:
                dlq = await queue_url(sqs, dead_letter_name(settings.queue(name)))

                async def _held(url: str = dlq) -> int:
                    attributes = await sqs.get_queue_attributes(
                        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
                    )
                    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])

                assert await wait_until(_held, timeout=15, message=f"{name} DLQ") == 1
        finally:
            stop.set()
            await asyncio.gather(*tasks)


async def test_a_hanging_message_does_not_stall_the_queue(bootstrapped: HeadwaterSettings) -> None:
    settings = bootstrapped
    handled: list[str] = []

    async def handler(message: dict[str, Any]) -> None:
        if message["Body"] == "hangs":
            await asyncio.Event().wait()
        handled.append(message["Body"])

    stop = asyncio.Event()
    async with AwsClients(settings) as aws:
        sqs = await aws.get("sqs")
        url = await queue_url(sqs, settings.queue("load-requests"))
        for body in ("hangs", "a", "b"):
            await sqs.send_message(QueueUrl=url, MessageBody=body)
        task = asyncio.create_task(
            consume_queue(sqs, settings.queue("load-requests"), handler, stop=stop, handler_timeout=0.5)
        )
        try:
            await wait_until(lambda: _true(sorted(handled) == ["a", "b"]), timeout=10, message="a and b handled")
        finally:
            stop.set()
            await task


def test_body_summary_masks_secrets_and_account_ids_and_is_short() -> None:
    body = json.dumps(
        {
            "token": "t0k",
            "items": [{"Authorization": "Bearer x"}],
            "arn": "arn:aws:sqs:us-east-1:123456789012:q",
            "pad": "z" * 500,
        }
    )
    summary = summarize_body(body)
    assert "t0k" not in summary and "Bearer" not in summary and "123456789012" not in summary
    assert "<account>" in summary and len(summary) <= 200
    assert summarize_body("plain\n  text") == "plain text"


async def test_dlq_list_without_the_queues_is_a_one_line_error(
    cli_env: HeadwaterSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEADWATER_RESOURCE_PREFIX", "never-bootstrapped")
    result = await asyncio.to_thread(CliRunner().invoke, app, ["dlq", "list"])
    assert result.exit_code == 1
    assert "headwater bootstrap" in result.stderr and "Traceback" not in result.output
