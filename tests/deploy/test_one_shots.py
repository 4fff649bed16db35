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
    }
    manifests = parse_manifests(
        tools.helm_template(*(arg for key, value in values.items() for arg in ("--set", f"{key}={value}")))
    )
    configmap = next(doc for doc in manifests if doc["kind"] == "ConfigMap")
    secret = next(doc for doc in manifests if doc["kind"] == "Secret")
    # What envFrom gives the pods: the ConfigMap, then the Secret (production environment, generated Fernet key).
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
