"""Resolve a task and its params, and expand the graph of what it requires (a target is a TaskRef)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from services.transform.chains.base import Chain, Task, TaskRef, discover_chains, ref_for
from shared.errors import NotFoundError, UnprocessableError

MAX_TASKS = 2000


class ChainNotFoundError(NotFoundError):
    """An unknown chain type, chain, task or target."""


class ChainTooLargeError(UnprocessableError):
    """A chain requires more than MAX_TASKS tasks (most likely a cycle)."""


@dataclass(frozen=True)
class Node:
    """One task of a graph: its class, validated params, reference and the references it requires."""

    cls: type[Task]
    params: BaseModel
    ref: TaskRef
    requires: tuple[TaskRef, ...]


def validate_params(task_cls: type[Task], params: dict[str, Any]) -> BaseModel:
    """Validate params with the task's Params model; unknown names are refused even if the model allows extras."""
    unknown = sorted(set(params) - set(task_cls.Params.model_fields))
    details = [{"field": name, "reason": "unknown parameter"} for name in unknown]
    try:
        model = task_cls.Params.model_validate(params)
    except ValidationError as exc:
        details += [
            {"field": ".".join(str(p) for p in e["loc"]) or "params", "reason": e["msg"]}
            for e in exc.errors()
            if not (e["type"] == "extra_forbidden" and ".".join(str(p) for p in e["loc"]) in unknown)
        ]
        model = None
    if details or model is None:
        names = ", ".join(unknown)
        message = f"unknown parameters: {names}" if unknown else "invalid task params"
        raise UnprocessableError(message, details=details)
    return model


def resolve(
    chains: dict[str, dict[str, Chain]], type_name: str, chain_name: str, task_name: str, params: dict[str, Any]
) -> Node:
    """Find a task class, validate its params and list its requirements; raise ChainNotFoundError or 422."""
    chain = chains.get(type_name, {}).get(chain_name)
    if chain is None or task_name not in chain.tasks:
        raise ChainNotFoundError(f"no task {type_name}/{chain_name}/{task_name}")
    task_cls = chain.tasks[task_name]
    model = validate_params(task_cls, params)
    ref = ref_for(chains, task_cls, model)
    requires = tuple(ref_for(chains, cls, p) for cls, p in task_cls().requires(model))
    return Node(task_cls, model, ref, requires)


def node_of(chains: dict[str, dict[str, Chain]], ref: TaskRef) -> Node:
    """Return the node of a reference."""
    return resolve(chains, ref.type, ref.chain, ref.task, ref.params)


def expand(ref: TaskRef, chains: dict[str, dict[str, Chain]] | None = None) -> list[Node]:
    """Return every node below ``ref`` (itself included), requirements before the tasks that read them."""
    chains = chains or discover_chains()
    ordered: list[Node] = []
    seen: set[str] = set()
    on_path: set[str] = set()

    def _visit(current: TaskRef) -> None:
        if current.prefix in seen:
            return
        if current.prefix in on_path or len(seen) > MAX_TASKS:
            raise ChainTooLargeError(f"chain below {ref.prefix} has a cycle or more than {MAX_TASKS} tasks")
        on_path.add(current.prefix)
        node = node_of(chains, current)
        for requirement in node.requires:
            _visit(requirement)
        on_path.discard(current.prefix)
        seen.add(current.prefix)
        ordered.append(node)

    _visit(ref)
    return ordered


def parse_target(path: str) -> tuple[str, str, str, str]:
    """Split ``chains/<type>/<chain>/<Task>/<md5>/[file]`` into its parts; raise ChainNotFoundError if not one."""
    parts = [p for p in path.split("/") if p]
    if len(parts) < 5 or parts[0] != "chains":
        raise ChainNotFoundError("expected chains/<type>/<chain>/<Task>/<md5>/")
    return parts[1], parts[2], parts[3], parts[4]
