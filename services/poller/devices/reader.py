"""Pick the client of a device record's protocol and read the device with it."""

from __future__ import annotations

import httpx

from services.poller.devices import DeviceAuthError, DeviceError, Sample
from services.poller.devices.eagle import EagleRestClient
from services.poller.devices.eagle200 import Eagle200Client
from services.poller.devices.transport import PostSender, unsendable_credential


class DeviceReader:
    """One reader for every protocol, over the process's shared HTTP client."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        cloud_base_url: str,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        sender = PostSender(http, transport=transport, timeout_s=timeout_s)
        self.rest = EagleRestClient(sender, cloud_base_url=cloud_base_url)
        self.eagle200 = Eagle200Client(sender)

    async def read(
        self,
        *,
        protocol: str,
        cloud_id: str,
        user: str,
        password: str,
        host: str | None = None,
        with_summation: bool = True,
    ) -> Sample:
        """Read one device; ``password`` is the cloud password or, on the LAN, the install code."""
        unsendable = unsendable_credential(protocol, user, password)
        if unsendable is not None:
            # Registration refuses these; a record stored before that check stops here, never in httpx.
            which, why = unsendable
            raise DeviceAuthError(f"credentials cannot be sent: the {which}: {why}")
        if protocol == "cloud":
            return await self.rest.read_cloud(
                cloud_id=cloud_id, user=user, password=password, with_summation=with_summation
            )
        if not host:
            raise DeviceError(f"a {protocol} device needs a host")
        if protocol == "eagle100-local":
            return await self.rest.read_local(
                host=host, cloud_id=cloud_id, install_code=password, with_summation=with_summation
            )
        if protocol == "eagle200-local":
            return await self.eagle200.read(host=host, cloud_id=cloud_id, install_code=password)
        raise DeviceError(f"unknown protocol {protocol!r}")
