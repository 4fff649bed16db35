"""The chart's hook Jobs (migrate, bootstrap), run for real with the environment the rendered chart gives.

Only host names change (postgres, redis and moto become this machine's services); every variable name, URL scheme
and command comes from the rendered ConfigMap, Secret and Jobs, so a wrong name or scheme fails here. The compose
file's one-shots run in test_container_commands.py, before its containers start.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import boto3
import pytest
import yaml

from tests.deploy.conftest import REPO_ROOT, Tools, parse_manifests

pytestmark = pytest.mark.timeout(120)


def _run_step(command: list[str], env: dict[str, str]) -> None:
    executable = shutil.which(command[0], path=str(Path(sys.executable).parent))
    assert executable, f"{command[0]} is not installed next to {sys.executable}"
    base = {key: value for key, value in os.environ.items() if not key.startswith(("HEADWATER_", "AWS_"))}
    result = subprocess.run(
        [executable, *command[1:]], cwd=REPO_ROOT, env=base | env, capture_output=True, text=True, timeout=90
    )
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"


def _tables(postgres_url: str) -> set[str]:
    async def _fetch() -> set[str]:
        connection = await asyncpg.connect(postgres_url)
        try:
            rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        finally:
            await connection.close()
        return {row["tablename"] for row in rows}

    return asyncio.run(_fetch())


def _buckets(endpoint: str) -> set[str]:
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )
    return {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}


def test_helm_hook_jobs_prepare_postgres_and_the_emulator(
    tools: Tools, postgres_url: str, aws_endpoint: str, redis_url: str, tmp_path: Path
) -> None:
    database = urlsplit(postgres_url)
    values = {
        "database.host": database.hostname,
        "database.port": str(database.port),
        "database.user": database.username,
        "database.name": database.path.lstrip("/"),
        "redis.url": redis_url,
        "config.awsEndpointUrl": aws_endpoint,
        "config.dataDir": str(tmp_path),
        "config.resourcePrefix": "hwk8s",
        "secrets.fernetKey": "k" * 43 + "=",
        "secrets.ipHashSalt": "test-salt",
    }
    manifests = parse_manifests(
        tools.helm_template(*(arg for key, value in values.items() for arg in ("--set", f"{key}={value}")))
    )
    configmap = next(doc for doc in manifests if doc["kind"] == "ConfigMap")
    secret = next(doc for doc in manifests if doc["kind"] == "Secret")
    # What envFrom gives the pods: the ConfigMap, then the Secret (production environment).
    env = dict(configmap["data"]) | {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert env["HEADWATER_ENVIRONMENT"] == "production"
    jobs = sorted(
        (doc for doc in manifests if doc["kind"] == "Job"),
        key=lambda job: int(job["metadata"]["annotations"]["helm.sh/hook-weight"]),
    )
    assert [job["metadata"]["name"] for job in jobs] == ["hw-headwater-migrate", "hw-headwater-bootstrap"]
    for job in jobs:
        _run_step(job["spec"]["template"]["spec"]["containers"][0]["command"], env)
    assert "api_key" in _tables(postgres_url)
    assert {"hwk8s-raw", "hwk8s-curated"} <= _buckets(aws_endpoint)


POLLER_KEY = "hw_pollerk8s01_" + "s" * 43


def _rendered_env(manifests: list[dict[str, object]]) -> dict[str, str]:
    configmap = next(doc for doc in manifests if doc["kind"] == "ConfigMap")
    secret = next(doc for doc in manifests if doc["kind"] == "Secret")
    return dict(configmap["data"]) | {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}  # type: ignore[index, union-attr]


def _verify(postgres_url: str, key: str) -> frozenset[str] | None:
    from shared.auth import KeyVerifier
    from shared.db import create_engine, session_factory
    from shared.settings import HeadwaterSettings

    async def _check() -> frozenset[str] | None:
        url = postgres_url.replace("postgresql://", "postgresql+asyncpg://", 1)
        engine = create_engine(HeadwaterSettings(database_url=url))
        try:
            principal = await KeyVerifier(session_factory(engine)).verify(key)
        finally:
            await engine.dispose()
        return None if principal is None else principal.scopes

    return asyncio.run(_check())


def test_bootstrap_provisions_the_poller_ingest_key_the_rendered_poller_sends(
    tools: Tools, postgres_url: str, aws_endpoint: str, redis_url: str, tmp_path: Path
) -> None:
    from argon2 import PasswordHasher

    admin_key = "hw_firstadmin1_" + "a" * 43
    database = urlsplit(postgres_url)
    values = {
        "database": {
            "host": database.hostname,
            "port": database.port,
            "user": database.username,
            "name": database.path.lstrip("/"),
        },
        "redis": {"url": redis_url},
        "config": {"awsEndpointUrl": aws_endpoint, "dataDir": str(tmp_path)},
        # The argon2 hash holds "," and "=", which --set would split: a values file, as an operator would use.
        "secrets": {
            "fernetKey": "k" * 43 + "=",
            "ipHashSalt": "test-salt",
            "pollerIngestApiKey": POLLER_KEY,
            "adminKeyHash": f"firstadmin1:{PasswordHasher().hash(admin_key)}",
        },
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    manifests = parse_manifests(tools.helm_template("-f", str(values_file)))
    env = _rendered_env(manifests)
    # Every poller container (API and worker) gets the key under the name the poller reads, from the Secret.
    pollers = [
        doc
        for doc in manifests
        if doc["kind"] == "Deployment"
        and doc["metadata"]["name"] in ("hw-headwater-poller", "hw-headwater-poller-worker")
    ]
    assert len(pollers) == 2
    for deployment in pollers:
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        refs = {item["name"]: item.get("valueFrom", {}).get("secretKeyRef") for item in container.get("env", [])}
        ref = refs.get("HEADWATER_INGEST_API_KEY")
        assert ref is not None, deployment["metadata"]["name"]
        assert env[ref["key"]] == POLLER_KEY
    # The migrate and bootstrap Jobs, run for real: afterwards the poller's key verifies with ingest:write only,
    # and the first admin key (given as a hash) verifies with admin.
    jobs = sorted(
        (doc for doc in manifests if doc["kind"] == "Job"),
        key=lambda job: int(job["metadata"]["annotations"]["helm.sh/hook-weight"]),
    )
    for job in jobs:
        _run_step(job["spec"]["template"]["spec"]["containers"][0]["command"], env)
    assert _verify(postgres_url, POLLER_KEY) == frozenset({"ingest:write"})
    assert _verify(postgres_url, admin_key) == frozenset({"admin"})
    # Idempotent: a second bootstrap (every upgrade) keeps both keys working.
    _run_step(jobs[-1]["spec"]["template"]["spec"]["containers"][0]["command"], env)
    assert _verify(postgres_url, POLLER_KEY) == frozenset({"ingest:write"})
