"""The whole mesh as real processes: one real event stream through every hop, then a clean shutdown.

Order matters in this module: the last test stops the mesh and checks nothing is left behind.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time

import boto3
import duckdb
import httpx
import pytest

from headwater.config import SERVICES, CliSettings
from headwater.demo import run_demo
from tests.e2e.conftest import RunningMesh, alive, descendants
from tests.helpers import wait_until_sync

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]


def mesh_settings(mesh: RunningMesh) -> CliSettings:
    runtime = json.loads((mesh.data_dir / "mesh.json").read_text())
    ports = {f"{s}_port": int(mesh.urls[s].rsplit(":", 1)[1]) for s in SERVICES}
    return CliSettings(
        data_dir=mesh.data_dir,
        aws_endpoint_url=runtime["AWS_ENDPOINT_URL"],
        redis_url=runtime["HEADWATER_REDIS_URL"],
        database_url=runtime["HEADWATER_DATABASE_URL"],
        **ports,
    )


def test_up_starts_every_service_and_worker_ready(mesh: RunningMesh) -> None:
    output = (mesh.data_dir / "up.out").read_text()
    assert "created a local admin API key" in output
    assert (mesh.data_dir / "admin.key").stat().st_mode & 0o777 == 0o600
    # Local secrets are private: the data dir, the metadata database and the simulated fleet's credentials.
    assert mesh.data_dir.stat().st_mode & 0o777 == 0o700
    for private in ("headwater.db", "simulated-devices.jl"):
        assert (mesh.data_dir / private).stat().st_mode & 0o077 == 0, private
    status = subprocess.run(
        [sys.executable, "-m", "headwater.main", "status", "--json"],
        env=mesh.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = json.loads(status.stdout)
    assert [(r["name"], r["ready"]) for r in rows] == [(s, True) for s in SERVICES]
    # moto, five APIs and the workers: every one is a child of `up`.
    commands = [" ".join(_cmdline(pid)) for pid in mesh.child_pids]
    for service in SERVICES:
        assert any(f"services.{service}.app:create_app" in c for c in commands), service
    assert any("moto.server" in c for c in commands)
    assert any("services.replay.archiver" in c for c in commands), "up should run replay's archiver"
    assert sum("arq" in c and "WorkerSettings" in c for c in commands) >= 3
    # The poller's ingest:write key reaches only the poller's processes, and is not in the runtime file.
    with_key = {" ".join(_cmdline(pid)) for pid in mesh.child_pids if b"HEADWATER_INGEST_API_KEY=hw_" in _environ(pid)}
    assert with_key and all("services.poller" in c for c in with_key)
    assert "INGEST_API_KEY" not in (mesh.data_dir / "mesh.json").read_text()


def test_keys_create_prints_only_the_key_and_it_authenticates(mesh: RunningMesh) -> None:
    created = subprocess.run(
        [sys.executable, "-m", "headwater.main", "keys", "create", "--scope", "read"],
        env=mesh.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key = created.stdout.strip()
    assert key.startswith("hw_") and "\n" not in key
    headers = {"Authorization": f"Bearer {key}"}
    runs = httpx.get(f"{mesh.urls['loader']}/v1/jobs", headers=headers, timeout=10)
    assert runs.status_code == 200
    refused = httpx.post(f"{mesh.urls['loader']}/v1/jobs", headers=headers, json={}, timeout=10)
    assert refused.status_code == 403


def test_events_travel_through_every_hop_exactly(mesh: RunningMesh) -> None:
    settings = mesh_settings(mesh)
    result = asyncio.run(run_demo(settings, events=900, meter_reads=200, step_timeout=90))
    assert result.ok, "the demo reported a failed hop (see the captured output)"
    sent = {e["event_id"]: e for e in result.plan.beacons}
    assert len(sent) > 900  # 900 impressions plus their clicks
    days = [d.isoformat() for d in result.plan.days]

    # The exact events sent are the rows of the warehouse: read the DuckDB file itself.
    warehouse = mesh.data_dir / "loader" / "warehouse.duckdb"

    def _rows() -> list[tuple[str, str, str]] | None:
        try:
            with duckdb.connect(str(warehouse), read_only=True) as con:
                return con.execute(
                    "SELECT event_id, event_type, ad_id FROM ad_events WHERE dt BETWEEN ? AND ?",
                    [days[0], days[-1]],
                ).fetchall()
        except duckdb.IOException:
            return None  # the loader holds the file for a moment; try again

    rows = wait_until_sync(_rows, timeout=30, message="warehouse file stayed locked")
    assert len(rows) == len(sent)
    assert {r[0]: (r[1], r[2]) for r in rows} == {i: (e["type"], e["ad_id"]) for i, e in sent.items()}

    # The traffic API agrees with what was sent, ad by ad.
    key = (mesh.data_dir / "admin.key").read_text().strip()
    # The poller read the simulated meters the demo registered (their reads reaching the archive is a demo step).
    devices = httpx.get(f"{mesh.urls['poller']}/v1/devices", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert len(devices.json()["devices"]) == 50
    per_ad: dict[str, list[int]] = {}
    for event in sent.values():
        per_ad.setdefault(event["ad_id"], [0, 0])[event["type"] == "click"] += 1
    for ad, (imps, clks) in per_ad.items():
        series = httpx.get(
            f"{mesh.urls['loader']}/advertising/traffic/{ad}",
            params={"start": days[0], "end": days[-1]},
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        ).json()
        assert (series["totals"]["impressions"], series["totals"]["clicks"]) == (imps, clks)


def test_the_demo_runs_again_on_the_same_mesh(mesh: RunningMesh) -> None:
    # `./run demo` twice on one machine: the second run picks days that hold no data yet and re-registers the same
    # meters (200 instead of 201), and every hop is exact again.
    result = asyncio.run(run_demo(mesh_settings(mesh), events=200, meter_reads=50, step_timeout=90))
    assert result.ok, "the second demo run reported a failed hop (see the captured output)"


def test_a_stream_registered_through_the_api_is_archived_by_the_archiver_up_runs(mesh: RunningMesh) -> None:
    # A producer that is not Headwater writes to its own stream; registering it is all an operator does.
    runtime = json.loads((mesh.data_dir / "mesh.json").read_text())
    kinesis = boto3.client(
        "kinesis",
        endpoint_url=runtime["AWS_ENDPOINT_URL"],
        region_name=mesh_settings(mesh).aws_region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    stream = "partner-clicks"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    wait_until_sync(
        lambda: (
            kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE"
        ),
        timeout=20,
        message="the partner stream did not become ACTIVE",
    )
    records = [{"Data": json.dumps({"n": n}).encode(), "PartitionKey": f"u{n}"} for n in range(25)]
    assert kinesis.put_records(StreamName=stream, Records=records)["FailedRecordCount"] == 0
    admin = {"Authorization": f"Bearer {(mesh.data_dir / 'admin.key').read_text().strip()}"}
    created = httpx.post(
        f"{mesh.urls['replay']}/v1/archives", json={"stream": stream, "source": "partner"}, headers=admin, timeout=10
    )
    assert created.status_code == 202, created.text

    def archived() -> int:
        listing = httpx.get(f"{mesh.urls['replay']}/v1/archives", headers=admin, timeout=10).json()
        return sum(a["archived"] for a in listing["archives"] if a["stream"] == stream)

    wait_until_sync(lambda: archived() >= 25, timeout=90, message="up's archiver did not archive the stream")
    assert archived() == 25


def test_sigterm_then_ctrl_c_stops_everything_and_leaves_no_process(mesh: RunningMesh) -> None:
    children = descendants(mesh.process.pid) | mesh.child_pids
    assert children, "up should have child processes"
    started = time.monotonic()
    # An impatient operator: SIGTERM, then Ctrl-C while the first stop is under way.
    mesh.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)  # not synchronisation: the second signal must land while the supervisor handles the first
    mesh.process.send_signal(signal.SIGINT)
    assert mesh.process.wait(60) == 0
    wait_until_sync(lambda: not any(alive(pid) for pid in children), timeout=15, message="children still alive")
    assert time.monotonic() - started < 60
    assert not (mesh.data_dir / "mesh.json").exists()


def _environ(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [part.decode() for part in handle.read().split(b"\0") if part]
    except OSError:
        return []
