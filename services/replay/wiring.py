"""The replay service's composition root: the clients its API and its worker share, built once per process.

The API's lifespan is ``wiring_lifespan(open_replay, settings)``; the worker opens the same wiring in
``on_startup`` (see ``worker.py``), where arq's own connection is the job queue.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.replay.progress import ProgressStore
from services.replay.query import QuerySlots
from services.replay.settings import ReplaySettings
from shared.wiring import Clients


@dataclass(kw_only=True)
class ReplayWiring(Clients):
    """The common clients plus replay's own: the progress store, the query slots and the arq pool."""

    settings: ReplaySettings
    progress: ProgressStore
    # The archive SQL queries this process runs at once (the API's; the worker runs none).
    query_slots: QuerySlots


async def open_replay(settings: ReplaySettings, *, job_queue: bool = True) -> ReplayWiring:
    """Open replay's clients; ``job_queue=False`` leaves ``arq`` unset (the worker's connection is its pool)."""
    clients = Clients.base_kwargs(settings)
    wiring = ReplayWiring(
        **clients,
        progress=ProgressStore(clients["redis"], settings.resource_prefix),
        query_slots=QuerySlots(settings.query_max_concurrent),
    )
    if job_queue:
        try:
            await wiring.open_job_queue()
        except BaseException:
            await wiring.close()
            raise
    return wiring
