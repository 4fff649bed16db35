from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.aws import client_kwargs
from shared.db import normalise_database_url
from shared.settings import HeadwaterSettings


def test_defaults_work_without_any_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "HEADWATER_REDIS_URL"):
        monkeypatch.delenv(var, raising=False)
    settings = HeadwaterSettings()
    assert settings.aws_endpoint_url is None
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.database_url.startswith("sqlite+aiosqlite")
    assert settings.bucket("raw") == "hw-raw"


def test_env_prefix_and_standard_aws_endpoint_are_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_RESOURCE_PREFIX", "acme")
    monkeypatch.setenv("HEADWATER_DATA_DIR", "/tmp/hw-data")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9999")
    settings = HeadwaterSettings()
    assert settings.bucket("curated") == "acme-curated"
    assert settings.queue("load-requests") == "acme-load-requests"
    assert settings.stream("events") == "acme-events"
    assert settings.data_dir == Path("/tmp/hw-data")
    assert settings.aws_endpoint_url == "http://127.0.0.1:9999"
    kwargs = client_kwargs(settings, "s3")
    assert kwargs["endpoint_url"] == "http://127.0.0.1:9999"


def test_service_specific_endpoint_overrides_the_general_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://general:1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", "http://kinesis-only:2")
    settings = HeadwaterSettings()
    assert client_kwargs(settings, "kinesis")["endpoint_url"] == "http://kinesis-only:2"
    assert client_kwargs(settings, "s3")["endpoint_url"] == "http://general:1"


def test_real_aws_gets_no_endpoint_and_no_dummy_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    kwargs = client_kwargs(HeadwaterSettings(), "s3")
    assert "endpoint_url" not in kwargs
    assert "aws_access_key_id" not in kwargs


def test_production_refuses_the_placeholder_fernet_key() -> None:
    with pytest.raises(ValidationError, match="FERNET_KEY"):
        HeadwaterSettings(environment="production")
    assert HeadwaterSettings(environment="production", fernet_key="a-real-key-from-a-secret-store")


def test_plain_database_urls_map_to_async_drivers() -> None:
    assert normalise_database_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert normalise_database_url("postgres://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert normalise_database_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert normalise_database_url("postgresql+asyncpg://u@h/db") == "postgresql+asyncpg://u@h/db"


def test_production_refuses_every_placeholder_secret_of_a_service() -> None:
    from services.ingest.settings import IngestSettings

    with pytest.raises(ValueError, match="HEADWATER_IP_HASH_SALT"):
        IngestSettings(environment="production", fernet_key="a-real-key-from-a-secret-store")
    assert IngestSettings(environment="production", fernet_key="a-real-key", ip_hash_salt="a-real-salt")
