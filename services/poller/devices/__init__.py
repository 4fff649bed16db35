"""Device clients: the Rainforest Eagle in its three protocols, all raising these errors.

``eagle.py`` speaks the Eagle REST API 1.1 (the Rainforest cloud and the Eagle-100 on the LAN),
``eagle200.py`` the Eagle-200 local API, ``transport.py`` holds the HTTP and error handling they share and
``reader.py`` picks the client of a device record's protocol.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Protocol = Literal["cloud", "eagle100-local", "eagle200-local"]
PROTOCOLS: tuple[str, ...] = ("cloud", "eagle100-local", "eagle200-local")
LOCAL_PROTOCOLS: frozenset[str] = frozenset({"eagle100-local", "eagle200-local"})


class DeviceError(Exception):
    """A device answered something unusable."""


class DeviceAuthError(DeviceError):
    """The device (or its cloud) refused the credentials: stop polling until they change."""


class DeviceUnreachableError(DeviceError):
    """The device did not answer in time, or answered with a server error: back off and retry."""


@dataclass(slots=True)
class Sample:
    """One instantaneous reading as a device client returns it."""

    demand_kw: float
    summation_delivered_kwh: float | None = None
    summation_received_kwh: float | None = None
    raw: dict[str, Any] = field(default_factory=dict)
