"""Durability: acknowledged events survive an AWS outage (503 at the spool bound) and a kill -9 of ingest."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.aws import AwsClients
from tests.helpers import free_port, wait_until
from tests.ingest.conftest import archived_records, bootstrap_ingest, make_keys, serve
from tests.ingest.proxy import CuttableProxy


def _batch(prefix: str, start: int, size: int) -> list[dict[str, Any]]:
    return [
        {"type": "impression", "ad_id": f"ad-{i % 3}", "event_id": f"{prefix}-{i}", "properties": {"n": i}}
        for i in range(start, start + size)
    ]


async def _archived_ids(aws: AwsClients, settings: IngestSettings) -> Counter[str]:
    return Counter(record["event_id"] for record in await archived_records(aws, settings))


async def test_outage_keeps_accepting_then_503_at_the_bound_then_drains_everything(
    ingest_settings: IngestSettings, aws: AwsClients, aws_endpoint: str
) -> None:
    proxy = CuttableProxy(urlparse(aws_endpoint).port or 80)
    await proxy.start()
    settings = ingest_settings.model_copy(
        update={"aws_endpoint_url": proxy.url, "spool_max_bytes": 30_000, "shipper_backoff_max_s": 0.3}
    )
    write, _ = await make_keys(settings)
    auth = {"Authorization": f"Bearer {write}"}
    app = create_app(settings)
    accepted: list[str] = []
    try:
        async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
            first = await http.post("/v1/events", json=_batch("up", 0, 5), headers=auth)
            assert first.status_code == 202
            accepted += [f"up-{i}" for i in range(5)]
            await wait_until(lambda: _has_all(aws, settings, accepted), message="shipped while AWS is up")

            proxy.cut()
            refused = None
            for n in range(0, 2000, 10):
                response = await http.post("/v1/events", json=_batch("down", n, 10), headers=auth)
                if response.status_code == 503:
                    refused = response
                    break
                assert response.status_code == 202, response.text
                accepted += [f"down-{i}" for i in range(n, n + 10)]
            assert refused is not None, "ingest never pushed back"
            assert int(refused.headers["retry-after"]) > 0
            assert refused.json()["error"]["code"] == "unavailable"
            assert len(accepted) >= 5 + 40, "ingest should keep accepting while the spool has room"
            await wait_until(lambda: _shipper_failing(app), timeout=30, message="shipper reports the outage")
            ready = await http.get("/readyz")
            assert ready.status_code == 503

            proxy.restore()
            ids = await wait_until(
                lambda: _has_all(aws, settings, accepted), timeout=60, message="spool drained after the outage"
            )
            assert all(count == 1 for count in ids.values())
            await wait_until(lambda: _spool_empty(app), message="spool empty")
            after = await http.post("/v1/events", json=_batch("after", 0, 1), headers=auth)
            assert after.status_code == 202
    finally:
        await proxy.stop()


async def _has_all(aws: AwsClients, settings: IngestSettings, expected: list[str]) -> Counter[str] | None:
    ids = await _archived_ids(aws, settings)
    return ids if set(expected) <= set(ids) else None


async def _shipper_failing(app: Any) -> bool:
    return app.state.wiring.shipper.healthy is False


async def _spool_empty(app: Any) -> bool:
    return app.state.wiring.spool.bytes_used == 0


def _start_ingest(env: dict[str, str], port: int, log_path: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", "--factory", "services.ingest.app:create_app", "--host", "127.0.0.1"]
    return subprocess.Popen(
        [*command, "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log_path.open("ab"),
    )


async def _wait_ready(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            return (await http.get(f"{url}/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


async def test_kill_9_mid_stream_loses_no_acknowledged_event_and_archives_each_once(
    ingest_settings_factory: Callable[..., IngestSettings], aws_endpoint: str, tmp_path: Path
) -> None:
    settings = ingest_settings_factory(flush_interval_s=3.0, spool_segment_max_events=200)
    await bootstrap_ingest(settings)
    write, _ = await make_keys(settings)
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": aws_endpoint,
        "HEADWATER_ENVIRONMENT": "test",
        "HEADWATER_REDIS_URL": settings.redis_url,
        "HEADWATER_DATABASE_URL": settings.database_url,
        "HEADWATER_DATA_DIR": str(settings.data_dir),
        "HEADWATER_FLUSH_INTERVAL_S": "3.0",
        "HEADWATER_SPOOL_SEGMENT_MAX_EVENTS": "200",
        "HEADWATER_CLOUDWATCH_ENABLED": "false",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "ingest.log"
    process = _start_ingest(env, port, log_path)
    acked: list[str] = []
    try:
        await wait_until(lambda: _wait_ready(url), timeout=30, message="ingest ready")

        async def sender(worker: int, http: httpx.AsyncClient) -> None:
            n = 0
            while True:
                batch = _batch(f"w{worker}", n, 20)
                try:
                    response = await http.post("/v1/events", json=batch, headers={"Authorization": f"Bearer {write}"})
                except httpx.HTTPError:
                    return
                if response.status_code == 202:
                    acked.extend(event["event_id"] for event in batch)
                n += 20

        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            senders = [asyncio.create_task(sender(w, http)) for w in range(4)]
            await wait_until(lambda: _enough(acked, 600), timeout=60, message="events acknowledged before the kill")
            process.send_signal(signal.SIGKILL)
            process.wait(10)
            await asyncio.wait_for(asyncio.gather(*senders), timeout=30)

        spooled = list((settings.spool_dir).glob("slot-*/*.open")) + list(settings.spool_dir.glob("slot-*/*.seg"))
        assert spooled, "the kill should leave acknowledged events in the spool"

        process = _start_ingest(env, port, log_path)
        await wait_until(lambda: _wait_ready(url), timeout=30, message="ingest ready after restart")
        async with AwsClients(settings) as aws:
            ids = await wait_until(
                lambda: _has_all(aws, settings, acked), timeout=60, message="every acknowledged event archived"
            )
        duplicated = {event_id: n for event_id, n in ids.items() if n > 1}
        assert not duplicated, f"archived more than once: {list(duplicated)[:5]}"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


async def _enough(items: list[str], count: int) -> bool:
    return len(items) >= count


async def test_graceful_shutdown_ships_what_the_spool_holds(ingest_settings: IngestSettings, aws: AwsClients) -> None:
    settings = ingest_settings.model_copy(update={"flush_interval_s": 600.0})
    write, _ = await make_keys(settings)
    app = create_app(settings)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.post("/v1/events", json=_batch("bye", 0, 7), headers={"Authorization": f"Bearer {write}"})
        assert response.status_code == 202
        assert await archived_records(aws, settings) == [], "nothing is shipped before the flush interval"
    ids = await _archived_ids(aws, settings)
    assert ids == Counter({f"bye-{i}": 1 for i in range(7)})
    assert not list(settings.spool_dir.glob("slot-*/*.seg"))
