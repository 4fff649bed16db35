"""Typed dependency aliases of the poller routes (all read the wiring the lifespan opened)."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends

from services.poller.registry import Registry
from services.poller.settings import PollerSettings
from services.poller.wiring import PollerWiring
from shared.deps import ClientsDep


def get_wiring(clients: ClientsDep) -> PollerWiring:
    """Return the app's poller wiring."""
    return cast(PollerWiring, clients)


def get_settings(wiring: Annotated[PollerWiring, Depends(get_wiring)]) -> PollerSettings:
    """Return the poller settings the app was built with."""
    return wiring.settings


def get_registry(wiring: Annotated[PollerWiring, Depends(get_wiring)]) -> Registry:
    """Return the device registry."""
    return wiring.registry


WiringDep = Annotated[PollerWiring, Depends(get_wiring)]
SettingsDep = Annotated[PollerSettings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]
