"""Redshift adapter: the SQL and Data API calls it sends (checked on the moto server, where statements stay
STARTED forever) and how it handles each statement state."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from services.loader.settings import LoaderSettings
from services.loader.warehouse.redshift import (
    RedshiftStatementError,
    RedshiftTimeout,
    RedshiftWarehouse,
    create_table_sql,
    load_sqls,
    wait_statement,
)
from shared.schemas import parse_schema_yaml
from tests.loader.fake_transform import AD_EVENTS_YAML

SCHEMA = parse_schema_yaml(AD_EVENTS_YAML)
MANIFEST = "s3://hw-curated/ad_events/v1/dt=2026-11-20/_manifest.json"


def test_ddl_comes_from_the_schema_with_dist_and_sort_keys() -> None:
    sql = create_table_sql("ad_events", SCHEMA)
    assert sql.startswith('CREATE TABLE IF NOT EXISTS "ad_events" ("event_id" varchar(64) NOT NULL, ')
    assert '"event_time" timestamp' in sql and '"dt" date' in sql
    assert sql.endswith('DISTSTYLE KEY DISTKEY ("ad_id") COMPOUND SORTKEY ("dt", "event_time")')


def test_a_date_load_deletes_the_date_then_copies_the_manifest() -> None:
    delete, create, copy, insert, drop = load_sqls(
        "ad_events", SCHEMA, date(2026, 11, 20), MANIFEST, "arn:aws:iam::1:role/copy"
    )
    assert delete == 'DELETE FROM "ad_events" WHERE "dt" = \'2026-11-20\''
    # the files hold every column but dt (their dt= path carries it): COPY them as they are, add the date after
    assert create.startswith('CREATE TEMP TABLE "ad_events__load" ("event_id" varchar(64), "event_type" varchar(32)')
    assert '"dt"' not in create
    assert copy == (
        f"COPY \"ad_events__load\" FROM '{MANIFEST}' IAM_ROLE 'arn:aws:iam::1:role/copy' FORMAT AS PARQUET MANIFEST"
    )
    assert insert.startswith('INSERT INTO "ad_events" ("event_id", "event_type", "ad_id", ')
    assert insert.endswith(
        '"received_at", "dt") SELECT "event_id", "event_type", "ad_id", "campaign_id", "placement", '
        '"user_id", "event_time", "received_at", DATE \'2026-11-20\' FROM "ad_events__load"'
    )
    assert drop == 'DROP TABLE "ad_events__load"'


@pytest.fixture
async def redshift(make_settings: Any) -> Any:
    settings = make_settings(
        LoaderSettings, redshift_batch_api=False, redshift_poll_interval_s=0.05, redshift_cluster_id="wh-1"
    )
    from shared.aws import AwsClients

    aws = AwsClients(settings)
    yield RedshiftWarehouse(settings, aws, timeout_s=0.3), aws
    await aws.close()


async def test_the_load_transaction_is_sent_to_the_data_api_and_cancelled_at_the_deadline(redshift: Any) -> None:
    adapter, aws = redshift
    with pytest.raises(RedshiftTimeout):
        await adapter.copy_date("ad_events", SCHEMA, date(2026, 11, 20), MANIFEST)
    client = await aws.get("redshift-data")
    sent = await client.describe_statement(Id=adapter.statement_ids[-1])
    assert (sent["ClusterIdentifier"], sent["Database"], sent["DbUser"]) == ("wh-1", "dev", "headwater")
    sql = sent["QueryString"]
    assert sql.startswith('BEGIN;\nDELETE FROM "ad_events" WHERE "dt" = \'2026-11-20\';\nCREATE TEMP TABLE')
    assert 'COPY "ad_events__load" FROM' in sql and "FORMAT AS PARQUET MANIFEST;\nINSERT" in sql
    assert sql.endswith('DROP TABLE "ad_events__load";\nCOMMIT;')
    assert sent["Status"] == "ABORTED"  # cancelled at the deadline


async def test_creating_the_table_sends_the_ddl_first(redshift: Any) -> None:
    adapter, aws = redshift
    with pytest.raises(RedshiftTimeout):
        await adapter.ensure_table("ad_events", SCHEMA)
    client = await aws.get("redshift-data")
    sent = await client.describe_statement(Id=adapter.statement_ids[0])
    assert sent["QueryString"] == create_table_sql("ad_events", SCHEMA)


async def test_maintenance_sends_vacuum_outside_a_transaction(redshift: Any) -> None:
    adapter, aws = redshift
    with pytest.raises(RedshiftTimeout):
        await adapter.maintain("ad_events")
    client = await aws.get("redshift-data")
    assert (await client.describe_statement(Id=adapter.statement_ids[0]))["QueryString"] == 'VACUUM "ad_events"'


class ScriptedStatement:
    """Describes one statement through a scripted series of states (moto's never leave STARTED)."""

    def __init__(self, *states: dict[str, Any]) -> None:
        self.states = list(states)
        self.cancelled = False

    async def describe_statement(self, Id: str) -> dict[str, Any]:
        return {"Id": Id, **(self.states.pop(0) if len(self.states) > 1 else self.states[0])}

    async def cancel_statement(self, Id: str) -> None:
        self.cancelled = True


async def test_each_statement_state_is_handled() -> None:
    finished = ScriptedStatement({"Status": "SUBMITTED"}, {"Status": "STARTED"}, {"Status": "FINISHED"})
    assert (await wait_statement(finished, "s1", timeout_s=5, poll_s=0))["Status"] == "FINISHED"

    failed = ScriptedStatement({"Status": "PICKED"}, {"Status": "FAILED", "Error": "S3ServiceException: denied"})
    with pytest.raises(RedshiftStatementError, match="denied"):
        await wait_statement(failed, "s2", timeout_s=5, poll_s=0)

    with pytest.raises(RedshiftStatementError, match="aborted"):
        await wait_statement(ScriptedStatement({"Status": "ABORTED"}), "s3", timeout_s=5, poll_s=0)

    stuck = ScriptedStatement({"Status": "STARTED"})
    with pytest.raises(RedshiftTimeout):
        await wait_statement(stuck, "s4", timeout_s=0.05, poll_s=0.01)
    assert stuck.cancelled


@pytest.fixture
def redshift_overrides() -> dict[str, Any]:
    return {
        "redshift_batch_api": False,
        "redshift_statement_timeout_s": 0.2,
        "redshift_poll_interval_s": 0.05,
        "load_max_tries": 2,
    }


async def test_a_redshift_job_whose_statements_never_finish_fails_the_date_with_the_reason(
    client: Any, worker: Any, transform: Any, aws: Any, wiring: Any
) -> None:
    from services.loader import scanner
    from tests.helpers import wait_until
    from tests.loader.fake_transform import beacon_events, put_day
    from tests.loader.test_lifecycle import D1, job_body, runs_by_date

    job_id = (await client.post("/v1/jobs", json=job_body(warehouse="redshift", end_date=D1.isoformat()))).json()["id"]
    await put_day(await aws.get("s3"), wiring.settings, D1, beacon_events(D1, {"ad-1": (1, 0)}))

    async def _failed() -> dict | None:
        await scanner.scan_all(wiring)  # the cron's part: re-dispatch after the backoff
        run = (await runs_by_date(client, job_id)).get(D1.isoformat(), {})
        return run if run.get("state") == "failed" else None

    run = await wait_until(_failed, timeout=60, message="the Redshift date never failed")
    assert run["attempts"] == 2
    assert "RedshiftTimeout" in run["error"] and "STARTED" in run["error"]
    history = [e["event"] for e in (await client.get(f"/v1/jobs/{job_id}/history")).json()]
    assert history.count("load_retry") == 2 and history[-1] == "failed"
