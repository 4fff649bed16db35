"""Bootstrap's BI step: the Glue database of the curated tables, Athena's workgroup and the CloudWatch dashboards.

The dashboards' JSON is in ``shared/dashboards/`` (``deploy/dashboards`` links to it; the files travel in the image
as package data). Their placeholders are filled per deployment: ``${region}``, ``${prefix}`` and
``${ingest_namespace}``. PutDashboard replaces a dashboard whole, so running bootstrap again is idempotent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from shared.catalog_names import athena_output_location, athena_workgroup, catalog_database
from shared.logging import get_logger
from shared.settings import HeadwaterSettings

log = get_logger(__name__)

DASHBOARDS_DIR = Path(__file__).with_name("dashboards")
DASHBOARDS = ("advertising", "operations")
# Where ingest publishes its per-minute counters (services/ingest/settings.py cloudwatch_namespace's default).
INGEST_NAMESPACE = "Headwater/Ingest"


def dashboard_name(settings: HeadwaterSettings, name: str) -> str:
    """Return the deployment's CloudWatch dashboard name (``hw-advertising``)."""
    return f"{settings.resource_prefix}-{name}"


def dashboard_body(settings: HeadwaterSettings, name: str) -> dict[str, Any]:
    """Return a dashboard's body for this deployment (placeholders filled)."""
    text = (DASHBOARDS_DIR / f"{name}.json").read_text()
    for key, value in {
        "${region}": settings.aws_region,
        "${prefix}": settings.resource_prefix,
        "${ingest_namespace}": INGEST_NAMESPACE,
    }.items():
        text = text.replace(key, value)
    body: dict[str, Any] = json.loads(text)
    return body


async def ensure_dashboards(cloudwatch: Any, settings: HeadwaterSettings) -> None:
    """Create or replace the advertising and operations dashboards."""
    for name in DASHBOARDS:
        body = json.dumps(dashboard_body(settings, name), separators=(",", ":"))
        await cloudwatch.put_dashboard(DashboardName=dashboard_name(settings, name), DashboardBody=body)
        log.info("dashboard_put", dashboard=dashboard_name(settings, name))


async def ensure_catalog_database(glue: Any, settings: HeadwaterSettings) -> None:
    """Create the Glue database transform registers the curated tables in."""
    try:
        await glue.create_database(
            DatabaseInput={
                "Name": catalog_database(settings),
                "Description": f"Headwater curated tables in s3://{settings.bucket('curated')}/",
            }
        )
    except glue.exceptions.AlreadyExistsException:
        pass


async def ensure_athena_workgroup(athena: Any, settings: HeadwaterSettings) -> None:
    """Create the workgroup replay's Athena queries run in, its results under the replay bucket."""
    try:
        await athena.create_work_group(
            Name=athena_workgroup(settings),
            Description="Headwater archive SQL (replay, query_engine: athena)",
            Configuration={
                "ResultConfiguration": {"OutputLocation": athena_output_location(settings)},
                "EnforceWorkGroupConfiguration": False,
                "PublishCloudWatchMetricsEnabled": True,
            },
        )
    except ClientError as exc:
        if "already" not in str(exc).lower():  # Athena says InvalidRequestException "... already exists"
            raise


async def ensure_bi(aws: Any, settings: HeadwaterSettings) -> None:
    """Create the catalog database, the Athena workgroup and the dashboards (idempotent)."""
    await ensure_catalog_database(await aws.get("glue"), settings)
    await ensure_athena_workgroup(await aws.get("athena"), settings)
    await ensure_dashboards(await aws.get("cloudwatch"), settings)
