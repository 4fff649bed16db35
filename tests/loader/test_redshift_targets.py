"""Each Redshift job names its own target, a provisioned cluster or a Serverless workgroup: validated by the API,
stored on the job, and the one the Data API requests name. The requests go to the moto server; moto records
ClusterIdentifier and DbUser (read back with DescribeStatement) but drops WorkgroupName, so the workgroup is read
from the request body as it leaves the client."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import httpx
import pytest

from services.loader.models import Job
from services.loader.warehouse import open_job_adapter
from services.loader.warehouse.redshift import RedshiftTimeout, RedshiftWarehouse
from services.loader.wiring import LoaderWiring
from shared.schemas import parse_schema_yaml
from tests.loader.fake_transform import AD_EVENTS_YAML
from tests.loader.test_lifecycle import job_body

SCHEMA = parse_schema_yaml(AD_EVENTS_YAML)
MANIFEST = "s3://hw-curated/ad_events/v1/dt=2026-11-20/_manifest.json"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hw/redshift-AbCdEf"


@pytest.fixture
def redshift_overrides() -> dict[str, Any]:
    return {"redshift_batch_api": False, "redshift_statement_timeout_s": 0.2, "redshift_poll_interval_s": 0.05}


async def _create(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post("/v1/jobs", json=job_body(warehouse="redshift", **body))


async def _job(wiring: LoaderWiring, job_id: int) -> Job:
    async with wiring.sessions() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        return job


async def test_a_job_keeps_the_cluster_or_workgroup_it_names(client: httpx.AsyncClient) -> None:
    cluster = {"cluster_id": "analytics-2", "database": "ads", "db_user": "loader"}
    created = await _create(client, redshift=cluster)
    assert created.status_code == 201, created.text
    shown = (await client.get(f"/v1/jobs/{created.json()['id']}")).json()["redshift"]
    assert shown == {**cluster, "workgroup": None, "secret_arn": None}

    serverless = {"workgroup": "ads-serverless", "database": "ads", "secret_arn": SECRET}
    created = await _create(client, redshift=serverless)
    assert created.status_code == 201, created.text
    assert created.json()["redshift"] == {**serverless, "cluster_id": None, "db_user": None}


async def test_a_job_naming_no_target_keeps_the_configured_cluster(
    client: httpx.AsyncClient, loader_settings: Any
) -> None:
    created = await _create(client)
    assert created.json()["redshift"] == {
        "cluster_id": loader_settings.redshift_cluster_id,
        "workgroup": None,
        "database": loader_settings.redshift_database,
        "db_user": loader_settings.redshift_db_user,
        "secret_arn": None,
    }
    # other warehouses have none
    assert (await client.post("/v1/jobs", json=job_body())).json()["redshift"] is None


BAD_TARGETS: list[tuple[dict[str, Any], str, str]] = [
    ({"cluster_id": "a", "workgroup": "abc", "db_user": "u"}, "redshift", "exactly one"),
    ({"database": "dev"}, "redshift", "exactly one"),
    ({"workgroup": "abc", "db_user": "u"}, "redshift", "db_user is for a provisioned cluster"),
    ({"cluster_id": "a"}, "redshift", "db_user (temporary credentials) or secret_arn"),
    ({"cluster_id": "a", "db_user": "u", "secret_arn": SECRET}, "redshift", "not both"),
    ({"cluster_id": "Bad_Name", "db_user": "u"}, "redshift", "cluster_id"),
    ({"cluster_id": "a-", "db_user": "u"}, "redshift", "cluster_id"),
    ({"workgroup": "ab"}, "redshift", "workgroup"),
    ({"workgroup": "abc", "secret_arn": "arn:aws:iam::1:role/x"}, "redshift", "secret_arn"),
    ({"workgroup": "abc", "port": 5439}, "redshift", "port"),
    ({"cluster_id": "a", "db_user": "u"}, "duckdb", "this job's warehouse is duckdb"),
]


async def test_a_bad_target_is_refused_with_the_reason(client: httpx.AsyncClient) -> None:
    for target, warehouse, reason in BAD_TARGETS:
        response = await client.post("/v1/jobs", json=job_body(warehouse=warehouse, redshift=target))
        assert response.status_code == 422, (target, response.text)
        assert response.json()["error"]["details"], response.text
        assert reason in response.text, (target, response.text)
    assert (await client.get("/v1/jobs")).json() == []


async def test_the_jobs_cluster_is_what_the_data_api_is_asked(
    client: httpx.AsyncClient, wiring: LoaderWiring, aws: Any
) -> None:
    cluster = {"cluster_id": "analytics-2", "database": "ads", "db_user": "loader"}
    job = await _job(wiring, (await _create(client, redshift=cluster)).json()["id"])
    adapter = open_job_adapter(job, wiring.settings, aws)
    assert isinstance(adapter, RedshiftWarehouse)
    with pytest.raises(RedshiftTimeout):  # moto's statements never finish
        await adapter.copy_date("ad_events", SCHEMA, date(2026, 11, 20), MANIFEST)
    described = await (await aws.get("redshift-data")).describe_statement(Id=adapter.statement_ids[-1])
    assert (described["ClusterIdentifier"], described["Database"], described["DbUser"]) == (
        "analytics-2",
        "ads",
        "loader",
    )
    assert "COPY" in described["QueryString"]


async def test_the_jobs_workgroup_is_what_the_data_api_is_asked(
    client: httpx.AsyncClient, wiring: LoaderWiring, aws: Any
) -> None:
    serverless = {"workgroup": "ads-serverless", "database": "ads", "secret_arn": SECRET}
    job = await _job(wiring, (await _create(client, redshift=serverless)).json()["id"])
    client_ = await aws.get("redshift-data")
    sent: list[dict[str, Any]] = []

    def _record(request: Any, **_: Any) -> None:
        body = json.loads(request.body)
        body.pop("ClientToken", None)  # botocore's idempotency token, random per request
        sent.append(body)

    client_.meta.events.register("before-send.redshift-data.ExecuteStatement", _record)
    try:
        with pytest.raises(RedshiftTimeout):
            await open_job_adapter(job, wiring.settings, aws).maintain("ad_events")
    finally:
        client_.meta.events.unregister("before-send.redshift-data.ExecuteStatement", _record)
    assert sent == [
        {"Sql": 'VACUUM "ad_events"', "WorkgroupName": "ads-serverless", "Database": "ads", "SecretArn": SECRET}
    ]
