"""Readiness checks against real dependencies, each bounded by a short timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI

from shared.db import ping as ping_database

ReadinessCheck = Callable[[FastAPI], Awaitable[None]]


async def check_redis(app: FastAPI) -> None:
    """Ping the service's Redis."""
    await app.state.redis.ping()


async def check_database(app: FastAPI) -> None:
    """Run SELECT 1 on the metadata database."""
    await ping_database(app.state.db_engine)


def check_bucket(logical_name: str) -> ReadinessCheck:
    """Return a check that the named bucket answers HEAD."""

    async def _check(app: FastAPI) -> None:
        s3 = await app.state.aws.get("s3")
        await s3.head_bucket(Bucket=app.state.settings.bucket(logical_name))

    return _check


def check_queue(logical_name: str) -> ReadinessCheck:
    """Return a check that the named SQS queue exists."""

    async def _check(app: FastAPI) -> None:
        sqs = await app.state.aws.get("sqs")
        await sqs.get_queue_url(QueueName=app.state.settings.queue(logical_name))

    return _check


def check_stream(logical_name: str) -> ReadinessCheck:
    """Return a check that the named Kinesis stream is describable."""

    async def _check(app: FastAPI) -> None:
        kinesis = await app.state.aws.get("kinesis")
        await kinesis.describe_stream_summary(StreamName=app.state.settings.stream(logical_name))

    return _check


async def run_checks(app: FastAPI, checks: dict[str, ReadinessCheck], timeout: float) -> dict[str, Any]:
    """Run every check concurrently; return {name: "ok" | error string}."""

    async def _one(check: ReadinessCheck) -> str:
        try:
            await asyncio.wait_for(check(app), timeout=timeout)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"[:300] or type(exc).__name__
        return "ok"

    names = list(checks)
    results = await asyncio.gather(*(_one(checks[name]) for name in names))
    return dict(zip(names, results, strict=True))
