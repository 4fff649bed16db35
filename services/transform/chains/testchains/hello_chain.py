"""Hello chain: a greeting, then a task that shouts it; the smallest chain, for trying the API."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from services.transform.chains.base import Task, TaskContext


class HelloParams(BaseModel):
    """Who to greet."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(default="world", max_length=100)
    fail: bool = Field(default=False, description="make ShoutTask fail (to try resuming)")


class HelloTask(Task):
    """Write a greeting."""

    Params = HelloParams
    extension = "txt"

    async def run(self, context: TaskContext, params: Any, inputs: list[bytes]) -> bytes:
        context.log(f"greeting {params.name}")
        return f"hello {params.name}".encode()


class ShoutTask(Task):
    """Upper-case the greeting (needs HelloTask with the same params)."""

    Params = HelloParams

    def requires(self, params: Any) -> list[tuple[type[Task], BaseModel]]:
        return [(HelloTask, params)]

    async def run(self, context: TaskContext, params: Any, inputs: list[bytes]) -> bytes:
        if params.fail:
            raise RuntimeError("asked to fail")
        return json.dumps({"shout": inputs[0].decode().upper()}).encode()
