"""Transform service settings (env prefix ``HEADWATER_``)."""

from __future__ import annotations

from typing import Literal

from pydantic import SecretStr

from shared.settings import SERVICE_PORTS, HeadwaterSettings


class TransformSettings(HeadwaterSettings):
    """What the transform service and its worker read; every default works with ``headwater up``."""

    service_name: str = "transform"

    # Local engine
    output_format: Literal["parquet", "orc"] = "parquet"
    compression: Literal["zstd", "snappy"] = "zstd"
    block_bytes: int = 8 * 1024 * 1024
    rows_per_part: int = 5_000_000
    row_group_rows: int = 128 * 1024  # close to DuckDB's 122,880: a short tail to encode once mapping ends

    # Runs
    max_tries: int = 5
    retry_base_s: float = 2.0
    job_timeout_s: int = 3600
    consume_requests: bool = True
    lock_retry_s: float = 5.0

    # Register each published partition (and its tables) in the Glue Data Catalog: see glue_catalog.py.
    glue_catalog: bool = True

    # Task chains: a running task renews its lease by heartbeat; the worker's sweep recovers expired leases and
    # lost jobs this often. The loader's API is what the mycroft/backfill chain calls (its key needs jobs:admin).
    chain_lease_s: float = 30.0
    chain_sweep_s: float = 10.0
    loader_url: str = f"http://127.0.0.1:{SERVICE_PORTS['loader']}"
    loader_api_key: SecretStr | None = None

    # Spark backends
    emr_cluster_id: str | None = None
    emr_release_label: str = "emr-7.5.0"
    emr_instance_type: str = "m5.xlarge"
    emr_instance_count: int = 3
    emr_service_role: str = "EMR_DefaultRole"
    emr_job_flow_role: str = "EMR_EC2_DefaultRole"
    glue_role_arn: str = "arn:aws:iam::123456789012:role/headwater-glue"
    glue_version: str = "5.0"
    glue_workers: int = 2
    spark_poll_interval_s: float = 15.0
    spark_timeout_s: float = 6 * 3600
