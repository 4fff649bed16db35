"""The chart's console (issue #19): off by default; on, a Deployment and Service running headwater.console that
proxies to each API's Service, the Ingress's "/" on every host (the listed API paths stay direct), and network
policies that let the console, and only it among the new pods, reach the APIs."""

from __future__ import annotations

import json
from typing import Any

from shared.settings import SERVICE_PORTS
from tests.deploy.conftest import CHART_DIR, Tools, parse_manifests

ON = ["--set", "console.enabled=true", "--set", "ingress.enabled=true", "--set", "networkPolicy.enabled=true"]


def _kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in manifests if doc["kind"] == kind}


def test_the_console_is_off_by_default(manifests: list[dict[str, Any]]) -> None:
    assert "hw-headwater-console" not in _kind(manifests, "Deployment")
    assert "hw-headwater-console" not in _kind(manifests, "Service")


def test_on_it_lints_validates_and_proxies_to_every_api_service(tools: Tools) -> None:
    lint = tools.run([tools.helm, "lint", "--strict", CHART_DIR, *ON])
    assert lint.returncode == 0, lint.stdout + lint.stderr
    rendered = tools.helm_template(*ON)
    result = tools.run([tools.kubernetes_validate, "--strict", "-k", "1.30.0", "--quiet", "-"], stdin=rendered)
    assert result.returncode == 0, result.stdout + result.stderr
    manifests = parse_manifests(rendered)

    (container,) = _kind(manifests, "Deployment")["hw-headwater-console"]["spec"]["template"]["spec"]["containers"]
    assert container["command"][:3] == ["uvicorn", "--factory", "headwater.console.app:create_app"]
    env = {item["name"]: item["value"] for item in container["env"]}
    upstreams = json.loads(env["HEADWATER_CONSOLE_UPSTREAMS"])
    assert upstreams == {name: f"http://hw-headwater-{name}:{port}" for name, port in SERVICE_PORTS.items()}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert _kind(manifests, "Service")["hw-headwater-console"]["spec"]["ports"][0]["port"] == 8000

    (rule,) = _kind(manifests, "Ingress")["hw-headwater"]["spec"]["rules"]
    paths = {p["path"]: p["backend"]["service"]["name"] for p in rule["http"]["paths"]}
    assert paths["/"] == "hw-headwater-console"
    assert paths["/v1/beacons"] == "hw-headwater-ingest"  # beacons keep going straight to ingest

    policies = _kind(manifests, "NetworkPolicy")
    for name in SERVICE_PORTS:
        if name == "ingest":
            continue  # ingest is public by default (networkPolicy.ingestPublic)
        peers = policies[f"hw-headwater-{name}-api-ingress"]["spec"]["ingress"][0]["from"]
        components = {
            p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in peers if "podSelector" in p
        }
        assert "console" in components
    egress = policies["hw-headwater-console"]["spec"]["egress"]
    reached = {e["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for e in egress}
    assert reached == {f"{name}-api" for name in SERVICE_PORTS}
