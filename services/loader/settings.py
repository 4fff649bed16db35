"""Loader settings: scanner cadence, retries, warehouses, mail, retention."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr, model_validator

from shared.settings import HeadwaterSettings


class LoaderSettings(HeadwaterSettings):
    """What the loader (API and worker) reads; every field has a working local default."""

    service_name: str = "loader"

    # Scanner: how often every active job is scanned for complete, unloaded days (seconds, divides 60).
    scan_interval_s: int = 10
    # Dates of one job in flight (transforming or loading) at once; 1 keeps loads in date order.
    max_in_flight_per_job: int = 1
    # Most dates a single scan looks at per job (bounds HEAD requests on a long backfill).
    scan_max_dates: int = 400

    # Retries of a date (transform failures and load failures), with exponential backoff.
    max_attempts: int = 3
    retry_backoff_s: float = 5.0
    retry_backoff_max_s: float = 300.0
    # Tries of one load on transient errors (S3 not answering, a statement past its deadline) before the
    # attempt counts as failed.
    load_max_tries: int = 5
    # A transform request with no answer after this long is sent again (counts as an attempt); a load still
    # running after load_timeout_s is stopped by arq, and a date left loading past it is retried the same way.
    transform_timeout_s: float = 3600.0
    load_timeout_s: float = 3600.0

    # Warehouses. DuckDB file defaults to <data_dir>/loader/warehouse.duckdb.
    duckdb_path: Path | None = None
    postgres_warehouse_url: str = "postgresql://postgres@127.0.0.1:5432/test"
    redshift_cluster_id: str = "headwater"
    redshift_database: str = "dev"
    redshift_db_user: str = "headwater"
    redshift_iam_role: str = "arn:aws:iam::123456789012:role/headwater-redshift-copy"
    # BatchExecuteStatement runs a date's DELETE + COPY as one transaction; emulators lacking it get the
    # same statements as one ExecuteStatement with an explicit BEGIN/COMMIT block.
    redshift_batch_api: bool = True
    redshift_poll_interval_s: float = 1.0
    redshift_statement_timeout_s: float = 600.0
    # VACUUM/ANALYZE after every N loads per table (0 disables).
    maintenance_every_loads: int = 10

    # Mail (SMTP); notifications are batched per job and flushed every notify_flush_s seconds.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # Transport security: STARTTLS on a plain port (587), or implicit TLS from the first byte (SMTPS, 465);
    # at most one. The server's certificate is always verified, against smtp_ca_file when set (a private CA)
    # or the system's trust store.
    smtp_starttls: bool = False
    smtp_implicit_tls: bool = False
    smtp_ca_file: Path | None = None
    smtp_sender: str = "headwater@example.com"
    notify_flush_s: int = 30
    # Up to this many events per job in one flush are listed one by one; more become a summary.
    notify_detail_limit: int = 10

    # Retention runs every retention_interval_min minutes.
    retention_interval_min: int = 60

    @model_validator(mode="after")
    def _one_tls_mode(self) -> LoaderSettings:
        if self.smtp_starttls and self.smtp_implicit_tls:
            raise ValueError("smtp_starttls and smtp_implicit_tls exclude each other: choose one (465 is implicit TLS)")
        return self

    @property
    def loader_dir(self) -> Path:
        """Return the loader's own data folder."""
        return self.data_dir / "loader"

    @property
    def warehouse_path(self) -> Path:
        """Return the DuckDB warehouse file."""
        return self.duckdb_path or self.loader_dir / "warehouse.duckdb"
