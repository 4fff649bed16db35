"""A Redshift job's whole load path: ensure_table, the date's transaction with COPY of the manifest (Parquet or
ORC), the count, the advertising view into ``advertising_<table>``, delete and VACUUM/ANALYZE, each statement
sent to the job's own Serverless workgroup.

The Data API is the one part replaced (tests/loader/pg_data_api.py): it runs the statements on a real Postgres,
reading COPY's files from the moto server's S3, because neither Redshift nor a Data API that finishes statements
runs here."""

from __future__ import annotations

import dataclasses
from typing import Any

import asyncpg
import httpx
import pytest

from services.loader.loading import perform_load
from services.loader.models import Job
from services.loader.retention import drop_date
from services.loader.warehouse import open_job_adapter
from shared.messages import TransformRequest
from tests.loader.fake_transform import FakeTransform, beacon_events, put_day
from tests.loader.pg_data_api import PostgresDataApi
from tests.loader.test_lifecycle import D1, DAYS, job_body

SERVERLESS = {"workgroup": "ads-serverless", "database": "ads"}
ADS = DAYS[D1]  # {"ad-1": (5, 2), "ad-2": (3, 0)}
ROWS = sum(i + c for i, c in ADS.values())


class WithDataApi:
    """The loader's AWS clients, with the Data API answered by Postgres."""

    def __init__(self, aws: Any, data_api: PostgresDataApi) -> None:
        self.aws, self.data_api = aws, data_api

    async def get(self, service: str) -> Any:
        return self.data_api if service == "redshift-data" else await self.aws.get(service)


@pytest.fixture
def redshift_overrides() -> dict[str, Any]:
    return {"redshift_poll_interval_s": 0.01, "redshift_statement_timeout_s": 10}


@pytest.mark.parametrize("output_format", ["parquet", "orc"])
async def test_a_date_and_its_advertising_view_load_on_the_jobs_workgroup(
    output_format: str, client: httpx.AsyncClient, aws: Any, wiring: Any, postgres_url: str
) -> None:
    created = await client.post("/v1/jobs", json=job_body(warehouse="redshift", redshift=SERVERLESS))
    assert created.status_code == 201, created.text
    async with wiring.sessions() as session:
        job = await session.get(Job, created.json()["id"])
    s3 = await aws.get("s3")
    await put_day(s3, wiring.settings, D1, beacon_events(D1, ADS))
    transform = FakeTransform(wiring.settings, aws)
    transform.output_format = output_format
    request = await transform.transform(
        TransformRequest(
            job_id=job.id,
            run_id=1,
            table=job.schema_name,
            schema_version=job.schema_version,
            source_bucket=job.template.bucket,
            source_prefix=job.template.prefix(D1),
            dt=D1,
        )
    )
    data_api = PostgresDataApi(postgres_url, s3)
    on_redshift = dataclasses.replace(wiring, aws=WithDataApi(aws, data_api))

    assert await perform_load(on_redshift, job, request) == ROWS
    assert await perform_load(on_redshift, job, request) == ROWS  # a redelivered load replaces the date

    con = await asyncpg.connect(postgres_url)
    try:
        assert await con.fetchval("SELECT count(*) FROM ad_events WHERE dt = $1", D1) == ROWS
        view = await con.fetch("SELECT ad_id, impressions, clicks, ctr, dt FROM advertising_ad_events ORDER BY ad_id")
        assert [tuple(r) for r in view] == [("ad-1", 5, 2, 0.4, D1), ("ad-2", 3, 0, 0.0, D1)]
    finally:
        await con.close()
    copies = [sql for call in data_api.calls for sql in call["Sqls"] if sql.startswith("COPY")]
    assert [c.endswith(f"FORMAT AS {output_format.upper()} MANIFEST") for c in copies] == [True, False] * 2
    assert all(c.endswith("FORMAT AS PARQUET") for c in copies[1::2])  # the view is one Parquet object

    adapter = open_job_adapter(job, wiring.settings, on_redshift.aws)
    await adapter.maintain("ad_events")
    rows, _, _ = await drop_date(wiring.settings, on_redshift.aws, job, D1, expire_curated=False)
    assert rows == ROWS
    assert await adapter.count("ad_events", D1) == 0
    assert await adapter.count("advertising_ad_events", D1) == 0  # retention takes the view's day too

    # every statement went to the job's workgroup, none to the loader's default cluster
    assert {tuple(sorted((k, v) for k, v in call.items() if k != "Sqls")) for call in data_api.calls} == {
        (("Database", "ads"), ("WorkgroupName", "ads-serverless"))
    }
    sent = [call["Sqls"][0] for call in data_api.calls if len(call["Sqls"]) == 1]
    assert sent[sent.index('VACUUM "ad_events"') + 1] == 'ANALYZE "ad_events"'
    assert 'DELETE FROM "advertising_ad_events" WHERE "dt" = \'2026-11-20\'' in sent
