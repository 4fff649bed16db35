"""Settings of the replay service (archive SQL and replay jobs)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from shared.settings import HeadwaterSettings


class ReplaySettings(HeadwaterSettings):
    """What the replay service reads; every field has a default that works with ``headwater up``."""

    service_name: str = "replay"
    # Target stream (logical name) when a replay job names none.
    default_target_stream: str = "replay"
    # Logical streams a replay job may write to (replay's own by default). Adding "events", ingest's stream, makes
    # replayed records live data: each must then pass ingest's record validation (shared.contracts.RawRecord).
    replay_target_streams: list[str] = Field(default_factory=lambda: ["replay"])
    # Archive SQL limits: rows, time (mirroring included), response bytes, queries at once (429 beyond).
    query_max_rows: int = 100_000
    query_timeout_s: float = 60.0
    query_max_response_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    query_max_concurrent: int = Field(default=4, ge=1)
    # Widest start..end window of a query or a replay selection (422 beyond), and S3 listings at once.
    query_max_window_days: int = Field(default=92, ge=1)
    listing_concurrency: int = Field(default=8, ge=1)
    # Each query's (and each job selection's) DuckDB: memory and spill-to-disk limits (DuckDB size strings).
    query_memory_limit: str = "512MB"
    query_max_temp_size: str = "2GB"
    # Where archive SQL runs: DuckDB in this process (the raw archive, the live tail, mirrored curated tables), or
    # Athena over the curated tables of the Glue catalog (see athena.py). Athena's workgroup and result location
    # default to the ones bootstrap creates (<prefix>-replay, s3://<prefix>-replay/_athena/).
    query_engine: Literal["duckdb", "athena"] = "duckdb"
    athena_workgroup: str | None = None
    athena_output_location: str | None = Field(default=None, pattern=r"^s3://[^/]+/")
    athena_poll_s: float = Field(default=0.5, gt=0)
    athena_page_rows: int = Field(default=1000, ge=2, le=1000)
    # A job's selection: its time limit and the most rows it may hold (the job fails beyond).
    job_selection_timeout_s: float = 600.0
    job_max_rows: int = Field(default=5_000_000, ge=1)
    # Upper bound of live records read from the events stream per query (the tail not yet archived).
    live_max_records: int = 200_000
    # Kinesis PutRecords limits and retry policy.
    put_batch_records: int = 500
    put_batch_bytes: int = 5 * 1024 * 1024
    put_max_attempts: int = 8
    put_backoff_base_s: float = 0.05
    put_backoff_max_s: float = 2.0
    # How often (seconds) a running job copies its progress from Redis to the metadata database.
    progress_flush_s: float = 2.0
    job_timeout_s: int = 6 * 3600
    # A run interrupted by a transient failure (AWS throttling or 5xx, connection trouble) is tried again after
    # ``retry_backoff_s`` doubling up to ``retry_backoff_max_s``, resuming from its checkpoint; the last of
    # ``job_max_tries`` attempts marks the job failed instead.
    job_max_tries: int = 5
    retry_backoff_s: float = 2.0
    retry_backoff_max_s: float = 60.0
    # A running job holds a Redis lease refreshed by a heartbeat; when its worker dies the lease lapses after this
    # long and the recovery cron (every ``recovery_interval_s``) re-enqueues the job, which resumes from its checkpoint.
    lease_ttl_s: float = 15.0
    recovery_interval_s: int = 20

    @property
    def replay_dir(self) -> Path:
        """Return this service's folder inside the shared data dir."""
        return self.data_dir / "replay"

    @property
    def cache_dir(self) -> Path:
        """Return the local mirror of archived S3 objects (immutable, so cached by key)."""
        return self.replay_dir / "cache"

    @property
    def temp_dir(self) -> Path:
        """Return the parent of each query's DuckDB spill folder (removed when the query ends)."""
        return self.replay_dir / "tmp"

    @property
    def jobs_dir(self) -> Path:
        """Return the folder holding each job's materialised selection."""
        return self.replay_dir / "jobs"
