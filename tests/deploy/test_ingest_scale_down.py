"""Ingest as deployed: readiness needs only what accepting needs, and scaling 2 -> 1 never marks a day early.

Two ingest apps share Redis, the metadata database and the emulator, each with its own spool (as two StatefulSet
replicas with their own volumes). One replica's AWS path goes through a proxy the test cuts, so its spool still
holds acknowledged events when it stops; its day must stay unmarked until those events are archived.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.aws import AwsClients
from shared.messages import utc_now
from tests.helpers import free_port, wait_until
from tests.ingest.conftest import bootstrap_ingest, make_keys, serve
from tests.ingest.proxy import CuttableProxy

pytestmark = pytest.mark.timeout(180)

DAY = "2026-11-23"
MARKER = f"beacon/dt={DAY}/_COMPLETE"


def _settings(make_settings: Callable[..., Any], **overrides: Any) -> IngestSettings:
    values: dict[str, Any] = {
        "flush_interval_s": 0.1,
        "cloudwatch_enabled": False,
        "day_complete_grace_s": 0.0,
        "day_quiet_s": 0.0,
        "shutdown_drain_s": 1.0,
    }
    return make_settings(IngestSettings, **(values | overrides))


async def _post(http: httpx.AsyncClient, key: str, count: int, start: int) -> int:
    events = [{"type": "impression", "ad_id": f"a{start + i}", "timestamp": f"{DAY}T10:00:00Z"} for i in range(count)]
    response = await http.post("/v1/events", json={"events": events}, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 202, response.text
    return int(response.json()["accepted"])


async def _marker(aws: AwsClients, bucket: str) -> dict[str, Any] | None:
    s3 = await aws.get("s3")
    try:
        obj = await s3.get_object(Bucket=bucket, Key=MARKER)
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(await obj["Body"].read())


def _wiring(app: FastAPI) -> Any:
    return app.state.wiring


async def test_readyz_ignores_s3_and_kinesis_and_follows_the_spool(
    make_settings: Callable[..., Any], tmp_path: Path
) -> None:
    # AWS entirely unreachable: ingest still accepts into its spool, so it must stay ready.
    dead = f"http://127.0.0.1:{free_port()}"
    settings = _settings(make_settings, aws_endpoint_url=dead, spool_max_bytes=64 * 1024)
    write_key, _ = await make_keys(settings)
    app = create_app(settings)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert set(ready.json()["checks"]) == {"redis", "database", "spool"}
        accepted = 0
        while _wiring(app).spool.bytes_used < settings.spool_max_bytes - 2048:
            response = await http.post(
                "/v1/events",
                json={"events": [{"type": "impression", "ad_id": f"{accepted:04d}" + "x" * 100}] * 4},
                headers={"Authorization": f"Bearer {write_key}"},
            )
            if response.status_code != 202:
                break
            accepted += 1
        assert accepted > 0
        # At its bound the spool refuses events: readiness says so, and the load balancer sends them elsewhere.
        full = await http.get("/readyz")
        assert full.status_code == 503
        assert full.json()["checks"]["spool"] != "ok"


async def test_scaling_two_replicas_to_one_marks_the_day_with_every_acknowledged_event(
    make_settings: Callable[..., Any], aws_endpoint: str, tmp_path: Path
) -> None:
    proxy = CuttableProxy(urlsplit(aws_endpoint).port or 80)
    await proxy.start()
    try:
        # Quiet for 3 s before a day is marked: no marker while the stream runs, only after it.
        survivor = _settings(make_settings, data_dir=tmp_path / "replica-1", day_quiet_s=3.0)
        leaving = _settings(make_settings, data_dir=tmp_path / "replica-0", aws_endpoint_url=proxy.url, day_quiet_s=3.0)
        await bootstrap_ingest(survivor)
        write_key, _ = await make_keys(survivor)
        acked = 0
        survivor_app = create_app(survivor)
        async with (
            AwsClients(survivor) as aws,
            serve(survivor_app) as survivor_url,
            httpx.AsyncClient(base_url=survivor_url, timeout=10) as to_survivor,
        ):
            leaving_app = create_app(leaving)
            async with (
                serve(leaving_app) as leaving_url,
                httpx.AsyncClient(base_url=leaving_url, timeout=10) as to_leaving,
            ):
                for batch in range(4):
                    acked += await _post(to_survivor, write_key, 5, batch * 10)
                    acked += await _post(to_leaving, write_key, 5, batch * 10 + 5)
                # Mid-stream, the leaving replica loses AWS, keeps accepting into its spool, then is scaled away.
                proxy.cut()
                acked += await _post(to_leaving, write_key, 7, 100)
                acked += await _post(to_survivor, write_key, 3, 200)
            leftover = list((tmp_path / "replica-0").rglob("*.seg"))
            assert leftover, "the cut replica should still hold spooled events after its drain time"
            # The survivor ships its own events; the day must not be marked while the other spool holds some.
            await wait_until(lambda: _idle(survivor_app), message="survivor shipped everything it accepted")
            s3 = await aws.get("s3")
            later = utc_now() + timedelta(seconds=10)  # past the quiet time: only the other spool may hold it back
            written = await _wiring(survivor_app).markers.write_due(s3, local_pending=set(), now=later)
            assert written == [], "a day was marked while acknowledged events of it were still spooled"
            assert await _marker(aws, survivor.bucket("raw")) is None
            # The replica comes back on its volume (or another process adopts it): everything ships, then the marker.
            proxy.restore()
            returning_app = create_app(leaving)
            async with serve(returning_app):
                marker = await wait_until(
                    lambda: _marker(aws, survivor.bucket("raw")), timeout=60, message="the day's _COMPLETE marker"
                )
        assert marker["events"] == acked
    finally:
        await proxy.stop()


async def _idle(app: FastAPI) -> bool:
    wiring = _wiring(app)
    return wiring.spool.bytes_used == 0 and wiring.shipper.healthy
