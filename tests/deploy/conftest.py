"""Fixtures for the deployment files: the tools installed once per session, and the chart rendered once."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_SCRIPT = REPO_ROOT / "tools" / "deploy_tools.py"
CHART_DIR = REPO_ROOT / "deploy" / "helm" / "headwater"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
EXIT_DOWNLOAD_FAILED = 3


@dataclass(frozen=True)
class Tools:
    """The installed deployment tools and the environment to run them in."""

    helm: Path
    docker_compose: Path
    kubernetes_validate: Path
    env: dict[str, str]

    def run(self, argv: Sequence[str | Path], *, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run a tool from the repository root and return its completed process."""
        return subprocess.run(
            [str(arg) for arg in argv],
            cwd=REPO_ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def helm_template(self, *args: str) -> str:
        """Render the chart (hooks included) and return the manifests."""
        result = self.run([self.helm, "template", "hw", CHART_DIR, "--namespace", "headwater", *args])
        assert result.returncode == 0, result.stderr
        return result.stdout


def _tool_env(home: Path) -> dict[str, str]:
    # Keep helm's cache/config out of the user's home and make compose ignore any HEADWATER_* in the caller's env.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HEADWATER_", "HELM_"))}
    env |= {
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return env


@pytest.fixture(scope="session")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Tools:
    """Install helm, docker-compose and kubernetes-validate (once; skipped when already there)."""
    result = subprocess.run(
        [sys.executable, str(TOOLS_SCRIPT)], capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode == EXIT_DOWNLOAD_FAILED:
        pytest.skip(f"deployment tools could not be downloaded (no network?): {result.stderr.strip()[-500:]}")
    assert result.returncode == 0, f"tools/deploy_tools.py failed:\n{result.stderr}"
    paths = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return Tools(
        helm=Path(paths["helm"]),
        docker_compose=Path(paths["docker-compose"]),
        kubernetes_validate=Path(paths["kubernetes-validate"]),
        env=_tool_env(tmp_path_factory.mktemp("helm-home")),
    )


def parse_manifests(text: str) -> list[dict[str, Any]]:
    """Return the non-empty documents of a multi-document YAML stream."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.fixture(scope="session")
def rendered(tools: Tools) -> str:
    """Return the chart rendered with its default values."""
    return tools.helm_template()


@pytest.fixture(scope="session")
def manifests(rendered: str) -> list[dict[str, Any]]:
    """Return the default rendering as parsed documents."""
    return parse_manifests(rendered)


@pytest.fixture(scope="session")
def compose_config(tools: Tools) -> dict[str, Any]:
    """Return the compose file as docker-compose itself resolves it (anchors merged, variables filled)."""
    result = tools.run([tools.docker_compose, "-f", COMPOSE_FILE, "config", "--format", "yaml"])
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict)
    return config


# --- a real docker engine (tests marked `container`) -----------------------------------------------------------

IMAGES_DIR = REPO_ROOT / "deploy" / "images"
BASE_IMAGE = "headwater-base:bookworm"
# What the compose file's image variables select when no registry is reachable: the stand-ins of deploy/images/.
STACK_IMAGES = {
    "HEADWATER_IMAGE": "headwater:local",
    "MOTO_IMAGE": "headwater-moto:local",
    "REDIS_IMAGE": "headwater-redis:local",
    "POSTGRES_IMAGE": "headwater-postgres:local",
}
BUILD_TIMEOUT_S = 1500  # the first build on a busy 2-core host; reruns take the layer cache (seconds)


def docker_engine_missing() -> str | None:
    """Return why no docker engine can be used here, or None when `docker info` answers."""
    if shutil.which("docker") is None:
        return "no docker CLI (./run test installs docker.io and starts dockerd when it runs as root)"
    result = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        return f"dockerd does not answer (./run test starts it as root): {result.stderr.strip()[-300:]}"
    return None


def _docker_build(tag: str, context: Path, *args: str) -> None:
    # The classic builder works offline (BuildKit would pull its frontend image); --network host reaches the
    # package mirrors through the host's proxy, as pip and apt on the host do.
    env = os.environ | {"DOCKER_BUILDKIT": "0"}
    argv = ["docker", "build", "--quiet", "--network", "host", *args]
    result = subprocess.run(
        [*argv, "-t", tag, str(context)], env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
    )
    assert result.returncode == 0, f"docker build {tag} failed:\n{result.stderr[-3000:]}"


@pytest.fixture(scope="session")
def stack_images() -> dict[str, str]:
    """Build the Headwater image and the offline stand-ins (layer-cached: a rerun only checks the cache).

    The debootstrap base's root filesystem is cached outside the repository by deploy/images/build_base.sh
    ($HEADWATER_IMAGE_CACHE, default /var/cache/headwater-images).
    """
    reason = docker_engine_missing()
    if reason:
        pytest.skip(reason)
    base = subprocess.run(
        ["bash", str(IMAGES_DIR / "build_base.sh"), BASE_IMAGE],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert base.returncode == 0, f"build_base.sh failed:\n{base.stderr[-3000:]}"
    _docker_build(STACK_IMAGES["HEADWATER_IMAGE"], REPO_ROOT, "--build-arg", f"PYTHON_IMAGE={BASE_IMAGE}")
    for name in ("moto", "redis", "postgres"):
        tag = STACK_IMAGES[f"{name.upper()}_IMAGE"]
        _docker_build(tag, IMAGES_DIR / name, "--build-arg", f"BASE_IMAGE={BASE_IMAGE}")
    return dict(STACK_IMAGES)
