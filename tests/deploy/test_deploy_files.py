"""The compose file and the Helm chart, checked with the real tools (no container engine needed)."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import SERVICE_PORTS
from tests.deploy.conftest import CHART_DIR, COMPOSE_FILE, Tools, parse_manifests

WORKER_SERVICES = ("transform", "loader", "replay", "poller")  # ingest ships from its API process
COMPOSE_ENV = (
    "AWS_ENDPOINT_URL",
    "HEADWATER_REDIS_URL",
    "HEADWATER_DATABASE_URL",
    "HEADWATER_DATA_DIR",
    "HEADWATER_RESOURCE_PREFIX",
    "HEADWATER_INGEST_URL",
    "HEADWATER_FERNET_KEY",
)


# --- docker-compose.yml -----------------------------------------------------------------------------------------


def test_compose_file_validates_with_compose_v2(tools: Tools) -> None:
    result = tools.run([tools.docker_compose, "-f", COMPOSE_FILE, "config", "-q"])
    assert result.returncode == 0, result.stderr


def test_compose_validation_catches_a_dangling_dependency(tools: Tools, tmp_path: Path) -> None:
    broken = yaml.safe_load(COMPOSE_FILE.read_text())
    broken["services"]["loader"]["depends_on"] = {"warehouse": {"condition": "service_healthy"}}
    broken_file = tmp_path / "docker-compose.yml"
    broken_file.write_text(yaml.safe_dump(broken))
    result = tools.run([tools.docker_compose, "-f", broken_file, "config", "-q"])
    assert result.returncode != 0
    assert "warehouse" in result.stderr


def test_compose_names_every_api_and_worker_plus_infrastructure(compose_config: dict[str, Any]) -> None:
    expected = {"moto", "redis", "postgres", "migrate", "bootstrap", *SERVICE_PORTS}
    expected |= {f"{name}-worker" for name in WORKER_SERVICES} | {"replay-archiver"}
    assert set(compose_config["services"]) == expected
    assert compose_config["services"]["moto"]["image"].startswith("motoserver/moto")


def test_compose_builds_the_image_once_and_every_process_runs_it(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    builders = {name for name, service in services.items() if "build" in service}
    assert builders == {"migrate"}
    assert services["migrate"]["build"]["dockerfile"] == "Dockerfile"
    image = services["migrate"]["image"]
    for name in ["bootstrap", *SERVICE_PORTS, *(f"{w}-worker" for w in WORKER_SERVICES)]:
        assert services[name]["image"] == image, name
        assert services[name]["pull_policy"] == "never", name  # a local tag: pulling it could only fail


def test_compose_apis_serve_their_port_and_check_readyz(compose_config: dict[str, Any]) -> None:
    for name, port in SERVICE_PORTS.items():
        service = compose_config["services"][name]
        command = service["command"]
        assert command[:3] == ["uvicorn", "--factory", f"services.{name}.app:create_app"]
        assert command[command.index("--port") + 1] == str(port)
        assert command[command.index("--host") + 1] == "0.0.0.0"
        probe = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/readyz" in probe, name


WORKER_RUN = ["python", "-m", "shared.worker_process", "run"]
WORKER_CHECK = ["python", "-m", "shared.worker_process", "check"]


def test_compose_workers_run_as_replicas_and_check_their_own_health(compose_config: dict[str, Any]) -> None:
    for name in WORKER_SERVICES:
        service = compose_config["services"][f"{name}-worker"]
        settings = f"services.{name}.worker.WorkerSettings"
        assert service["command"] == [*WORKER_RUN, settings]
        assert service["healthcheck"]["test"] == ["CMD", *WORKER_CHECK, settings]
        # Jobs in hand get 25 s after SIGTERM, inside the 30 s before Docker kills the container.
        assert int(service["environment"]["HEADWATER_WORKER_SHUTDOWN_WAIT_S"]) < 30


def test_compose_processes_wait_for_migrate_and_bootstrap(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    assert services["migrate"]["command"] == ["headwater", "migrate"]
    assert services["bootstrap"]["command"] == ["headwater", "bootstrap"]
    for name in [*SERVICE_PORTS, *(f"{w}-worker" for w in WORKER_SERVICES)]:
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["bootstrap"]["condition"] == "service_completed_successfully", name
        for infrastructure in ("moto", "redis", "postgres"):
            assert depends[infrastructure]["condition"] == "service_healthy", name
    for infrastructure in ("moto", "redis", "postgres"):
        assert services[infrastructure]["healthcheck"]["test"], infrastructure


def test_compose_environment_points_at_moto_redis_and_postgres(compose_config: dict[str, Any]) -> None:
    for name in ["migrate", "bootstrap", *SERVICE_PORTS, *(f"{w}-worker" for w in WORKER_SERVICES)]:
        env = compose_config["services"][name]["environment"]
        assert set(COMPOSE_ENV) <= set(env), name
        assert env["AWS_ENDPOINT_URL"] == "http://moto:5000"
        assert env["HEADWATER_DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert "@postgres:5432/" in env["HEADWATER_DATABASE_URL"]
        assert env["HEADWATER_REDIS_URL"].startswith("redis://redis:6379")
        assert env["HEADWATER_INGEST_URL"] == f"http://ingest:{SERVICE_PORTS['ingest']}"


def test_compose_ingest_spool_lives_on_a_named_volume(compose_config: dict[str, Any]) -> None:
    ingest = compose_config["services"]["ingest"]
    data_dir = ingest["environment"]["HEADWATER_DATA_DIR"]
    mounts = {mount["target"]: mount for mount in ingest["volumes"]}
    assert mounts[data_dir]["type"] == "volume"
    assert mounts[data_dir]["source"] in compose_config["volumes"]
    services = compose_config["services"]
    others = {mount["source"] for name in SERVICE_PORTS if name != "ingest" for mount in services[name]["volumes"]}
    assert mounts[data_dir]["source"] not in others


# --- Helm chart -------------------------------------------------------------------------------------------------


def _kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in manifests if doc["kind"] == kind}


def _containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return list(workload["spec"]["template"]["spec"]["containers"])


def test_helm_lint_strict_passes(tools: Tools) -> None:
    result = tools.run([tools.helm, "lint", "--strict", CHART_DIR])
    assert result.returncode == 0, result.stdout + result.stderr


# 1.25: the chart's kubeVersion floor; 1.30: the target; 1.37: the newest schemas kubernetes-validate carries.
@pytest.mark.parametrize("kubernetes_version", ["1.25.0", "1.30.0", "1.37.0"])
def test_rendered_manifests_validate_strictly(tools: Tools, rendered: str, kubernetes_version: str) -> None:
    argv = [tools.kubernetes_validate, "--strict", "-k", kubernetes_version, "--quiet", "-"]
    result = tools.run(argv, stdin=rendered)
    assert result.returncode == 0, result.stdout + result.stderr


def test_non_default_values_render_valid_manifests(tools: Tools) -> None:
    values = {
        "secrets.existingSecret": "headwater-prod",
        "serviceAccount.create": "false",
        "services.ingest.api.autoscaling.enabled": "false",
        "services.ingest.api.podDisruptionBudget.enabled": "false",
        "services.ingest.persistence.storageClassName": "gp3",
        "services.poller.worker.enabled": "false",
        "services.replay.api.env.HEADWATER_REPLAY_MAX_RATE": "500",
        "config.awsEndpointUrl": "http://moto:5000",
        "config.extraEnv.OTEL_SERVICE_NAME": "headwater",
        "migrate.enabled": "false",
        "bootstrap.enabled": "false",
        "imagePullSecrets[0].name": "registry",
        "tolerations[0].key": "dedicated",
        "tolerations[0].operator": "Exists",
        "ingress.enabled": "true",
        "ingress.className": "nginx",
        "metrics.scrapeAnnotations": "false",
    }
    rendered = tools.helm_template(*(arg for key, value in values.items() for arg in ("--set", f"{key}={value}")))
    result = tools.run([tools.kubernetes_validate, "--strict", "-k", "1.30.0", "--quiet", "-"], stdin=rendered)
    assert result.returncode == 0, result.stdout + result.stderr
    manifests = parse_manifests(rendered)
    assert not _kind(manifests, "Job") and not _kind(manifests, "ServiceAccount")
    assert "hw-headwater-poller-worker" not in _kind(manifests, "Deployment")
    assert _kind(manifests, "StatefulSet")["hw-headwater-ingest"]["spec"]["replicas"] == 2
    replay = _containers(_kind(manifests, "Deployment")["hw-headwater-replay"])[0]
    assert {"name": "HEADWATER_REPLAY_MAX_RATE", "value": "500"} in replay["env"]
    rules = _kind(manifests, "Ingress")["hw-headwater"]["spec"]["rules"]
    backends = {path["backend"]["service"]["name"] for rule in rules for path in rule["http"]["paths"]}
    assert backends <= set(_kind(manifests, "Service"))
    annotations = _kind(manifests, "Deployment")["hw-headwater-replay"]["spec"]["template"]["metadata"]["annotations"]
    assert "prometheus.io/scrape" not in annotations


def test_strict_validation_rejects_an_unknown_field(tools: Tools, manifests: list[dict[str, Any]]) -> None:
    hpa = next(doc for doc in manifests if doc["kind"] == "HorizontalPodAutoscaler")
    hpa["spec"]["targetCPUUtilizationPercentage"] = 70  # autoscaling/v1 field, unknown to v2
    result = tools.run([tools.kubernetes_validate, "--strict", "-k", "1.30.0", "-"], stdin=yaml.safe_dump(hpa))
    assert result.returncode != 0


def test_each_api_has_an_autoscaler_on_its_workload(manifests: list[dict[str, Any]]) -> None:
    autoscalers = _kind(manifests, "HorizontalPodAutoscaler")
    workloads = _kind(manifests, "Deployment") | _kind(manifests, "StatefulSet")
    targets = set()
    for hpa in autoscalers.values():
        assert hpa["apiVersion"] == "autoscaling/v2"
        target = hpa["spec"]["scaleTargetRef"]
        assert workloads[target["name"]]["kind"] == target["kind"]
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        targets.add(target["name"])
    assert targets == {f"hw-headwater-{name}" for name in SERVICE_PORTS}
    # An autoscaled workload leaves its replica count to the HPA.
    assert all("replicas" not in workloads[name]["spec"] for name in targets)


def test_migrate_hook_job_runs_after_install_and_before_upgrade(manifests: list[dict[str, Any]]) -> None:
    jobs = _kind(manifests, "Job")
    migrate = jobs["hw-headwater-migrate"]
    annotations = migrate["metadata"]["annotations"]
    # post-install: the release's ConfigMap, Secret and ServiceAccount (ordinary resources) exist by then;
    # pre-upgrade: the schema moves before any replica of the new version rolls.
    assert set(annotations["helm.sh/hook"].split(",")) == {"post-install", "pre-upgrade"}
    assert _containers(migrate)[0]["command"] == ["headwater", "migrate"]
    assert migrate["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    weight = int(annotations["helm.sh/hook-weight"])
    bootstrap = jobs["hw-headwater-bootstrap"]
    assert _containers(bootstrap)[0]["command"] == ["headwater", "bootstrap"]
    assert int(bootstrap["metadata"]["annotations"]["helm.sh/hook-weight"]) > weight


def test_configmap_secret_and_service_account_are_ordinary_resources(manifests: list[dict[str, Any]]) -> None:
    kinds = ("ConfigMap", "Secret", "ServiceAccount")
    found = [doc for doc in manifests if doc["kind"] in kinds]
    assert {doc["kind"] for doc in found} == set(kinds)
    for doc in found:
        annotations = doc["metadata"].get("annotations") or {}
        assert not [key for key in annotations if key.startswith("helm.sh/hook")], doc["metadata"]["name"]


def test_two_renders_are_byte_identical(tools: Tools) -> None:
    # GitOps renders with `helm template`: a value generated per render would change stored credentials' key.
    for args in ((), ("--set", f"secrets.fernetKey={'k' * 43}=", "--set", "secrets.ipHashSalt=salt")):
        assert tools.helm_template(*args) == tools.helm_template(*args)
    for template in (CHART_DIR / "templates").iterdir():
        text = template.read_text()
        assert "randBytes" not in text and "lookup " not in text, template.name


def test_ingest_is_a_statefulset_whose_spool_volume_survives_restarts(manifests: list[dict[str, Any]]) -> None:
    assert "hw-headwater-ingest" not in _kind(manifests, "Deployment")
    ingest = _kind(manifests, "StatefulSet")["hw-headwater-ingest"]
    claims = {claim["metadata"]["name"]: claim for claim in ingest["spec"]["volumeClaimTemplates"]}
    container = _containers(ingest)[0]
    env_dir = _kind(manifests, "ConfigMap")["hw-headwater-config"]["data"]["HEADWATER_DATA_DIR"]
    data_mount = next(m for m in container["volumeMounts"] if m["mountPath"] == env_dir)
    assert data_mount["name"] in claims
    assert claims[data_mount["name"]]["spec"]["resources"]["requests"]["storage"]
    # The spool volume is the claim, not an emptyDir shadowing it.
    pod_volumes = {v["name"] for v in ingest["spec"]["template"]["spec"].get("volumes", [])}
    assert data_mount["name"] not in pod_volumes
    assert ingest["spec"]["serviceName"] in _kind(manifests, "Service")


def test_apis_probe_healthz_for_liveness_and_readyz_for_readiness(manifests: list[dict[str, Any]]) -> None:
    apis = 0
    for workload in [*_kind(manifests, "Deployment").values(), *_kind(manifests, "StatefulSet").values()]:
        for container in _containers(workload):
            if container["name"] != "api":
                continue
            apis += 1
            port = int(container["command"][container["command"].index("--port") + 1])
            assert container["ports"][0]["containerPort"] == port
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            annotations = workload["spec"]["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/port"] == str(port)
            assert annotations["prometheus.io/path"] == "/metrics"
    assert apis == len(SERVICE_PORTS)


def test_workers_run_as_replicas_with_a_per_replica_liveness_probe(manifests: list[dict[str, Any]]) -> None:
    workers = {name: d for name, d in _kind(manifests, "Deployment").items() if name.endswith("-worker")}
    assert set(workers) == {f"hw-headwater-{name}-worker" for name in WORKER_SERVICES}
    for name in WORKER_SERVICES:
        workload = workers[f"hw-headwater-{name}-worker"]
        container = _containers(workload)[0]
        settings = f"services.{name}.worker.WorkerSettings"
        assert container["command"] == [*WORKER_RUN, settings]
        assert container["livenessProbe"]["exec"]["command"] == [*WORKER_CHECK, settings]
        env = {item["name"]: item.get("value") for item in container["env"]}
        grace = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert 0 < int(env["HEADWATER_WORKER_SHUTDOWN_WAIT_S"]) < grace


def test_every_api_has_a_service_and_a_disruption_budget(manifests: list[dict[str, Any]]) -> None:
    services = _kind(manifests, "Service")
    budgets = _kind(manifests, "PodDisruptionBudget")
    for name, port in SERVICE_PORTS.items():
        assert services[f"hw-headwater-{name}"]["spec"]["ports"][0]["port"] == port
        selector = budgets[f"hw-headwater-{name}"]["spec"]["selector"]["matchLabels"]
        assert selector["app.kubernetes.io/component"] == f"{name}-api"


def test_secret_values_appear_only_in_the_secret(tools: Tools) -> None:
    fernet_key = base64.urlsafe_b64encode(b"k" * 32).decode()
    password = "s3cr3t-db-pass"
    redis_password = "s3cr3t-redis-pass"
    salt = "s3cr3t-ip-salt"
    smtp_password = "s3cr3t-smtp-pass"
    overrides = {
        "secrets.fernetKey": fernet_key,
        "secrets.ipHashSalt": salt,
        "secrets.extra.HEADWATER_SMTP_PASSWORD": smtp_password,
        "database.password": password,
        "redis.password": redis_password,
    }
    text = tools.helm_template(*(arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")))
    manifests = parse_manifests(text)
    secret = _kind(manifests, "Secret")["hw-headwater-secrets"]
    decoded = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert decoded["HEADWATER_FERNET_KEY"] == fernet_key
    assert password in decoded["HEADWATER_DATABASE_URL"]
    assert decoded["HEADWATER_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert redis_password in decoded["HEADWATER_REDIS_URL"]
    assert decoded["HEADWATER_IP_HASH_SALT"] == salt
    assert decoded["HEADWATER_SMTP_PASSWORD"] == smtp_password
    configmaps = _kind(manifests, "ConfigMap")
    assert configmaps
    for doc in manifests:
        if doc["kind"] == "Secret":
            continue
        dumped = yaml.safe_dump(doc)
        for value in (fernet_key, password, redis_password, salt, smtp_password):
            assert value not in dumped, f"{value!r} leaked into {doc['kind']}/{doc['metadata']['name']}"
    for configmap in configmaps.values():
        assert not set(decoded) & set(configmap["data"])


def test_without_secret_values_the_secret_omits_them_and_nothing_is_generated(manifests: list[dict[str, Any]]) -> None:
    # Production settings refuse a missing Fernet key or salt at start, so a forgotten value fails loudly
    # instead of a generated one that the next render would replace.
    secret = _kind(manifests, "Secret")["hw-headwater-secrets"]
    assert not {"HEADWATER_FERNET_KEY", "HEADWATER_IP_HASH_SALT"} & set(secret["data"])


def test_existing_secret_replaces_the_rendered_one(tools: Tools) -> None:
    manifests = parse_manifests(tools.helm_template("--set", "secrets.existingSecret=headwater-prod"))
    assert not _kind(manifests, "Secret")
    for workload in [*_kind(manifests, "Deployment").values(), *_kind(manifests, "Job").values()]:
        refs = [source["secretRef"]["name"] for source in _containers(workload)[0]["envFrom"] if "secretRef" in source]
        assert refs == ["headwater-prod"]


def test_disabling_autoscaling_pins_the_replica_count(tools: Tools) -> None:
    overrides = ["--set", "services.loader.api.autoscaling.enabled=false", "--set", "services.loader.api.replicas=3"]
    manifests = parse_manifests(tools.helm_template(*overrides))
    assert "hw-headwater-loader" not in _kind(manifests, "HorizontalPodAutoscaler")
    assert _kind(manifests, "Deployment")["hw-headwater-loader"]["spec"]["replicas"] == 3


def test_values_schema_rejects_mistyped_values(tools: Tools) -> None:
    bad = ["--set", "services.loader.port=abc", "--set", "config.environment=prod", "--set", "secrets.fernetKey=short"]
    result = tools.run([tools.helm, "lint", "--strict", CHART_DIR, *bad])
    assert result.returncode != 0
    for field in ("services.loader.port", "config.environment", "secrets.fernetKey"):
        assert field in result.stdout + result.stderr, field


def test_chart_runs_the_same_processes_as_the_compose_file(
    manifests: list[dict[str, Any]], compose_config: dict[str, Any]
) -> None:
    workloads = _kind(manifests, "Deployment") | _kind(manifests, "StatefulSet")
    for name, port in SERVICE_PORTS.items():
        api = _containers(workloads[f"hw-headwater-{name}"])[0]["command"]
        compose_api = compose_config["services"][name]["command"]
        assert api[:3] == compose_api[:3]
        assert api[api.index("--port") + 1] == compose_api[compose_api.index("--port") + 1] == str(port)
    for name in WORKER_SERVICES:
        worker = _containers(workloads[f"hw-headwater-{name}-worker"])[0]
        assert worker["command"] == compose_config["services"][f"{name}-worker"]["command"]


def test_values_schema_rejects_an_unknown_top_level_key(tools: Tools) -> None:
    """A typo at the top level (here `servces`) fails the render instead of being silently ignored."""
    result = tools.run([tools.helm, "template", "hw", CHART_DIR, "--set", "servces.ingest.port=1"])
    assert result.returncode != 0
    assert "servces" in result.stderr


def test_compose_poller_sends_with_the_key_bootstrap_provisions(compose_config: dict[str, Any]) -> None:
    services = compose_config["services"]
    provisioned = services["bootstrap"]["environment"]["HEADWATER_POLLER_INGEST_API_KEY"]
    assert provisioned.startswith("hw_")
    for name in ("poller", "poller-worker"):
        assert services[name]["environment"]["HEADWATER_INGEST_API_KEY"] == provisioned, name


def _duration_s(value: str) -> float:
    """Seconds of a Go duration as compose prints it (e.g. 2m30s)."""
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(float(number) * units[unit] for number, unit in re.findall(r"([\d.]+)([hms])", value))


def test_ingest_drains_its_whole_spool_before_the_grace_period_ends(
    manifests: list[dict[str, Any]], compose_config: dict[str, Any]
) -> None:
    ingest = _kind(manifests, "StatefulSet")["hw-headwater-ingest"]
    container = _containers(ingest)[0]
    env = {item["name"]: item.get("value") for item in container["env"]}
    drain = float(env["HEADWATER_SHUTDOWN_DRAIN_S"])
    assert drain >= 60, "the drain time should cover shipping a full spool (its bound)"
    # preStop: leave the Service's endpoints before SIGTERM, so no request arrives while the spool closes.
    pre_stop = container["lifecycle"]["preStop"]
    sleep = float(pre_stop["sleep"]["seconds"]) if "sleep" in pre_stop else float(pre_stop["exec"]["command"][-1])
    command = container["command"]
    graceful = float(command[command.index("--timeout-graceful-shutdown") + 1])
    grace = ingest["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= sleep + graceful + drain + 5
    compose = compose_config["services"]["ingest"]
    compose_drain = float(compose["environment"]["HEADWATER_SHUTDOWN_DRAIN_S"])
    assert compose_drain >= 60
    compose_graceful = float(compose["command"][compose["command"].index("--timeout-graceful-shutdown") + 1])
    assert _duration_s(compose["stop_grace_period"]) >= compose_graceful + compose_drain + 5
