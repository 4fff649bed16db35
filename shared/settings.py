"""Settings common to every Headwater service (env prefix ``HEADWATER_``).

Every field has a default that works with ``headwater up``; production overrides by env.
AWS endpoints come from the standard ``AWS_ENDPOINT_URL`` so real AWS is used when it is unset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "local-dev-only"}

# Well-known resource names; bucket names get the deployment prefix.
BUCKETS = ("raw", "curated", "bad-rows", "logs", "chains", "replay")
QUEUES = ("s3-events", "transform-requests", "load-requests")
STREAMS = ("events", "replay")
TRAFFIC_TABLE = "traffic"

SERVICE_PORTS = {"ingest": 8001, "transform": 8002, "loader": 8003, "replay": 8004, "poller": 8005}


class HeadwaterSettings(BaseSettings):
    """Base settings: what every service reads. Each service subclasses it."""

    model_config = SettingsConfigDict(env_prefix="HEADWATER_", extra="ignore", populate_by_name=True)

    service_name: str = "headwater"
    environment: Literal["local", "test", "production"] = "local"
    log_level: str = "INFO"
    log_json: bool = True
    data_dir: Path = Path(".headwater")

    # Naming of AWS resources: buckets are "<prefix>-<name>", queues and streams "<prefix>-<name>".
    resource_prefix: str = "hw"
    aws_region: str = Field(
        default="us-east-1",
        validation_alias=AliasChoices("HEADWATER_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
    )
    aws_endpoint_url: str | None = Field(
        default=None, validation_alias=AliasChoices("HEADWATER_AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL")
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "sqlite+aiosqlite:///.headwater/headwater.db"

    # Key for device credentials at rest (Fernet); "local-dev-only" is refused outside local/test.
    fernet_key: SecretStr = SecretStr("local-dev-only")

    # Base URLs of sibling services, for the few HTTP calls between them (poller -> ingest).
    ingest_url: str = f"http://127.0.0.1:{SERVICE_PORTS['ingest']}"

    # IAM role Kinesis Data Firehose assumes to write the raw bucket (``archive: firehose``); without it bootstrap
    # creates no delivery stream on AWS (the emulator needs none).
    firehose_role_arn: str = ""

    readiness_timeout_s: float = 2.0
    # Each API process sends its request, error, latency (and spool) figures to CloudWatch every interval, for the
    # "operations" dashboard (shared/ops_metrics.py).
    cloudwatch_ops_metrics: bool = True
    ops_metrics_interval_s: float = Field(default=60.0, gt=0)
    # Largest request body a route accepts unless it declares its own (shared.guard.body_limit); 413 beyond.
    max_request_body_bytes: int = Field(default=1024 * 1024, ge=1024)

    @model_validator(mode="after")
    def _reject_placeholder_secrets(self) -> HeadwaterSettings:
        # Every secret of every service's settings, not a list kept by hand: a default salt or key in production
        # would let anyone with the source reverse IP hashes or decrypt device credentials.
        if self.environment != "production":
            return self
        placeholders = sorted(
            f"HEADWATER_{name.upper()}"
            for name in type(self).model_fields
            if isinstance(value := getattr(self, name), SecretStr) and value.get_secret_value() in PLACEHOLDER_SECRETS
        )
        if placeholders:
            raise ValueError(f"{', '.join(placeholders)} must be set to real secrets in production")
        return self

    def bucket(self, name: str) -> str:
        """Return the deployment's bucket name for a logical bucket (raw, curated, ...)."""
        return f"{self.resource_prefix}-{name}"

    def queue(self, name: str) -> str:
        """Return the deployment's SQS queue name for a logical queue."""
        return f"{self.resource_prefix}-{name}"

    def stream(self, name: str) -> str:
        """Return the deployment's Kinesis stream name for a logical stream."""
        return f"{self.resource_prefix}-{name}"

    def table(self, name: str) -> str:
        """Return the deployment's DynamoDB table name for a logical table."""
        return f"{self.resource_prefix}-{name}"

    @property
    def arq_queue(self) -> str:
        """Return this service's arq queue name, so services can share one Redis."""
        return f"arq:{self.resource_prefix}:{self.service_name}"
