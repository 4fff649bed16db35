"""Readings are posted to ingest's /v1/meter-reads in batches; failed posts are kept and retried."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson

from services.poller.ingest_client import IngestPoster
from services.poller.models import DeviceCreate
from services.poller.registry import Registry
from services.poller.simulator import SimulatedFleet
from tests.helpers import wait_until
from tests.poller.conftest import device_record


class RecordingIngest:
    """A tiny ASGI ingest stand-in: fails the first ``fail_first`` posts with 503, then records bodies."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.attempts = 0
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.attempts += 1
        ok = scope["path"] == "/v1/meter-reads" and self.attempts > self.fail_first
        if ok:
            self.bodies.append(orjson.loads(body))
            self.auth.append(dict(scope["headers"]).get(b"authorization", b"").decode())
        status = 202 if ok else 503
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})

    @property
    def reads(self) -> list[dict[str, Any]]:
        return [read for body in self.bodies for read in body["reads"]]


def sample_read(n: int) -> dict[str, Any]:
    return {
        "cloud_id": f"{n:06d}",
        "timestamp": "2026-11-25T14:00:00Z",
        "demand_kw": 1.5,
        "summation_delivered_kwh": 10.0,
        "summation_received_kwh": 0.0,
        "raw": {},
    }


async def test_failed_posts_are_kept_and_retried_in_order(fleet_server: Callable[..., Any]) -> None:
    ingest = RecordingIngest(fail_first=2)
    url = await fleet_server(ingest)
    async with httpx.AsyncClient() as http:
        poster = IngestPoster(http, base_url=url, api_key="hw_k_secret", batch_size=3, max_backoff_s=0.05)
        poster._backoff = 0.01
        for n in range(7):
            poster.add(sample_read(n))
        assert await poster.flush() == 0  # 503: kept
        assert len(poster.buffer) == 7

        async def _drained() -> bool:
            await poster.flush()
            return not poster.buffer

        await wait_until(_drained, timeout=5, message="buffer drained after ingest recovers")
    assert [read["cloud_id"] for read in ingest.reads] == [f"{n:06d}" for n in range(7)]
    assert [len(body["reads"]) for body in ingest.bodies] == [3, 3, 1]
    assert set(ingest.auth) == {"Bearer hw_k_secret"}
    assert poster.dropped == 0 and poster.failures >= 1


async def test_poller_posts_readings_in_the_meter_read_shape(
    registry: Registry, fleet: SimulatedFleet, fleet_server: Callable[..., Any], start_poller: Callable[..., Any]
) -> None:
    ingest = RecordingIngest(fail_first=1)
    url = await fleet_server(ingest)
    await registry.create(device_in=DeviceCreate.model_validate(device_record(fleet, "000002")))
    async with httpx.AsyncClient() as http:
        poster = IngestPoster(http, base_url=url, api_key="hw_k_secret", max_backoff_s=0.1)
        await start_poller(poster=poster)
        await wait_until(lambda: _value(len(ingest.reads) >= 3), timeout=15, message="three reads posted")
    read = ingest.reads[0]
    assert set(read) == {
        "event_id",
        "cloud_id",
        "timestamp",
        "demand_kw",
        "summation_delivered_kwh",
        "summation_received_kwh",
        "raw",
    }
    assert read["cloud_id"] == "000002" and read["timestamp"].endswith("Z")
    assert read["event_id"].startswith("meter-000002-")
    assert len({r["event_id"] for r in ingest.reads}) == len(ingest.reads)
    assert isinstance(read["demand_kw"], float)
    assert "InstantaneousDemand" in read["raw"]


async def _awaitable(value: Any) -> Any:
    return value


def _value(value: Any) -> Any:
    return _awaitable(value)
