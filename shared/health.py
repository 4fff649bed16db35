"""Readiness checks against real dependencies, each bounded by a short timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from shared.db import ping as ping_database
from shared.wiring import Clients

ReadinessCheck = Callable[[Clients], Awaitable[None]]


async def check_redis(wiring: Clients) -> None:
    """Ping the service's Redis."""
    await wiring.redis.ping()


async def check_database(wiring: Clients) -> None:
    """Run SELECT 1 on the metadata database."""
    await ping_database(wiring.db_engine)


def check_bucket(logical_name: str) -> ReadinessCheck:
    """Return a check that the named bucket answers HEAD."""

    async def _check(wiring: Clients) -> None:
        s3 = await wiring.aws.get("s3")
        await s3.head_bucket(Bucket=wiring.settings.bucket(logical_name))

    return _check


def check_queue(logical_name: str) -> ReadinessCheck:
    """Return a check that the named SQS queue exists."""

    async def _check(wiring: Clients) -> None:
        sqs = await wiring.aws.get("sqs")
        await sqs.get_queue_url(QueueName=wiring.settings.queue(logical_name))

    return _check


def check_stream(logical_name: str) -> ReadinessCheck:
    """Return a check that the named Kinesis stream is describable."""

    async def _check(wiring: Clients) -> None:
        kinesis = await wiring.aws.get("kinesis")
        await kinesis.describe_stream_summary(StreamName=wiring.settings.stream(logical_name))

    return _check


async def run_checks(wiring: Clients, checks: dict[str, ReadinessCheck], timeout: float) -> dict[str, Any]:
    """Run every check concurrently; return {name: "ok" | error string}."""

    async def _one(check: ReadinessCheck) -> str:
        try:
            await asyncio.wait_for(check(wiring), timeout=timeout)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__
        return "ok"

    names = list(checks)
    results = await asyncio.gather(*(_one(checks[name]) for name in names))
    return dict(zip(names, results, strict=True))
