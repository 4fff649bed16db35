"""Run an arq worker as one replica among many, and probe that replica's liveness.

``arq services.x.worker.WorkerSettings`` and ``arq --check`` share ONE health key per queue: every replica writes
it and a replica that stops deletes it, so stopping one replica fails the liveness probe of the survivors. Here
each replica writes its own key, ``<queue>:health-check:<replica id>`` (the replica id is the pod/container host
name, the same in the worker and in a probe exec'd into its container), refreshed every
``HEADWATER_WORKER_HEALTH_INTERVAL_S`` seconds with a TTL just above that.

On SIGTERM arq stops taking new jobs and, with ``job_completion_wait``, lets the jobs in hand finish for up to
``HEADWATER_WORKER_SHUTDOWN_WAIT_S`` seconds before cancelling them (keep it below the pod's grace period).

    python -m shared.worker_process run services.loader.worker.WorkerSettings
    python -m shared.worker_process check services.loader.worker.WorkerSettings   # exit 0 alive, 1 not
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from typing import Any

from arq.connections import RedisSettings
from arq.constants import default_queue_name, health_check_key_suffix
from arq.utils import import_string
from arq.worker import Worker, async_check_health, get_kwargs

DEFAULT_HEALTH_INTERVAL_S = 15
DEFAULT_SHUTDOWN_WAIT_S = 25


def replica_id() -> str:
    """Return this replica's id: the container's host name (a pod's name in Kubernetes)."""
    return os.environ.get("HEADWATER_REPLICA_ID") or socket.gethostname()


def replica_health_key(queue_name: str, replica: str | None = None) -> str:
    """Return the Redis key under which one replica of ``queue_name`` records its health."""
    return f"{queue_name}{health_check_key_suffix}:{replica or replica_id()}"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def replica_worker_kwargs(settings_cls: Any, replica: str | None = None) -> dict[str, Any]:
    """Return the arq Worker keyword arguments of ``settings_cls`` made per-replica (health key, graceful stop)."""
    kwargs = dict(get_kwargs(settings_cls))
    queue = kwargs.get("queue_name") or default_queue_name
    kwargs["health_check_key"] = replica_health_key(queue, replica)
    interval = _env_int("HEADWATER_WORKER_HEALTH_INTERVAL_S", DEFAULT_HEALTH_INTERVAL_S)
    kwargs.setdefault("health_check_interval", interval)
    kwargs.setdefault("job_completion_wait", _env_int("HEADWATER_WORKER_SHUTDOWN_WAIT_S", DEFAULT_SHUTDOWN_WAIT_S))
    return kwargs


def _settings_class(settings: str | type) -> Any:
    return import_string(settings) if isinstance(settings, str) else settings


def build_worker(settings: str | type, replica: str | None = None, **overrides: Any) -> Worker:
    """Build the arq Worker of ``settings`` (a WorkerSettings class or its dotted path) as one replica."""
    kwargs = replica_worker_kwargs(_settings_class(settings), replica) | overrides
    return Worker(**kwargs)


async def replica_alive(settings: str | type, replica: str | None = None) -> bool:
    """Return whether this replica's health key is present (its worker loop ran within the last interval)."""
    kwargs = replica_worker_kwargs(_settings_class(settings), replica)
    redis_settings: RedisSettings | None = kwargs.get("redis_settings")
    return await async_check_health(redis_settings, health_check_key=kwargs["health_check_key"]) == 0


def main(argv: list[str]) -> int:
    """Run (``run``) or probe (``check``) the worker of a WorkerSettings path; return the exit status."""
    if len(argv) != 2 or argv[0] not in {"run", "check"}:
        print("usage: python -m shared.worker_process run|check services.<name>.worker.WorkerSettings", file=sys.stderr)
        return 2
    command, settings_path = argv
    if command == "check":
        return 0 if asyncio.run(replica_alive(settings_path)) else 1
    build_worker(settings_path).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
