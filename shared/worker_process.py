"""Run an arq worker as one replica among many, and probe that replica's liveness.

``arq services.x.worker.WorkerSettings`` and ``arq --check`` share ONE health key per queue: every replica writes
it and a replica that stops deletes it, so stopping one replica fails the liveness probe of the survivors. Here
each replica writes its own key, ``<queue>:health-check:<replica id>`` (the replica id is the pod/container host
name, the same in the worker and in a probe exec'd into its container), refreshed every
``HEADWATER_WORKER_HEALTH_INTERVAL_S`` seconds with a TTL just above that.

The probe must be cheap: importing a service's WorkerSettings imports the whole service (pyarrow, DuckDB,
SQLAlchemy: seconds of CPU, over a minute on a busy host, so probes timed out and healthy workers were marked
unhealthy). So each time a replica has written its Redis key it also touches a heartbeat file,
``$HEADWATER_WORKER_HEARTBEAT_DIR/headwater-worker-<settings path>.alive`` (default: the temp directory, which the
probe shares with the worker in its container), and ``check`` only reads that file's age: standard library only,
no arq, no Redis client, no service import. The file is touched only after the Redis write succeeded, so it says
what the key says: the worker loop ran and reached Redis within the last interval.

On SIGTERM arq stops taking new jobs and, with ``job_completion_wait``, lets the jobs in hand finish for up to
``HEADWATER_WORKER_SHUTDOWN_WAIT_S`` seconds before cancelling them (keep it below the pod's grace period).

    python -m shared.worker_process run services.loader.worker.WorkerSettings
    python -m shared.worker_process check services.loader.worker.WorkerSettings   # exit 0 alive, 1 not
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only the standard library at module level: `check` runs as a probe every few seconds (see the docstring).
if TYPE_CHECKING:
    from arq.worker import Worker

DEFAULT_HEALTH_INTERVAL_S = 15
DEFAULT_SHUTDOWN_WAIT_S = 25
HEALTH_CHECK_KEY_SUFFIX = ":health-check"  # arq.constants.health_check_key_suffix


def replica_id() -> str:
    """Return this replica's id: the container's host name (a pod's name in Kubernetes)."""
    return os.environ.get("HEADWATER_REPLICA_ID") or socket.gethostname()


def replica_health_key(queue_name: str, replica: str | None = None) -> str:
    """Return the Redis key under which one replica of ``queue_name`` records its health."""
    return f"{queue_name}{HEALTH_CHECK_KEY_SUFFIX}:{replica or replica_id()}"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def health_interval_s() -> int:
    """Return how often a replica records its health (HEADWATER_WORKER_HEALTH_INTERVAL_S)."""
    return _env_int("HEADWATER_WORKER_HEALTH_INTERVAL_S", DEFAULT_HEALTH_INTERVAL_S)


def settings_path(settings: str | type) -> str:
    """Return the dotted path of a WorkerSettings class (as given on the command line)."""
    return settings if isinstance(settings, str) else f"{settings.__module__}.{settings.__qualname__}"


def heartbeat_file(settings: str | type) -> Path:
    """Return the file a replica of ``settings`` touches each time it recorded its health."""
    directory = os.environ.get("HEADWATER_WORKER_HEARTBEAT_DIR") or tempfile.gettempdir()
    return Path(directory) / f"headwater-worker-{settings_path(settings)}.alive"


def heartbeat_fresh(settings: str | type, max_age_s: float | None = None) -> bool:
    """Return whether a replica of ``settings`` in this container recorded its health recently.

    Recent: within two intervals plus a second (arq's own key lives one interval plus a second; the slack spares
    a loop that is late on a busy host).
    """
    limit = max_age_s if max_age_s is not None else 2 * health_interval_s() + 1
    try:
        age = time.time() - heartbeat_file(settings).stat().st_mtime
    except FileNotFoundError:
        return False
    return age <= limit


def replica_worker_kwargs(settings_cls: Any, replica: str | None = None) -> dict[str, Any]:
    """Return the arq Worker keyword arguments of ``settings_cls`` made per-replica (health key, graceful stop)."""
    from arq.constants import default_queue_name
    from arq.worker import get_kwargs

    kwargs = dict(get_kwargs(settings_cls))
    queue = kwargs.get("queue_name") or default_queue_name
    kwargs["health_check_key"] = replica_health_key(queue, replica)
    kwargs.setdefault("health_check_interval", health_interval_s())
    kwargs.setdefault("job_completion_wait", _env_int("HEADWATER_WORKER_SHUTDOWN_WAIT_S", DEFAULT_SHUTDOWN_WAIT_S))
    return kwargs


def _settings_class(settings: str | type) -> Any:
    from arq.utils import import_string

    return import_string(settings) if isinstance(settings, str) else settings


def build_worker(settings: str | type, replica: str | None = None, **overrides: Any) -> Worker:
    """Build the arq Worker of ``settings`` (a WorkerSettings class or its dotted path) as one replica."""
    from arq.worker import Worker

    heartbeat = heartbeat_file(settings)

    class ReplicaWorker(Worker):
        """arq's Worker that also touches the heartbeat file whenever it has written its health key."""

        async def record_health(self) -> None:
            recorded_before = self._last_health_check
            await super().record_health()
            if self._last_health_check != recorded_before:
                try:
                    heartbeat.touch()
                except OSError as exc:  # the probe will say so; the worker itself carries on
                    print(f"could not touch {heartbeat}: {exc}", file=sys.stderr)

    kwargs = replica_worker_kwargs(_settings_class(settings), replica) | overrides
    return ReplicaWorker(**kwargs)


async def replica_alive(settings: str | type, replica: str | None = None) -> bool:
    """Return whether this replica's health key is present in Redis (its loop ran within the last interval)."""
    from arq.connections import RedisSettings
    from arq.worker import async_check_health

    kwargs = replica_worker_kwargs(_settings_class(settings), replica)
    redis_settings: RedisSettings | None = kwargs.get("redis_settings")
    return await async_check_health(redis_settings, health_check_key=kwargs["health_check_key"]) == 0


def main(argv: list[str]) -> int:
    """Run (``run``) or probe (``check``) the worker of a WorkerSettings path; return the exit status."""
    if len(argv) != 2 or argv[0] not in {"run", "check"}:
        print("usage: python -m shared.worker_process run|check services.<name>.worker.WorkerSettings", file=sys.stderr)
        return 2
    command, target = argv
    if command == "check":
        return 0 if heartbeat_fresh(target) else 1
    build_worker(target).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
