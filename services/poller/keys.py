"""Redis key names of the poller, and the stable device -> shard hash."""

from __future__ import annotations

import hashlib


def shard_of(cloud_id: str, shard_count: int) -> int:
    """Return the shard of a device: a stable hash of its cloud id (same on every replica and run)."""
    return int.from_bytes(hashlib.blake2b(cloud_id.encode(), digest_size=8).digest(), "big") % shard_count


def phase_of(cloud_id: str) -> float:
    """Return the device's fixed offset within a tick, in [0, 1): spreads the fleet over the interval."""
    digest = hashlib.blake2b(cloud_id.encode(), digest_size=8, person=b"hw-phase").digest()
    return int.from_bytes(digest, "big") / 2**64


class Keys:
    """Key names under one prefix (``<resource_prefix>:poller``)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.index = f"{prefix}:devices"
        self.version = f"{prefix}:registry_version"
        self.state_prefix = f"{prefix}:state:"
        self.replicas = f"{prefix}:replicas"

    def device(self, cloud_id: str) -> str:
        """Return the hash of one device."""
        return f"{self.prefix}:device:{cloud_id}"

    def latest(self, cloud_id: str) -> str:
        """Return the key of a device's newest reading."""
        return f"{self.prefix}:latest:{cloud_id}"

    def state_set(self, state: str) -> str:
        """Return the set of devices in ``state``."""
        return f"{self.state_prefix}{state}"

    def lease(self, shard: int) -> str:
        """Return the lease key of a shard."""
        return f"{self.prefix}:lease:{shard}"

    def stats(self, minute: int) -> str:
        """Return the counters of one epoch minute."""
        return f"{self.prefix}:stats:{minute}"
