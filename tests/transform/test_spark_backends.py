"""EMR and Glue submission against the moto server: calls, uploaded script, state polling, logs, publishing."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import io
import json
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from arq.worker import Worker

from services.transform.settings import TransformSettings
from shared.messages import LoadRequest, TransformFailed, TransformRequest
from shared.queues import send_message
from tests.transform.conftest import make_worker
from tests.transform.test_skeleton import _body, _wait_for_outcome

DT = date(2026, 11, 24)


def _request(settings: TransformSettings, engine: str) -> TransformRequest:
    return TransformRequest(
        job_id=5,
        run_id=50,
        table="ad_events",
        schema_version=1,
        source_bucket=settings.bucket("raw"),
        source_prefix="beacon/dt=2026-11-24/",
        dt=DT,
        engine=engine,
    )  # type: ignore[arg-type]


async def _stage_spark_output(s3: Any, settings: TransformSettings, transform_id: str) -> None:
    """Put what the generated script writes under its staging prefix (moto's Glue does not run Spark)."""
    bucket = settings.bucket("curated")
    staging = f"_tmp/ad_events/v1/dt={DT.isoformat()}/{transform_id}/"
    table = pa.table({"event_id": ["e1", "e2"], "event_type": ["impression", "click"]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    await s3.put_object(Bucket=bucket, Key=f"{staging}data/part-00000-abc-c000.zstd.parquet", Body=buffer.getvalue())
    await s3.put_object(Bucket=bucket, Key=f"{staging}data/_SUCCESS", Body=b"")
    for index in range(2):
        line = json.dumps({"reason": f"bad {index}", "errors": [], "record": "{}"}).encode() + b"\n"
        await s3.put_object(Bucket=bucket, Key=f"{staging}bad/part-0000{index}-abc.json.gz", Body=gzip.compress(line))
    view = io.BytesIO()
    pq.write_table(pa.table({"ad_id": ["ad-1"], "impressions": [1]}), view)
    await s3.put_object(Bucket=bucket, Key=f"{staging}view/part-00000-abc.snappy.parquet", Body=view.getvalue())
    await s3.put_object(
        Bucket=bucket,
        Key=f"{staging}_stats.json",
        Body=json.dumps({"rows_in": 4, "rows_bad": 2, "rows_out": 2}).encode(),
    )


@pytest.fixture
async def spark_worker(settings: TransformSettings) -> AsyncIterator[Any]:
    """Start a worker with Spark settings chosen by the test."""
    workers: list[tuple[Worker, asyncio.Task[None]]] = []

    def _start(**overrides: Any) -> TransformSettings:
        tuned = settings.model_copy(update={"spark_poll_interval_s": 0.05, **overrides})
        worker = make_worker(tuned, burst=False, consume=True)
        workers.append((worker, asyncio.create_task(worker.async_run())))
        return tuned

    yield _start
    for worker, task in workers:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(asyncio.CancelledError):
            await worker.close()


@pytest.fixture
async def slow_glue_runs(aws_endpoint: str) -> AsyncIterator[None]:
    """Make moto's Glue job runs advance one state per three reads (STARTING, RUNNING, SUCCEEDED)."""
    async with httpx.AsyncClient(base_url=f"{aws_endpoint}/moto-api/state-manager") as client:
        transition = {"model_name": "glue::job_run", "transition": {"progression": "manual", "times": 3}}
        (await client.post("/set-transition", json=transition)).raise_for_status()
        yield
        (await client.post("/unset-transition", json={"model_name": "glue::job_run"})).raise_for_status()


async def test_glue_run_is_created_polled_through_its_states_and_published(
    settings: TransformSettings,
    s3: Any,
    sqs: Any,
    aws: Any,
    spark_worker: Any,
    slow_glue_runs: None,
    app_client: httpx.AsyncClient,
    read_headers: dict[str, str],
) -> None:
    request = _request(settings, "glue")
    await _stage_spark_output(s3, settings, request.id)
    spark_worker()

    await send_message(sqs, settings.queue("transform-requests"), request)
    outcome = await _wait_for_outcome(sqs, settings)

    assert isinstance(outcome, LoadRequest), outcome
    assert (outcome.rows_in, outcome.rows_out, outcome.rows_bad) == (4, 2, 2)
    glue = await aws.get("glue")
    job = (await glue.get_job(JobName="hw-transform-ad_events-v1"))["Job"]
    assert job["Command"]["ScriptLocation"] == "s3://hw-curated/_spark/ad_events/v1/transform.py"
    [job_run] = (await glue.get_job_runs(JobName=job["Name"]))["JobRuns"]
    assert job_run["JobRunState"] == "SUCCEEDED"
    assert job_run["Arguments"]["--staging"] == f"s3://hw-curated/_tmp/ad_events/v1/dt=2026-11-24/{request.id}/"
    assert job_run["Arguments"]["--input"] == "s3://hw-raw/beacon/dt=2026-11-24/"
    script = (await _body(s3, "hw-curated", "_spark/ad_events/v1/transform.py")).decode()
    assert "'table': 'ad_events'" in script and "def map_records" in script
    manifest = json.loads(await _body(s3, "hw-curated", outcome.manifest_key))
    assert manifest["entries"][0]["url"] == "s3://hw-curated/ad_events/v1/dt=2026-11-24/part-00000.parquet"
    assert manifest["entries"][0]["meta"]["record_count"] == 2
    bad = gzip.decompress(await _body(s3, "hw-bad-rows", f"ad_events/dt=2026-11-24/{request.id}.jsonl.gz"))
    assert [json.loads(line)["reason"] for line in bad.splitlines()] == ["bad 0", "bad 1"]
    assert outcome.advertising_view_key is not None
    staged = await s3.list_objects_v2(Bucket="hw-curated", Prefix="_tmp/ad_events/v1/dt=2026-11-24/")
    assert staged.get("KeyCount", 0) == 0
    run = (await app_client.get(f"/v1/transforms/{request.id}", headers=read_headers)).json()
    assert (run["engine"], run["engine_state"], run["state"]) == ("glue", "SUCCEEDED", "succeeded")
    assert run["engine_states"] == ["STARTING", "RUNNING", "SUCCEEDED"]
    assert run["engine_run_id"] == f"{job['Name']}/{job_run['Id']}"
    assert job_run["Id"] in run["log_url"]


async def test_emr_step_on_the_configured_cluster_is_polled_until_the_deadline(
    settings: TransformSettings,
    s3: Any,
    sqs: Any,
    aws: Any,
    spark_worker: Any,
    app_client: httpx.AsyncClient,
    read_headers: dict[str, str],
) -> None:
    emr = await aws.get("emr")
    cluster_id = (
        await emr.run_job_flow(
            Name="shared",
            ReleaseLabel="emr-7.5.0",
            JobFlowRole="EMR_EC2_DefaultRole",
            ServiceRole="EMR_DefaultRole",
            Instances={
                "InstanceGroups": [
                    {"Name": "p", "InstanceRole": "MASTER", "InstanceType": "m5.xlarge", "InstanceCount": 1}
                ],
                "KeepJobFlowAliveWhenNoSteps": True,
            },
        )
    )["JobFlowId"]
    spark_worker(emr_cluster_id=cluster_id, spark_timeout_s=1.0)
    request = _request(settings, "emr")

    await send_message(sqs, settings.queue("transform-requests"), request)
    outcome = await _wait_for_outcome(sqs, settings)

    assert isinstance(outcome, TransformFailed)
    assert "still RUNNING after 1s" in outcome.error
    [step] = (await emr.list_steps(ClusterId=cluster_id))["Steps"]
    args = step["Config"]["Args"]
    assert args[:4] == ["spark-submit", "--deploy-mode", "cluster", "s3://hw-curated/_spark/ad_events/v1/transform.py"]
    assert args[args.index("--dt") + 1] == "2026-11-24"
    run = (await app_client.get(f"/v1/transforms/{request.id}", headers=read_headers)).json()
    assert run["engine_states"] == ["RUNNING"]
    assert (run["engine_state"], run["state"], run["engine_run_id"]) == (
        "RUNNING",
        "failed",
        f"{cluster_id}/{step['Id']}",
    )

    log_key = f"emr/{cluster_id}/steps/{step['Id']}/stderr.gz"
    await s3.put_object(Bucket="hw-logs", Key=log_key, Body=gzip.compress(b"SparkContext: Running Spark 3.5"))
    logs = (await app_client.get(f"/v1/transforms/{request.id}/logs", headers=read_headers)).json()
    assert "Running Spark 3.5" in logs["text"]
    assert logs["log_url"] == f"s3://hw-logs/emr/{cluster_id}/steps/{step['Id']}/"


async def test_without_a_cluster_emr_runs_a_transient_cluster_with_the_step(
    settings: TransformSettings, sqs: Any, aws: Any, spark_worker: Any
) -> None:
    spark_worker(spark_timeout_s=0.5)
    await send_message(sqs, settings.queue("transform-requests"), _request(settings, "emr"))

    outcome = await _wait_for_outcome(sqs, settings)

    assert isinstance(outcome, TransformFailed)
    emr = await aws.get("emr")
    # One transient cluster per attempt: a retried attempt may have started a second one before the outcome.
    clusters = (await emr.list_clusters())["Clusters"]
    assert 1 <= len(clusters) <= settings.max_tries
    cluster = clusters[-1]
    described = (await emr.describe_cluster(ClusterId=cluster["Id"]))["Cluster"]
    assert described["Name"].startswith("headwater-ad_events-v1-2026-11-24")
    assert described["LogUri"] == "s3://hw-logs/emr/"
    assert described["AutoTerminate"] is True
    [step] = (await emr.list_steps(ClusterId=cluster["Id"]))["Steps"]
    assert step["ActionOnFailure"] == "TERMINATE_CLUSTER"
