"""Typed dependency aliases of the loader routes (all read the wiring the lifespan opened)."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends

from services.loader.settings import LoaderSettings
from services.loader.wiring import LoaderWiring
from shared.deps import AwsDep, ClientsDep, SessionDep


def get_wiring(clients: ClientsDep) -> LoaderWiring:
    """Return the app's loader wiring."""
    return cast(LoaderWiring, clients)


def get_settings(wiring: Annotated[LoaderWiring, Depends(get_wiring)]) -> LoaderSettings:
    """Return the loader settings the app was built with."""
    return wiring.settings


WiringDep = Annotated[LoaderWiring, Depends(get_wiring)]
SettingsDep = Annotated[LoaderSettings, Depends(get_settings)]

__all__ = ["AwsDep", "SessionDep", "SettingsDep", "WiringDep"]
