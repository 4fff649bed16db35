"""Poller settings: polling schedule, sharding, log rotation and the hand-off to ingest."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from shared.settings import HeadwaterSettings

# The Rainforest cloud endpoint the Eagle gateways report through (the "cloud API").
RAINFOREST_CLOUD_URL = "https://rainforestcloud.com:9445"


def _default_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class PollerSettings(HeadwaterSettings):
    """Everything the poller reads; every field works locally without configuration."""

    service_name: str = "poller"

    eagle_base_url: str = Field(default=RAINFOREST_CLOUD_URL, description="the cloud endpoint of `cloud` devices")
    # TLS of the cloud endpoint: verified against certifi's CAs by default. If the cloud serves a chain those CAs
    # do not complete, point eagle_ca_file at a PEM bundle holding its intermediate and root (preferred), or as a
    # last resort set eagle_verify_tls=false. Local gateways are plain HTTP, so neither affects them.
    eagle_verify_tls: bool = Field(default=True, description="verify the cloud endpoint's TLS certificate")
    eagle_ca_file: Path | None = Field(default=None, description="PEM bundle to verify the cloud endpoint with")
    summation_interval_s: float = Field(
        default=60.0,
        ge=0,
        description="REST API devices are asked get_current_summation this often (0: every poll); "
        "demand (get_instantaneous_demand) is read every poll; Eagle-200s give both in one query",
    )
    poll_interval_s: float = Field(default=6.0, gt=0)
    request_timeout_s: float = Field(default=4.0, gt=0, description="per request; must stay below the interval")
    # Waiting polls queue on the poller's semaphore, not inside httpx's pool, whose queue costs grow with length.
    # 5,000 devices at 6 s with ~50 ms answers need ~45 requests in flight; more only lengthens httpcore's scans.
    max_concurrency: int = Field(default=128, ge=1, description="polls in flight per process")
    max_connections: int = Field(default=128, ge=1, description="httpx connections per process, over all pools")
    pool_shards: int = Field(default=64, ge=1, description="connection pools the limit is split over")
    on_time_tolerance_s: float = Field(default=1.0, gt=0, description="a poll starting later than this is late")
    backoff_cap_s: float = Field(default=300.0, gt=0, description="longest wait between tries of an unreachable device")
    registry_refresh_s: float = Field(default=30.0, gt=0, description="full registry reload period")
    registry_check_s: float = Field(default=2.0, gt=0, description="how often the registry version is checked")

    replica_id: str = Field(default_factory=_default_replica_id)
    shard_count: int = Field(default=64, ge=1)
    heartbeat_s: float = Field(default=3.0, gt=0)
    lease_ttl_s: float = Field(default=10.0, gt=0)

    log_dir: Path | None = None
    logs_key_prefix: str = "rainforest-logs"
    log_flush_s: float = Field(default=1.0, gt=0)
    rotation_grace_s: float = Field(default=60.0, ge=0, description="wait after an hour closes before rotating it")

    ingest_api_key: SecretStr | None = None
    ingest_batch_size: int = Field(default=500, ge=1)
    ingest_flush_s: float = Field(default=2.0, gt=0)
    ingest_buffer_max: int = Field(default=200_000, ge=1)

    @model_validator(mode="after")
    def _timeout_below_interval(self) -> PollerSettings:
        if self.request_timeout_s >= self.poll_interval_s:
            raise ValueError("request_timeout_s must be below poll_interval_s")
        if self.lease_ttl_s <= self.heartbeat_s:
            raise ValueError("lease_ttl_s must exceed heartbeat_s")
        return self

    @property
    def logs_path(self) -> Path:
        """Return the directory holding the hourly device logs."""
        return self.log_dir or self.data_dir / "poller" / "logs"

    @property
    def redis_prefix(self) -> str:
        """Return the prefix of every poller key in Redis."""
        return f"{self.resource_prefix}:poller"
