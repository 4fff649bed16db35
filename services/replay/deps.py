"""Typed dependency aliases of the replay routes (all read the wiring the lifespan opened)."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends

from services.replay.progress import ProgressStore
from services.replay.query import QuerySlots
from services.replay.settings import ReplaySettings
from services.replay.wiring import ReplayWiring
from shared.deps import ArqDep, AwsDep, ClientsDep, SessionDep


def get_wiring(clients: ClientsDep) -> ReplayWiring:
    """Return the app's replay wiring."""
    return cast(ReplayWiring, clients)


WiringDep = Annotated[ReplayWiring, Depends(get_wiring)]


def get_settings(wiring: WiringDep) -> ReplaySettings:
    """Return the replay settings the app was built with."""
    return wiring.settings


def get_progress(wiring: WiringDep) -> ProgressStore:
    """Return the store of job progress, checkpoints and cancel flags."""
    return wiring.progress


def get_query_slots(wiring: WiringDep) -> QuerySlots:
    """Return the process's archive SQL slots."""
    return wiring.query_slots


SettingsDep = Annotated[ReplaySettings, Depends(get_settings)]
ProgressDep = Annotated[ProgressStore, Depends(get_progress)]
QuerySlotsDep = Annotated[QuerySlots, Depends(get_query_slots)]

__all__ = ["ArqDep", "AwsDep", "ProgressDep", "QuerySlotsDep", "SessionDep", "SettingsDep", "WiringDep"]
