"""Device clients: one module per device type (the Rainforest Eagle today), all raising these errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
