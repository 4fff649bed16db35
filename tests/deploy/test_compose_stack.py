"""docker-compose.yml run for real: the whole mesh in a docker engine, driven and broken from outside.

Images are built locally (tests/deploy/conftest.py: the debootstrap base and the stand-ins of deploy/images/ for
moto, Redis and Postgres; no registry is needed). The project gets its own name and free host ports, so it never
meets a developer's `docker compose up` or `headwater up`. Nothing is mocked. Compose is the Compose v2 binary
that tools/deploy_tools.py installs into .tools/bin.

One test, in the order the issue gives: up and healthy -> `headwater demo` (every hop, the poller's included,
reading a simulated fleet in its own container) -> SIGKILL ingest mid-stream and start it again -> restart Redis
-> moto stopped for 30 s and started again -> `docker compose down` leaves nothing.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from headwater.setup_steps import new_key_with_hash
from tests.deploy.conftest import COMPOSE_FILE, REPO_ROOT, Tools
from tests.helpers import free_port, wait_until_sync

pytestmark = [pytest.mark.container, pytest.mark.timeout(3600)]

SIMULATOR_FILE = REPO_ROOT / "tests" / "deploy" / "data" / "compose.simulator.yml"
SERVICES = ("ingest", "transform", "loader", "replay", "poller")
HEALTHCHECKED = (
    "moto",
    "redis",
    "postgres",
    "device-simulator",
    *SERVICES,
    *(f"{name}-worker" for name in SERVICES[1:]),
)
ONE_SHOTS = ("migrate", "bootstrap")
UNCHECKED = ("replay-archiver",)  # no health endpoint (as in the chart): it must simply keep running
STARTUP_TIMEOUT_S = 900  # ten Python processes importing at once on two cores shared with other work
DRAIN_TIMEOUT_S = 300
DEMO_STEPS = (
    "create load jobs",
    "send beacons (loadgen) and meter reads",
    "archive in S3 raw",
    "live Kinesis stream",
    "transform + load warehouse",
    "traffic API (DynamoDB)",
    "replay to Kinesis",
    "poller: simulated meters -> ingest",
)


@dataclass
class Stack:
    """One compose project: its name, environment, host ports and admin key."""

    tools: Tools
    project: str
    env: dict[str, str]
    ports: dict[str, int]
    admin_key: str
    cli_home: Path

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run docker-compose on this project; fail the test when it fails (``check``)."""
        files = ["-f", str(COMPOSE_FILE), "-f", str(SIMULATOR_FILE)]
        argv = [str(self.tools.docker_compose), "-p", self.project, *files, *args]
        result = subprocess.run(
            argv, cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert result.returncode == 0 or not check, f"docker-compose {' '.join(args)} failed:\n{result.stderr[-4000:]}"
        return result

    def container(self, service: str) -> str:
        """Return the id of the service's container."""
        container_id = self.compose("ps", "-a", "-q", service).stdout.strip()
        assert container_id, f"no container for {service}"
        return container_id

    def state(self, service: str) -> dict[str, Any]:
        """Return `docker inspect`'s State of the service's container."""
        result = _docker("inspect", "--format", "{{json .State}}", self.container(service))
        state: dict[str, Any] = json.loads(result.stdout)
        return state

    def healthy(self, service: str) -> bool:
        """Return whether the service's container runs and its healthcheck passes."""
        state = self.state(service)
        return bool(state["Running"]) and state.get("Health", {}).get("Status") == "healthy"

    def url(self, service: str) -> str:
        """Return the service's published base URL on this host."""
        return f"http://127.0.0.1:{self.ports[service]}"

    def s3(self) -> Any:
        """Return an S3 client on the stack's moto."""
        return boto3.client(
            "s3",
            endpoint_url=self.url("moto"),
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def post_reads(self, client: httpx.Client, reads: list[dict[str, Any]]) -> bool:
        """Post meter reads to ingest; return whether every one was acknowledged (202, all accepted)."""
        response = client.post(
            f"{self.url('ingest')}/v1/meter-reads",
            json={"reads": reads},
            headers={"Authorization": f"Bearer {self.admin_key}"},
        )
        return response.status_code == 202 and response.json()["accepted"] == len(reads)


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"docker {' '.join(args)} failed:\n{result.stderr[-2000:]}"
    return result


def _reads(tag: str, day: date, start: int, count: int) -> list[dict[str, Any]]:
    """Return ``count`` meter reads on ``day`` with ids ``<tag>-<n>``, numbered from ``start``."""
    base = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return [
        {
            "event_id": f"{tag}-{n}",
            "cloud_id": f"{n % 50:06d}",
            "timestamp": (base + timedelta(seconds=n)).isoformat().replace("+00:00", "Z"),
            "demand_kw": 1.5,
            "summation_delivered_kwh": 1000 + n,
            "summation_received_kwh": 0.0,
        }
        for n in range(start, start + count)
    ]


def _archived(stack: Stack, day: date) -> Counter[str]:
    """Return how often each event id is archived in S3 raw under meter_read/dt=<day>/ (missing bucket: none)."""
    s3 = stack.s3()
    bucket = f"{stack.env['HEADWATER_RESOURCE_PREFIX']}-raw"
    counts: Counter[str] = Counter()
    try:
        pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"meter_read/dt={day}/"))
    except s3.exceptions.NoSuchBucket:
        return counts
    for page in pages:
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(".json.gz"):
                body = gzip.decompress(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
                counts.update(json.loads(line)["event_id"] for line in body.splitlines() if line)
    return counts


def _assert_archived_exactly_once(stack: Stack, day: date, acknowledged: set[str], sent: set[str]) -> None:
    """Wait until every acknowledged read is archived, then check that nothing sent is archived twice."""

    def all_there() -> bool:
        return acknowledged <= set(_archived(stack, day))

    wait_until_sync(all_there, timeout=DRAIN_TIMEOUT_S, interval=2, message=f"acknowledged reads of {day} archived")
    counts = _archived(stack, day)
    assert acknowledged <= set(counts)
    assert set(counts) <= sent, "the archive holds reads nobody sent"
    assert [event_id for event_id, n in counts.items() if n > 1] == [], "reads archived more than once"


@dataclass
class Stream:
    """Posts batches of meter reads to ingest from a thread until stopped; records what was acknowledged."""

    stack: Stack
    tag: str
    day: date
    batch: int = 50
    acknowledged: set[str] = field(default_factory=set)
    sent: set[str] = field(default_factory=set)
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Stream:
        """Start sending."""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sending and wait for the request in flight."""
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=60)

    def _run(self) -> None:
        n = 0
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                reads = _reads(self.tag, self.day, n, self.batch)
                n += self.batch
                ids = {r["event_id"] for r in reads}
                self.sent |= ids
                try:
                    ok = self.stack.post_reads(client, reads)
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.acknowledged |= ids
                else:
                    self.failures += 1
                # A steady 500 reads/s at most (a pace, not a synchronisation): the drain afterwards stays short.
                self._stop.wait(0.1)


@pytest.fixture(scope="module")
def stack(tools: Tools, stack_images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Bring the compose project up (every health check passing); take it down with its volumes afterwards."""
    cli_home = tmp_path_factory.mktemp("compose-cli")
    cli_home.chmod(0o777)  # the simulator (uid 10001 in its container) writes its fleet's records here
    admin_key, admin_hash = new_key_with_hash()
    (cli_home / "admin.key").write_text(admin_key)
    ports = {name: free_port() for name in ("moto", *SERVICES)}
    env = tools.env | stack_images
    env |= {
        "HEADWATER_RESOURCE_PREFIX": f"hwc{uuid.uuid4().hex[:6]}",
        "HEADWATER_ADMIN_KEY_HASH": admin_hash,
        "HEADWATER_HEALTHCHECK_INTERVAL": "2s",
        "HEADWATER_SIMULATOR_EXPORT_DIR": str(cli_home),
        "MOTO_HOST_PORT": str(ports["moto"]),
        **{f"HEADWATER_{name.upper()}_HOST_PORT": str(ports[name]) for name in SERVICES},
    }
    project = f"hwtest{uuid.uuid4().hex[:8]}"
    stack = Stack(tools, project, env, ports, admin_key, cli_home)
    try:
        started = time.monotonic()
        up = stack.compose(
            "up",
            "--detach",
            "--wait",
            "--wait-timeout",
            str(STARTUP_TIMEOUT_S),
            timeout=STARTUP_TIMEOUT_S + 60,
            check=False,
        )
        if up.returncode != 0:
            logs = stack.compose("logs", "--no-color", "--tail", "15", check=False).stdout
            pytest.fail(f"compose up --wait failed:\n{up.stderr[-1500:]}\nlogs:\n{logs[-8000:]}")
        print(f"compose up --wait: {time.monotonic() - started:.0f}s")
        yield stack
    finally:
        stack.compose("down", "--volumes", "--timeout", "60", timeout=600, check=False)


def _run_demo(stack: Stack) -> str:
    """Run `headwater demo` on this host against the stack's published ports; return its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEADWATER_", "AWS_"))}
    env |= {
        "HEADWATER_DATA_DIR": str(stack.cli_home),
        "HEADWATER_RESOURCE_PREFIX": stack.env["HEADWATER_RESOURCE_PREFIX"],
        "HEADWATER_ENVIRONMENT": "local",
        **{f"HEADWATER_{name.upper()}_PORT": str(stack.ports[name]) for name in SERVICES},
        "AWS_ENDPOINT_URL": stack.url("moto"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    argv = [sys.executable, "-m", "headwater.main", "demo", "--events", "600", "--meter-reads", "100"]
    result = subprocess.run(
        [*argv, "--timeout", "300"], env=env, capture_output=True, text=True, timeout=1800, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"headwater demo failed:\n{output[-6000:]}"
    return output


def _worker_heartbeat(stack: Stack, service: str) -> float:
    """Return the mtime of the worker's heartbeat file in its container (0 while the container is not running)."""
    script = "import glob, os; print(max([os.stat(f).st_mtime for f in glob.glob('/tmp/headwater-worker-*.alive')]))"
    argv = ["docker", "exec", stack.container(service), "python", "-c", script]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    return float(result.stdout) if result.returncode == 0 else 0.0


def test_compose_stack_runs_the_demo_and_survives_kills_restarts_and_an_aws_outage(stack: Stack) -> None:
    """Every phase of issue #16 §1 against one compose project; each phase prints how long it took."""
    # --- up: every health check passes, the one-shots finished successfully ---
    for service in HEALTHCHECKED:
        assert stack.healthy(service), f"{service}: {stack.state(service)}"
    for service in UNCHECKED:
        assert stack.state(service)["Running"], f"{service}: {stack.state(service)}"
    for service in ONE_SHOTS:
        state = stack.state(service)
        assert (state["Status"], state["ExitCode"]) == ("exited", 0), f"{service}: {state}"

    # --- headwater demo: every hop, the deployed poller's reads reaching ingest included ---
    started = time.monotonic()
    output = _run_demo(stack)
    print(f"demo: {time.monotonic() - started:.0f}s")
    for step in DEMO_STEPS:
        assert f"✓ {step}" in output, f"demo step {step!r} did not pass:\n{output[-4000:]}"
    assert "skipped" not in output, output[-4000:]
    assert "demo passed" in output

    today = datetime.now(UTC).date()
    # --- SIGKILL ingest mid-stream, start it again: nothing acknowledged lost, nothing archived twice ---
    started = time.monotonic()
    kill_day = today - timedelta(days=40)
    stream = Stream(stack, f"kill-{uuid.uuid4().hex[:6]}", kill_day).start()
    try:
        wait_until_sync(lambda: len(stream.acknowledged) >= 500, timeout=120, interval=0.2, message="reads flowing")
        _docker("kill", "--signal", "KILL", stack.container("ingest"))
        wait_until_sync(lambda: stream.failures > 0, timeout=60, interval=0.2, message="ingest refusing when killed")
        acknowledged_at_kill = len(stream.acknowledged)
        _docker("start", stack.container("ingest"))  # (`compose start` would run migrate and bootstrap again)
        wait_until_sync(lambda: stack.healthy("ingest"), timeout=STARTUP_TIMEOUT_S, interval=1, message="ingest back")
        wait_until_sync(
            lambda: len(stream.acknowledged) >= acknowledged_at_kill + 500,
            timeout=120,
            interval=0.2,
            message="reads acknowledged again after the restart",
        )
    finally:
        stream.stop()
    _assert_archived_exactly_once(stack, kill_day, stream.acknowledged, stream.sent)
    print(f"ingest SIGKILL: {time.monotonic() - started:.0f}s, {len(stream.acknowledged)} reads acknowledged")

    # --- restart Redis: every worker records its health in Redis again, ingest keeps accepting ---
    # (arq's worker exits when its Redis connection breaks; the restart policy brings it back, so "again" may be
    # a new process in the same container.)
    started = time.monotonic()
    stack.compose("restart", "redis")
    wait_until_sync(lambda: stack.healthy("redis"), timeout=120, interval=0.5, message="redis back")
    restarted = time.time()
    for name in SERVICES[1:]:
        worker = f"{name}-worker"
        # The heartbeat is touched only after the worker wrote its health key to Redis.
        wait_until_sync(
            lambda w=worker: _worker_heartbeat(stack, w) > restarted,
            timeout=120,
            interval=1,
            message=f"{worker} writing to the restarted Redis",
        )
    redis_day = today - timedelta(days=41)
    reads = _reads(f"redis-{uuid.uuid4().hex[:6]}", redis_day, 0, 100)
    with httpx.Client(timeout=30) as client:
        assert stack.post_reads(client, reads)
    ids = {r["event_id"] for r in reads}
    _assert_archived_exactly_once(stack, redis_day, ids, ids)
    print(f"redis restart: {time.monotonic() - started:.0f}s")

    # --- moto (all of AWS) stopped for 30 s: ingest keeps accepting into its spool, everything drains after ---
    started = time.monotonic()
    outage_day = today - timedelta(days=42)
    tag = f"outage-{uuid.uuid4().hex[:6]}"
    stack.compose("stop", "moto")
    acknowledged: set[str] = set()
    n = 0
    with httpx.Client(timeout=30) as client:
        outage_starts = time.monotonic()
        for batch in range(60):  # 50 reads every 0.5 s for the 30 s of the outage (a pace, not a synchronisation)
            time.sleep(max(0.0, outage_starts + batch * 0.5 - time.monotonic()))
            reads = _reads(tag, outage_day, n, 50)
            n += 50
            assert stack.post_reads(client, reads), "ingest refused reads while AWS was away"
            acknowledged |= {r["event_id"] for r in reads}
        time.sleep(max(0.0, outage_starts + 30 - time.monotonic()))
        ready = client.get(f"{stack.url('ingest')}/readyz")
        assert ready.status_code == 200, ready.text
    stack.compose("start", "moto")
    wait_until_sync(lambda: stack.healthy("moto"), timeout=120, interval=0.5, message="moto back")
    # moto keeps its state in memory (as the official image does): a restarted emulator is an empty AWS account,
    # so the operator's step after it is the idempotent bootstrap (buckets, streams, tables, queues again).
    stack.compose("run", "--rm", "--no-deps", "bootstrap", timeout=600)
    _assert_archived_exactly_once(stack, outage_day, acknowledged, acknowledged)
    print(f"moto outage: {time.monotonic() - started:.0f}s, {len(acknowledged)} reads spooled and drained")

    # --- down: no container of the project is left, running or not ---
    started = time.monotonic()
    stack.compose("down", "--volumes", "--timeout", "60", timeout=600)
    label = f"label=com.docker.compose.project={stack.project}"
    assert _docker("ps", "--all", "--quiet", "--filter", label).stdout.strip() == ""
    assert _docker("volume", "ls", "--quiet", "--filter", label).stdout.strip() == ""
    print(f"down: {time.monotonic() - started:.0f}s")
