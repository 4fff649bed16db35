"""A -> B -> C, the chain of the failure tests and the Luigi comparison: B can fail, sleep or time out on demand."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.transform.chains.base import Task, TaskContext
from shared.logging import get_logger

log = get_logger(__name__)


class AbcParams(BaseModel):
    """Knobs for the failure tests (paths on the worker's machine)."""

    model_config = ConfigDict(extra="forbid")
    run: str = Field(default="default", max_length=100, description="names the targets apart")
    trace: str = Field(default="", description="file each task appends its name to when it starts")
    fail_file: str = Field(default="", description="BTask fails while this file exists")
    sleep_s: float = Field(default=0.0, ge=0, le=120, description="BTask (and StuckTask) sleep this long")


def _trace(params: AbcParams, name: str) -> None:
    if params.trace:
        with open(params.trace, "a", encoding="utf-8") as trace:
            trace.write(name + "\n")


def _broken(params: AbcParams) -> bool:
    return bool(params.fail_file) and os.path.exists(params.fail_file)


class ATask(Task):
    """Write "a"."""

    Params = AbcParams
    extension = "txt"

    async def run(self, context: TaskContext, params: Any, inputs: list[bytes]) -> bytes:
        _trace(params, "A")
        return b"a"


class BTask(Task):
    """Append "b" to A's output; fails while ``fail_file`` exists."""

    Params = AbcParams
    extension = "txt"

    def requires(self, params: Any) -> list[tuple[type[Task], BaseModel]]:
        return [(ATask, params)]

    async def run(self, context: TaskContext, params: Any, inputs: list[bytes]) -> bytes:
        _trace(params, "B")
        print(f"B starts on {inputs[0]!r}")
        log.info("b_started", run=params.run, input_bytes=len(inputs[0]))  # structlog, as service code logs
        logging.getLogger(__name__).warning("B reads %d bytes", len(inputs[0]))
        await asyncio.sleep(params.sleep_s)
        if _broken(params):
            raise RuntimeError(f"B is broken while {params.fail_file} exists")
        return inputs[0] + b"b"


class CTask(Task):
    """Append "c" to B's output."""

    Params = AbcParams
    extension = "txt"

    def requires(self, params: Any) -> list[tuple[type[Task], BaseModel]]:
        return [(BTask, params)]

    async def run(self, context: TaskContext, params: Any, inputs: list[bytes]) -> bytes:
        _trace(params, "C")
        return inputs[0] + b"c"


class StuckTask(Task):
    """Sleep ``sleep_s``: longer than its one-second timeout fails it."""

    Params = AbcParams
    timeout_s = 1.0

    async def run(self, context: TaskContext, params: Any, inputs: list[bytes]) -> bytes:
        _trace(params, "Stuck")
        await asyncio.sleep(params.sleep_s)
        return b"{}"


class FlakyTask(Task):
    """Fail the first two attempts, then succeed: two retries with a short backoff."""

    Params = AbcParams
    retries = 2
    retry_delay_s = 0.05

    async def run(self, context: TaskContext, params: Any, inputs: list[bytes]) -> bytes:
        _trace(params, "Flaky")
        if context.attempt < 3:
            raise ConnectionError(f"flaky attempt {context.attempt}")
        return b"{}"
