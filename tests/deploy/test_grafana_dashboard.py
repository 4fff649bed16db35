"""The chart's optional Grafana dashboard: a ConfigMap for Grafana's sidecar, charting only metrics the services expose.

The exposed metric names are read from real /metrics answers of the ingest and replay apps (in process, over ASGI;
every service's app shares ``shared.http``'s request metrics, ingest adds its spool and shipping metrics).
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from services.ingest.app import create_app as create_ingest_app
from services.ingest.settings import IngestSettings
from services.replay.app import create_app as create_replay_app
from services.replay.settings import ReplaySettings
from tests.deploy.conftest import CHART_DIR, Tools, parse_manifests

NAME = "hw-headwater-grafana-dashboard"
METRIC = re.compile(r"\b(headwater_[a-z0-9_]+)\b")
# PromQL reads a histogram through these series.
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def _dashboard_configmaps(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in manifests if m["kind"] == "ConfigMap" and m["metadata"]["name"] == NAME]


@pytest.fixture(scope="module")
def dashboard(tools: Tools) -> dict[str, Any]:
    [configmap] = _dashboard_configmaps(parse_manifests(tools.helm_template("--set", "grafanaDashboard.enabled=true")))
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"  # what the Grafana sidecar selects
    body: dict[str, Any] = json.loads(configmap["data"]["headwater.json"])
    return body


def test_the_dashboard_is_off_by_default(manifests: list[dict[str, Any]]) -> None:
    assert _dashboard_configmaps(manifests) == []


def test_the_configmap_carries_the_charts_dashboard_json(dashboard: dict[str, Any]) -> None:
    assert dashboard == json.loads((CHART_DIR / "dashboards" / "headwater.json").read_text())
    assert dashboard["uid"] == "headwater-services"
    titles = [panel["title"] for panel in dashboard["panels"]]
    assert {
        "Requests per second",
        "Errors (5xx) per second",
        "Latency p95",
        "Ingest spool (bytes waiting to ship)",
    } <= set(titles)


async def _exposed() -> set[str]:
    """Return the metric names the services' /metrics answers declare (``# TYPE`` lines)."""
    names: set[str] = set()
    for app in (create_ingest_app(IngestSettings()), create_replay_app(ReplaySettings())):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc") as client:
            response = await client.get("/metrics")
        assert response.status_code == 200
        for line in response.text.splitlines():
            if line.startswith("# TYPE "):
                name, kind = line.split()[2:4]
                names.add(name)
                if kind == "histogram":
                    names.update(f"{name}{suffix}" for suffix in HISTOGRAM_SERIES)
    return names


async def test_every_promql_metric_is_exposed_by_a_service(dashboard: dict[str, Any]) -> None:
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    queries += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    charted = {name for query in queries for name in METRIC.findall(query)}
    exposed = await _exposed()

    assert charted, "the dashboard charts no Headwater metric"
    assert charted <= exposed, f"charted but exposed by no service: {sorted(charted - exposed)}"
