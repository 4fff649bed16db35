"""Ingest settings: spool, shipper, limits and real-time counters (env prefix ``HEADWATER_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from shared.contracts import PARTITION_KEY_FIELDS
from shared.settings import HeadwaterSettings


class IngestSettings(HeadwaterSettings):
    """What the ingest service reads; every default works with ``headwater up``."""

    service_name: str = "ingest"

    # Durable spool: acknowledged events live here until both sinks have them.
    spool_max_bytes: int = 256 * 1024 * 1024
    spool_segment_max_events: int = 1000
    spool_segment_max_bytes: int = 4 * 1024 * 1024
    retry_after_s: int = 5

    # Shipper: how often the active segment is sealed and shipped, and retry pacing while a sink is down.
    flush_interval_s: float = 1.0
    shipper_backoff_max_s: float = 5.0
    kinesis_enabled: bool = True
    kinesis_max_attempts: int = 5
    # PutRecords calls in flight per segment. Real Kinesis takes many; the moto emulator loses records when
    # calls to one shard overlap (its sequence numbers race), so the default is one at a time.
    kinesis_put_concurrency: int = Field(default=1, ge=1, le=64)
    # PutRecords through the lean signed client (orjson body) instead of botocore's generic serializer and parser,
    # which cost ~20 us of CPU per record on the core that answers requests.
    kinesis_lean_put: bool = True
    # Tune the process-wide cyclic GC at start-up (freeze, then the generation-0 threshold below; see
    # wiring.tune_gc for why). Only server entry points turn it on (compose, helm, `headwater up`): never tests.
    gc_tuning: bool = False
    # Cyclic-GC generation-0 threshold when gc_tuning is on (CPython's default is 700).
    gc_gen0_threshold: int = Field(default=50_000, ge=700)
    shutdown_drain_s: float = 5.0
    # Archive path per source: "direct" (the shipper writes S3 objects) or "firehose" (PutRecordBatch to the
    # raw-archive delivery stream; what lands is settled into the same layout). Sources not listed are direct.
    archive_paths: dict[str, Literal["direct", "firehose"]] = Field(default_factory=dict)
    # How often an ingest process moves what Firehose landed into the raw layout.
    firehose_settle_interval_s: float = Field(default=10.0, gt=0)
    # Kinesis partition key per source: the record field naming the entity whose records must stay in order
    # (one shard per key); sources not listed, and records without the field, are keyed by event id.
    partition_keys: dict[str, str] = Field(default_factory=lambda: dict(PARTITION_KEY_FIELDS))

    # Day markers: a past UTC day is complete once its end plus this grace has passed and it is shipped.
    day_complete_grace_s: float = 300.0
    # ... and no event of it has been shipped for this long, so a backfill still arriving is not cut in two.
    day_quiet_s: float = Field(default=5.0, ge=0)

    # Accepted-but-invalid records (clock skew, oversize) go to the bad-rows bucket.
    max_event_age_s: float = 366 * 86400.0
    max_clock_skew_s: float = 3600.0
    max_record_bytes: int = 1_000_000

    # Request limits.
    batch_max_events: int = 500
    max_body_bytes: int = 1024 * 1024

    # Identity: duplicate client-supplied ids within this window are counted once.
    dedup_window_s: int = 3600
    ip_hash_salt: SecretStr = SecretStr("local-dev-only")
    trust_forwarded_for: bool = False

    # Public beacons: token bucket per client (hashed IP) per process.
    beacon_rate_per_s: float = 200.0
    beacon_burst: int = 400
    # Serve GET beacons from a small ASGI handler in front of the router (same behaviour, far less overhead).
    beacon_fast_path: bool = True

    # Analytics SDKs in browsers: origins allowed to post cross-origin with credentials (CORS, with preflight).
    cors_origins: list[str] = Field(default_factory=list)

    # Real-time counters (Redis) and their CloudWatch publication.
    realtime_retention_s: int = 3 * 3600
    counter_flush_interval_s: float = 0.5
    cloudwatch_enabled: bool = True
    cloudwatch_namespace: str = "Headwater/Ingest"
    cloudwatch_interval_s: float = 60.0

    @property
    def ingest_dir(self) -> Path:
        """Return this service's folder inside the shared data dir."""
        return self.data_dir / "ingest"

    @property
    def spool_dir(self) -> Path:
        """Return the spool root (one locked slot folder per process below it)."""
        return self.ingest_dir / "spool"
