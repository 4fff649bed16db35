"""Chart extras operators expect: ServiceMonitor, NetworkPolicies, worker PDBs, topology spread, KEDA, helm tests."""

from __future__ import annotations

from typing import Any

import pytest

from shared.settings import HeadwaterSettings
from tests.deploy.conftest import CHART_DIR, Tools, parse_manifests

WORKERS = ("transform", "loader", "replay", "poller")
APIS = ("ingest", "transform", "loader", "replay", "poller")
# Production-like: an existing Secret, a real prefix, every optional extra on.
PRODUCTION = {
    "secrets.existingSecret": "headwater-prod",
    "config.resourcePrefix": "acme-prod",
    "serviceMonitor.enabled": "true",
    "serviceMonitor.labels.release": "kube-prometheus-stack",
    "networkPolicy.enabled": "true",
    "networkPolicy.apiFrom[0].namespaceSelector.matchLabels.name": "ingress-nginx",
    "keda.enabled": "true",
    "ingress.enabled": "true",
    "grafanaDashboard.enabled": "true",
}


def _set_args(values: dict[str, str]) -> list[str]:
    return [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]


@pytest.fixture(scope="module")
def production(tools: Tools) -> list[dict[str, Any]]:
    return parse_manifests(tools.helm_template(*_set_args(PRODUCTION)))


def _kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in manifests if doc["kind"] == kind}


def _pod_labels(manifests: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Return {component: pod labels} of every workload and test pod."""
    pods = {}
    for doc in manifests:
        if doc["kind"] in {"Deployment", "StatefulSet"}:
            labels = doc["spec"]["template"]["metadata"]["labels"]
        elif doc["kind"] == "Pod":
            labels = doc["metadata"]["labels"]
        else:
            continue
        pods[labels["app.kubernetes.io/component"]] = labels
    return pods


def test_lint_and_strict_validation_pass_with_every_extra_on(tools: Tools) -> None:
    lint = tools.run([tools.helm, "lint", "--strict", CHART_DIR, *_set_args(PRODUCTION)])
    assert lint.returncode == 0, lint.stdout + lint.stderr
    rendered = tools.helm_template(*_set_args(PRODUCTION))
    for version in ("1.25.0", "1.30.0"):
        # CRD kinds (ServiceMonitor, ScaledObject) have no schema there and are checked below instead.
        result = tools.run([tools.kubernetes_validate, "--strict", "-k", version, "--quiet", "-"], stdin=rendered)
        assert result.returncode == 0, result.stdout + result.stderr


def test_optional_extras_are_off_by_default(manifests: list[dict[str, Any]]) -> None:
    kinds = {doc["kind"] for doc in manifests}
    assert not kinds & {"ServiceMonitor", "ScaledObject", "NetworkPolicy"}


def test_each_worker_has_a_disruption_budget_on_its_pods(manifests: list[dict[str, Any]]) -> None:
    budgets = _kind(manifests, "PodDisruptionBudget")
    pods = _pod_labels(manifests)
    for name in WORKERS:
        budget = budgets[f"hw-headwater-{name}-worker"]
        assert budget["spec"]["maxUnavailable"] == 1
        assert budget["spec"]["selector"]["matchLabels"].items() <= pods[f"{name}-worker"].items()


def test_every_workload_spreads_its_own_pods_over_zones_and_nodes(manifests: list[dict[str, Any]]) -> None:
    workloads = [*_kind(manifests, "Deployment").values(), *_kind(manifests, "StatefulSet").values()]
    # The APIs, the arq workers and replay's archiver.
    assert len(workloads) == len(APIS) + len(WORKERS) + 1
    for workload in workloads:
        pod = workload["spec"]["template"]
        constraints = pod["spec"]["topologySpreadConstraints"]
        assert [c["topologyKey"] for c in constraints] == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
        for constraint in constraints:
            assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
            assert constraint["labelSelector"]["matchLabels"] == workload["spec"]["selector"]["matchLabels"]


def test_keda_scales_each_worker_on_its_arq_queue(production: list[dict[str, Any]]) -> None:
    scaled = _kind(production, "ScaledObject")
    deployments = _kind(production, "Deployment")
    assert len(scaled) == len(WORKERS)
    for name in WORKERS:
        spec = scaled[f"hw-headwater-{name}-worker"]["spec"]
        assert spec["scaleTargetRef"]["name"] in deployments
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "redis"
        # The key the worker really consumes: the same settings property arq is given.
        queue = HeadwaterSettings(resource_prefix="acme-prod", service_name=name).arq_queue
        assert trigger["metadata"]["listName"] == queue == f"arq:acme-prod:{name}"
        assert trigger["metadata"]["address"] == "redis:6379"
        assert spec["cooldownPeriod"] >= 60


async def test_arq_queue_is_the_sorted_set_keda_measures(redis_url: str) -> None:
    from arq import create_pool
    from arq.connections import RedisSettings

    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    try:
        queue = HeadwaterSettings(resource_prefix="kedatest", service_name="loader").arq_queue
        await pool.delete(queue)
        await pool.enqueue_job("anything", _queue_name=queue)
        await pool.enqueue_job("anything", _queue_name=queue)
        # KEDA's redis scaler picks ZCARD for a zset key (LLEN only for lists).
        assert await pool.type(queue) == b"zset" and await pool.zcard(queue) == 2
    finally:
        await pool.delete(queue)
        await pool.aclose()


def _matches(expression: dict[str, Any], labels: dict[str, str]) -> bool:
    if expression["operator"] == "DoesNotExist":
        return expression["key"] not in labels
    assert expression["operator"] == "In"
    return labels.get(expression["key"]) in expression["values"]


def test_service_monitor_scrapes_every_api_once(production: list[dict[str, Any]]) -> None:
    (monitor,) = _kind(production, "ServiceMonitor").values()
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    selector = monitor["spec"]["selector"]
    selected = [
        svc
        for svc in _kind(production, "Service").values()
        if selector["matchLabels"].items() <= svc["metadata"]["labels"].items()
        and all(_matches(expression, svc["metadata"]["labels"]) for expression in selector["matchExpressions"])
    ]
    assert sorted(svc["metadata"]["name"] for svc in selected) == sorted(f"hw-headwater-{n}" for n in APIS)
    assert all(any(p["name"] == "http" for p in svc["spec"]["ports"]) for svc in selected)


def test_helm_test_pods_call_each_api_readyz_through_its_service(manifests: list[dict[str, Any]]) -> None:
    services = _kind(manifests, "Service")
    pods = _kind(manifests, "Pod")
    assert len(pods) == len(APIS)
    for name in APIS:
        pod = pods[f"hw-headwater-test-{name}-readyz"]
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        assert pod["spec"]["restartPolicy"] == "Never"
        (container,) = pod["spec"]["containers"]
        script = container["args"][0]
        compile(script, "readyz", "exec")
        port = services[f"hw-headwater-{name}"]["spec"]["ports"][0]["port"]
        assert f'"http://hw-headwater-{name}:{port}/readyz"' in script


# --- NetworkPolicies, evaluated as the API server's semantics say (enough of them for these policies) ---------


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return selector.get("matchLabels", {}).items() <= labels.items()


def _port_ok(rule: dict[str, Any], port: int) -> bool:
    ports = rule.get("ports")
    return not ports or any(p["port"] in (port, "http") for p in ports)


def _allowed(
    policies: list[dict[str, Any]], direction: str, pod: dict[str, str], peer: dict[str, str] | None, port: int
) -> bool:
    """Is traffic of `pod` (ingress from / egress to `peer`, None = outside the namespace) on `port` allowed?"""
    applying = [
        p for p in policies if _selects(p["spec"]["podSelector"], pod) and direction in p["spec"]["policyTypes"]
    ]
    assert applying, f"no {direction} policy selects {pod}: the default deny is missing"
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    for policy in applying:
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            if not _port_ok(rule, port):
                continue
            if peers is None:
                return True
            for other in peers:
                if peer is not None and "podSelector" in other and "namespaceSelector" not in other:
                    if _selects(other["podSelector"], peer):
                        return True
                if peer is None and ("ipBlock" in other or "namespaceSelector" in other):
                    return True
    return False


def test_network_policies_allow_only_the_mesh_flows(production: list[dict[str, Any]]) -> None:
    policies = list(_kind(production, "NetworkPolicy").values())
    pods = _pod_labels(production)
    ports = {name: svc["spec"]["ports"][0]["port"] for name, svc in _kind(production, "Service").items()}

    def call(source: str, target: str) -> bool:
        port = ports[f"hw-headwater-{target}"]
        return _allowed(policies, "Egress", pods[source], pods[f"{target}-api"], port) and _allowed(
            policies, "Ingress", pods[f"{target}-api"], pods[source], port
        )

    for source in ("poller-api", "poller-worker"):
        assert call(source, "ingest")
    for source in ("transform-api", "transform-worker"):
        assert call(source, "loader")
    for name in APIS:
        assert call("test", name)
    assert not call("loader-worker", "ingest")
    assert not call("replay-worker", "loader")
    assert not call("poller-worker", "loader")
    # Ingest's public endpoints take traffic from outside; other APIs only from the configured peers.
    assert _allowed(policies, "Ingress", pods["ingest-api"], None, ports["hw-headwater-ingest"])
    assert _allowed(policies, "Ingress", pods["loader-api"], None, ports["hw-headwater-loader"])  # apiFrom
    for name in WORKERS:
        assert not _allowed(policies, "Ingress", pods[f"{name}-worker"], None, 8000)
        # Every process reaches AWS, Redis and Postgres, and resolves names.
        for port in (443, 6379, 5432, 53):
            assert _allowed(policies, "Egress", pods[f"{name}-worker"], None, port)
        assert not _allowed(policies, "Egress", pods[f"{name}-worker"], None, 25)
    assert _allowed(policies, "Egress", pods["poller-worker"], None, 9445)  # Rainforest cloud
    assert not _allowed(policies, "Egress", pods["loader-worker"], None, 9445)


def test_network_policies_without_api_peers_keep_other_apis_internal(tools: Tools) -> None:
    values = {**PRODUCTION, "networkPolicy.apiFrom": "null"}
    del values["networkPolicy.apiFrom[0].namespaceSelector.matchLabels.name"]
    manifests = parse_manifests(tools.helm_template(*_set_args(values)))
    policies = list(_kind(manifests, "NetworkPolicy").values())
    pods = _pod_labels(manifests)
    assert not _allowed(policies, "Ingress", pods["loader-api"], None, 8003)
    assert _allowed(policies, "Ingress", pods["ingest-api"], None, 8001)


def test_each_listed_service_runs_as_its_own_service_account_for_its_iam_role(tools: Tools) -> None:
    arn = "arn:aws:iam::123456789012:role/acme-prod-ingest"
    rendered = tools.helm_template(
        "--set", f"serviceAccount.perService.ingest.eks\\.amazonaws\\.com/role-arn={arn}",
        "--set", "serviceAccount.perService.loader.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::1:role/acme-prod-loader",
    )  # fmt: skip
    result = tools.run([tools.kubernetes_validate, "--strict", "-k", "1.30.0", "--quiet", "-"], stdin=rendered)
    assert result.returncode == 0, result.stdout + result.stderr
    manifests = parse_manifests(rendered)
    accounts = _kind(manifests, "ServiceAccount")
    assert accounts["hw-headwater-ingest"]["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": arn}
    uses = {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]["serviceAccountName"]
        for doc in manifests
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}
    }
    assert uses["hw-headwater-ingest"] == "hw-headwater-ingest"
    assert uses["hw-headwater-loader"] == uses["hw-headwater-loader-worker"] == "hw-headwater-loader"
    assert uses["hw-headwater-replay"] == uses["hw-headwater-replay-worker"] == "hw-headwater"
    assert {name: sa for name, sa in uses.items() if "migrate" in name or "bootstrap" in name} and all(
        sa == "hw-headwater" for name, sa in uses.items() if "migrate" in name or "bootstrap" in name
    )
    assert set(uses.values()) <= set(accounts)


def test_values_schema_rejects_a_service_account_for_an_unknown_service(tools: Tools) -> None:
    result = tools.run([tools.helm, "template", "hw", CHART_DIR, "--set", "serviceAccount.perService.ingset.a=b"])
    assert result.returncode != 0 and "ingset" in result.stderr


def test_replays_archiver_runs_as_its_own_deployment_with_replays_identity(manifests: list[dict[str, Any]]) -> None:
    deployments = _kind(manifests, "Deployment")
    archiver = deployments["hw-headwater-replay-archiver"]["spec"]["template"]["spec"]
    replay = deployments["hw-headwater-replay"]["spec"]["template"]["spec"]
    (container,) = archiver["containers"]
    assert container["command"] == ["python", "-m", "services.replay.archiver"]
    # Replay's permissions (Kinesis read, S3 raw write) and replay's environment.
    assert archiver["serviceAccountName"] == replay["serviceAccountName"]
    assert container["envFrom"] == replay["containers"][0]["envFrom"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
