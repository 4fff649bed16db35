"""The loader's composition root: the clients its API and its worker share, built once per process.

The API's lifespan is ``wiring_lifespan(open_loader, settings)``; the worker opens the same wiring in
``on_startup`` (see ``worker.py``) and starts its SQS consumers on it (stopped when the wiring closes).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from arq import ArqRedis

from services.loader.settings import LoaderSettings
from shared.wiring import Clients


@dataclass(kw_only=True)
class LoaderWiring(Clients):
    """The common clients plus the loader's own: the arq pool and the lock that serialises dispatches."""

    settings: LoaderSettings
    # One dispatch at a time per process, so two triggers (event, scan, API) never claim past the in-flight limit.
    dispatch_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def jobs(self) -> ArqRedis:
        """Return the arq pool that enqueues the loader's jobs (and holds its Redis keys)."""
        if self.arq is None:
            raise RuntimeError("the loader wiring has no job queue")
        return self.arq


async def open_loader(settings: LoaderSettings, *, job_queue: bool = True) -> LoaderWiring:
    """Open the loader's clients; ``job_queue=False`` leaves ``arq`` unset (the worker's connection is its pool)."""
    wiring = LoaderWiring(**Clients.base_kwargs(settings))
    if job_queue:
        try:
            await wiring.open_job_queue()
        except BaseException:
            await wiring.close()
            raise
    return wiring
