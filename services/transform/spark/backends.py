"""Run the generated PySpark script on EMR (a step on a configured cluster, or a transient cluster) or Glue.

Upload the script, submit, poll the run's state with a deadline, fetch its logs, then publish what it staged.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from services.transform.models import TransformRun
from services.transform.run_store import save_run
from services.transform.settings import TransformSettings
from services.transform.spark.publish import publish_spark_output
from services.transform.spark.script import generate_script
from services.transform.wiring import TransformWiring
from shared.contracts import CuratedPartition
from shared.logging import get_logger
from shared.messages import utc_now
from shared.schemas import TableSchema

log = get_logger(__name__)

EMR_OK, EMR_FAILED = {"COMPLETED"}, {"CANCELLED", "FAILED", "INTERRUPTED"}
GLUE_OK, GLUE_FAILED = {"SUCCEEDED"}, {"FAILED", "ERROR", "TIMEOUT", "STOPPED", "EXPIRED"}
GLUE_LOG_GROUPS = ("/aws-glue/jobs/output", "/aws-glue/jobs/error")


class SparkRunFailed(RuntimeError):
    """The engine reported a terminal failure (or the run outlived its deadline)."""


@dataclass
class Submission:
    """A submitted engine run."""

    engine_run_id: str
    log_url: str
    poll: Callable[[], Awaitable[tuple[str, str | None]]]
    ok: set[str]
    failed: set[str]


def script_key(schema: TableSchema) -> str:
    """Return where the generated script of a schema version is uploaded (curated bucket)."""
    return f"_spark/{schema.name}/v{schema.version}/transform.py"


def script_arguments(settings: TransformSettings, run: TransformRun, staging_uri: str) -> list[str]:
    """Return the script's command-line arguments for a run."""
    source = f"s3://{run.source_bucket}/{run.source_prefix}"
    if run.hour is not None:
        source = f"{source.rstrip('/')}/hour={run.hour:02d}/"
    return [
        "--input",
        source,
        "--staging",
        staging_uri,
        "--dt",
        run.dt.isoformat(),
        "--format",
        settings.output_format,
        "--compression",
        settings.compression,
    ]


async def submit_emr(
    emr: Any, settings: TransformSettings, *, name: str, script_uri: str, arguments: list[str]
) -> Submission:
    """Add a spark-submit step to the configured cluster, or start a transient cluster that runs it."""
    log_uri = f"s3://{settings.bucket('logs')}/emr/"
    step = {
        "Name": name,
        "ActionOnFailure": "CONTINUE" if settings.emr_cluster_id else "TERMINATE_CLUSTER",
        "HadoopJarStep": {
            "Jar": "command-runner.jar",
            "Args": ["spark-submit", "--deploy-mode", "cluster", script_uri, *arguments],
        },
    }
    if settings.emr_cluster_id:
        cluster_id = settings.emr_cluster_id
        step_id = (await emr.add_job_flow_steps(JobFlowId=cluster_id, Steps=[step]))["StepIds"][0]
    else:
        response = await emr.run_job_flow(
            Name=f"headwater-{name}",
            ReleaseLabel=settings.emr_release_label,
            LogUri=log_uri,
            Applications=[{"Name": "Spark"}],
            Instances={
                "InstanceGroups": [
                    {
                        "Name": "primary",
                        "InstanceRole": "MASTER",
                        "InstanceType": settings.emr_instance_type,
                        "InstanceCount": 1,
                    },
                    {
                        "Name": "core",
                        "InstanceRole": "CORE",
                        "InstanceType": settings.emr_instance_type,
                        "InstanceCount": max(1, settings.emr_instance_count - 1),
                    },
                ],
                "KeepJobFlowAliveWhenNoSteps": False,
            },
            Steps=[step],
            JobFlowRole=settings.emr_job_flow_role,
            ServiceRole=settings.emr_service_role,
            VisibleToAllUsers=True,
            Tags=[{"Key": "headwater:transform", "Value": name}],
        )
        cluster_id = response["JobFlowId"]
        steps = (await emr.list_steps(ClusterId=cluster_id))["Steps"]
        step_id = next(s["Id"] for s in steps if s["Name"] == name)

    async def _poll() -> tuple[str, str | None]:
        status = (await emr.describe_step(ClusterId=cluster_id, StepId=step_id))["Step"]["Status"]
        reason = status.get("FailureDetails", {}).get("Reason") or status.get("StateChangeReason", {}).get("Message")
        return status["State"], reason

    return Submission(f"{cluster_id}/{step_id}", f"{log_uri}{cluster_id}/steps/{step_id}/", _poll, EMR_OK, EMR_FAILED)


async def submit_glue(
    glue: Any, settings: TransformSettings, *, job_name: str, script_uri: str, arguments: list[str]
) -> Submission:
    """Create (or update) the Glue job of a schema version and start a run of it."""
    definition = {
        "Role": settings.glue_role_arn,
        "Command": {"Name": "glueetl", "ScriptLocation": script_uri, "PythonVersion": "3"},
        "GlueVersion": settings.glue_version,
        "WorkerType": "G.1X",
        "NumberOfWorkers": settings.glue_workers,
        "DefaultArguments": {"--enable-continuous-cloudwatch-log": "true", "--job-language": "python"},
        "Timeout": max(1, int(settings.spark_timeout_s // 60)),
    }
    try:
        await glue.get_job(JobName=job_name)
        await glue.update_job(JobName=job_name, JobUpdate=definition)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "EntityNotFoundException":
            raise
        await glue.create_job(Name=job_name, **definition)
    pairs = dict(zip(arguments[::2], arguments[1::2], strict=True))
    run_id = (await glue.start_job_run(JobName=job_name, Arguments=pairs))["JobRunId"]

    async def _poll() -> tuple[str, str | None]:
        job_run = (await glue.get_job_run(JobName=job_name, RunId=run_id))["JobRun"]
        return job_run["JobRunState"], job_run.get("ErrorMessage")

    region = settings.aws_region
    log_url = (
        f"https://console.aws.amazon.com/cloudwatch/home?region={region}#logsV2:log-groups/log-group/"
        f"$252Faws-glue$252Fjobs$252Foutput/log-events/{run_id}"
    )
    return Submission(f"{job_name}/{run_id}", log_url, _poll, GLUE_OK, GLUE_FAILED)


async def wait_for_run(
    submission: Submission,
    *,
    interval_s: float,
    timeout_s: float,
    on_state: Callable[[str], Awaitable[None]] | None = None,
) -> str:
    """Poll until the run ends; return the success state or raise SparkRunFailed (also at the deadline)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        state, reason = await submission.poll()
        if state != last and on_state is not None:
            await on_state(state)
        last = state
        if state in submission.ok:
            return state
        if state in submission.failed:
            raise SparkRunFailed(f"{submission.engine_run_id} ended {state}: {reason or 'no reason given'}")
        if time.monotonic() >= deadline:
            raise SparkRunFailed(f"{submission.engine_run_id} still {state} after {timeout_s:.0f}s; gave up waiting")
        await asyncio.sleep(interval_s)


async def fetch_logs(aws: Any, settings: TransformSettings, run: TransformRun, *, limit_bytes: int = 64_000) -> str:
    """Return the tail of a Spark run's logs (EMR step logs in S3, Glue logs in CloudWatch); '' when none yet."""
    if not run.engine_run_id:
        return ""
    first, second = run.engine_run_id.split("/", 1)
    chunks: list[str] = []
    if run.engine == "emr":
        s3 = await aws.get("s3")
        for name in ("stderr.gz", "stdout.gz"):
            key = f"emr/{first}/steps/{second}/{name}"
            try:
                response = await s3.get_object(Bucket=settings.bucket("logs"), Key=key)
            except ClientError:
                continue
            async with response["Body"] as body:
                chunks.append(f"== {name}\n" + gzip.decompress(await body.read()).decode(errors="replace"))
    else:
        logs = await aws.get("logs")
        for group in GLUE_LOG_GROUPS:
            try:
                events = await logs.get_log_events(logGroupName=group, logStreamName=second, startFromHead=False)
            except ClientError:
                continue
            chunks.append(f"== {group}\n" + "\n".join(event["message"] for event in events.get("events", [])))
    return "\n".join(chunks)[-limit_bytes:]


async def run_spark_partition(wiring: TransformWiring, run: TransformRun, schema: TableSchema) -> TransformRun:
    """Upload the script, run it on EMR or Glue, wait for it, and publish its staged output."""
    settings, aws = wiring.settings, wiring.aws
    started = time.monotonic()
    curated = settings.bucket("curated")
    partition = CuratedPartition(schema.name, schema.version, run.dt, run.hour)
    key = script_key(schema)
    s3 = await aws.get("s3")
    await s3.put_object(Bucket=curated, Key=key, Body=generate_script(schema).encode(), ContentType="text/x-python")
    staging_uri = f"s3://{curated}/{partition.temporary_prefix(run.id)}"
    name = f"{schema.name}-v{schema.version}-{run.dt.isoformat()}-{run.id[:8]}"
    arguments = script_arguments(settings, run, staging_uri)
    if run.engine == "emr":
        submission = await submit_emr(
            await aws.get("emr"), settings, name=name, script_uri=f"s3://{curated}/{key}", arguments=arguments
        )
    else:
        job_name = f"{settings.resource_prefix}-transform-{schema.name}-v{schema.version}"
        submission = await submit_glue(
            await aws.get("glue"), settings, job_name=job_name, script_uri=f"s3://{curated}/{key}", arguments=arguments
        )
    run = await save_run(wiring.sessions, run, engine_run_id=submission.engine_run_id, log_url=submission.log_url)
    log.info("spark_run_submitted", transform_id=run.id, engine=run.engine, engine_run_id=submission.engine_run_id)

    seen: list[str] = []

    async def _on_state(state: str) -> None:
        seen.append(state)
        await save_run(wiring.sessions, run, engine_state=state, engine_states=",".join(seen))
        log.info("spark_run_state", transform_id=run.id, engine_run_id=submission.engine_run_id, state=state)

    await wait_for_run(
        submission, interval_s=settings.spark_poll_interval_s, timeout_s=settings.spark_timeout_s, on_state=_on_state
    )
    published = await asyncio.to_thread(
        publish_spark_output,
        wiring.s3_sync,
        curated_bucket=curated,
        bad_rows_bucket=settings.bucket("bad-rows"),
        partition=partition,
        transform_id=run.id,
        output_format=settings.output_format,
    )
    return await save_run(
        wiring.sessions,
        run,
        state="succeeded",
        rows_in=published["rows_in"],
        rows_out=published["rows_out"],
        rows_bad=published["rows_bad"],
        bytes_out=published["bytes_out"],
        manifest_key=published["manifest_key"],
        bad_rows_key=published["bad_rows_key"],
        advertising_view_key=published["advertising_view_key"],
        duration_s=round(time.monotonic() - started, 3),
        finished_at=utc_now(),
        error=None,
    )
