"""Task base class, task references (task + params -> target), and chain discovery."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import pkgutil
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from services.transform.settings import TransformSettings


class NoParams(BaseModel):
    """A task without parameters."""

    model_config = ConfigDict(extra="forbid")


@dataclass
class TaskContext:
    """What a running task may use: settings, the AWS clients, its target, and a log that ends up in ``log.txt``.

    ``print`` and the ``logging`` module also end up in ``log.txt`` (see ``capture.py``).
    """

    settings: TransformSettings
    aws: Any
    target: str = ""
    attempt: int = 1
    lines: list[str] = field(default_factory=list)

    def log(self, message: str) -> None:
        """Append a line to the task's log."""
        self.lines.append(message if message.endswith("\n") else message + "\n")


class Task:
    """A unit of a chain: declare ``Params``, ``requires`` and ``run``; ``extension`` names ``out.<ext>``.

    ``retries`` more attempts follow a failure, after ``retry_delay_s * 2**(attempt-1)`` seconds with jitter;
    an attempt longer than ``timeout_s`` fails.
    """

    Params: ClassVar[type[BaseModel]] = NoParams
    extension: ClassVar[str] = "json"
    retries: ClassVar[int] = 0
    retry_delay_s: ClassVar[float] = 5.0
    timeout_s: ClassVar[float] = 3600.0

    def requires(self, params: Any) -> list[tuple[type[Task], BaseModel]]:
        """Return the tasks (with their params) whose outputs this task reads."""
        return []

    async def run(self, context: TaskContext, params: Any, inputs: list[bytes]) -> bytes:
        """Produce the output from the inputs (in ``requires`` order)."""
        raise NotImplementedError


def canonical_params(params: BaseModel) -> str:
    """Return the canonical JSON of params (sorted keys, no spaces): its md5 names the target."""
    return json.dumps(params.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class TaskRef:
    """A task of a chain with concrete params."""

    type: str
    chain: str
    task: str
    params_json: str

    @property
    def digest(self) -> str:
        """Return the md5 of the canonical params."""
        return hashlib.md5(self.params_json.encode()).hexdigest()  # md5 names a target; not security

    @property
    def prefix(self) -> str:
        """Return the target prefix in the chains bucket."""
        return f"chains/{self.type}/{self.chain}/{self.task}/{self.digest}/"

    @property
    def params(self) -> dict[str, Any]:
        """Return the params as a dict."""
        return json.loads(self.params_json)


@dataclass
class Chain:
    """A discovered chain module and its tasks."""

    type: str
    name: str
    tasks: dict[str, type[Task]]
    doc: str = ""


def discover_chains() -> dict[str, dict[str, Chain]]:
    """Find every ``<type>/<name>_chain.py`` module under this package and the ``*Task`` classes in it."""
    package = importlib.import_module("services.transform.chains")
    found: dict[str, dict[str, Chain]] = {}
    for type_info in pkgutil.iter_modules(package.__path__):
        if not type_info.ispkg:
            continue
        type_package = importlib.import_module(f"{package.__name__}.{type_info.name}")
        for module_info in pkgutil.iter_modules(type_package.__path__):
            if not module_info.name.endswith("_chain"):
                continue
            module = importlib.import_module(f"{type_package.__name__}.{module_info.name}")
            tasks = {
                name: cls
                for name, cls in inspect.getmembers(module, inspect.isclass)
                if name.endswith("Task") and issubclass(cls, Task) and cls.__module__ == module.__name__
            }
            if tasks:
                chain_name = module_info.name.removesuffix("_chain")
                summary = (module.__doc__ or "").strip().split("\n")[0]
                chain = Chain(type_info.name, chain_name, tasks, summary)
                found.setdefault(type_info.name, {})[chain_name] = chain
    return found


def ref_for(chains: dict[str, dict[str, Chain]], task_cls: type[Task], params: BaseModel) -> TaskRef:
    """Return the reference of a task class (found in the discovered chains) with params."""
    for type_name, by_name in chains.items():
        for chain in by_name.values():
            for name, cls in chain.tasks.items():
                if cls is task_cls:
                    return TaskRef(type_name, chain.name, name, canonical_params(params))
    raise LookupError(f"{task_cls.__name__} is not in a discovered chain")
