"""Typed dependency aliases of the transform routes (all read the wiring the lifespan opened)."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends

from services.transform.settings import TransformSettings
from services.transform.wiring import TransformWiring
from shared.deps import ArqDep, AwsDep, ClientsDep, RedisDep, SessionDep


def get_wiring(clients: ClientsDep) -> TransformWiring:
    """Return the app's transform wiring."""
    return cast(TransformWiring, clients)


def get_settings(wiring: Annotated[TransformWiring, Depends(get_wiring)]) -> TransformSettings:
    """Return the transform settings the app was built with."""
    return wiring.settings


WiringDep = Annotated[TransformWiring, Depends(get_wiring)]
SettingsDep = Annotated[TransformSettings, Depends(get_settings)]

__all__ = ["ArqDep", "AwsDep", "RedisDep", "SessionDep", "SettingsDep", "WiringDep"]
