"""Batches, dedup, real-time counters, custom types, rate and size limits, over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from services.ingest.api import PIXEL
from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.aws import AwsClients
from tests.helpers import wait_until
from tests.ingest.conftest import Ingest, archived_records, bootstrap_ingest, make_keys, serve


async def test_batch_rejects_only_the_bad_events_with_index_and_reason(ingest: Ingest, aws: AwsClients) -> None:
    events = [
        {"type": "impression", "ad_id": "a", "event_id": "e0"},
        {"type": "click"},
        {"type": "meter_read", "cloud_id": 123, "demand_kw": 1.0},
        "not an object",
        {"type": "click", "ad_id": "a", "event_id": "e4"},
    ]
    response = await ingest.http.post("/v1/events", json={"events": events}, headers=ingest.auth())
    assert response.status_code == 202
    body = response.json()
    assert (body["accepted"], body["rejected"], body["duplicates"]) == (2, 3, 0)
    statuses = {r["index"]: (r["status"], r["reason"]) for r in body["results"]}
    assert statuses[0] == ("accepted", None)
    assert statuses[1][0] == "rejected" and "ad_id" in statuses[1][1]
    assert statuses[2][0] == "rejected" and "cloud_id" in statuses[2][1]
    assert statuses[3] == ("rejected", "event must be a JSON object")
    assert statuses[4] == ("accepted", None)
    records = await wait_until(
        lambda: _with_count(archived_records(aws, ingest.settings), 2), message="two good events archived"
    )
    assert sorted(r["event_id"] for r in records) == ["e0", "e4"]


async def _with_count(coro, count: int):  # type: ignore[no-untyped-def]
    records = await coro
    return records if len(records) >= count else None


async def test_a_lone_invalid_event_is_a_422_with_the_field(ingest: Ingest) -> None:
    response = await ingest.http.post("/v1/events", json={"type": "impression"}, headers=ingest.auth())
    assert response.status_code == 422
    assert "ad_id" in response.json()["error"]["details"][0]["reason"]


async def test_duplicate_ids_within_the_window_are_accepted_once(ingest: Ingest, aws: AwsClients) -> None:
    first = await ingest.http.get("/v1/beacons/impression", params={"ad_id": "a", "event_id": "dup-1"})
    again = await ingest.http.post("/v1/beacons/impression", json={"ad_id": "a", "event_id": "dup-1"})
    assert first.status_code == 200
    assert again.json() == {"event_id": "dup-1", "status": "duplicate"}
    batch = [
        {"type": "impression", "ad_id": "a", "event_id": "dup-1"},
        {"type": "impression", "ad_id": "a", "event_id": "dup-2"},
        {"type": "impression", "ad_id": "a", "event_id": "dup-2"},
    ]
    body = (await ingest.http.post("/v1/events", json=batch, headers=ingest.auth())).json()
    assert [r["status"] for r in body["results"]] == ["duplicate", "accepted", "duplicate"]

    records = await wait_until(
        lambda: _with_count(archived_records(aws, ingest.settings), 2), message="unique events archived"
    )
    assert sorted(r["event_id"] for r in records) == ["dup-1", "dup-2"]
    realtime = await wait_until(lambda: _realtime_with(ingest, impressions=2), message="counted once")
    assert realtime["totals"]["impressions"] == 2


async def _realtime_with(ingest: Ingest, *, impressions: int, clicks: int = 0) -> dict | None:
    response = await ingest.http.get("/v1/realtime", params={"minutes": 5}, headers=ingest.auth(ingest.read_key))
    body = response.json()
    totals = body["totals"]
    return body if (totals["impressions"], totals["clicks"]) == (impressions, clicks) else None


async def test_realtime_counts_impressions_clicks_and_ctr_overall_and_per_ad(ingest: Ingest) -> None:
    events = [{"type": "impression", "ad_id": "ad-a"} for _ in range(10)]
    events += [{"type": "click", "ad_id": "ad-a"} for _ in range(3)]
    events += [{"type": "impression", "ad_id": "ad-b"} for _ in range(5)]
    assert (await ingest.http.post("/v1/events", json=events, headers=ingest.auth())).status_code == 202

    body = await wait_until(lambda: _realtime_with(ingest, impressions=15, clicks=3), message="counters flushed")
    assert body["minutes"] == 5 and len(body["series"]) == 5
    assert body["totals"]["ctr"] == pytest.approx(3 / 15)
    assert body["by_ad"]["ad-a"] == {"impressions": 10, "clicks": 3, "ctr": pytest.approx(0.3)}
    assert body["by_ad"]["ad-b"] == {"impressions": 5, "clicks": 0, "ctr": 0.0}
    assert sum(minute["impressions"] for minute in body["series"]) == 15


async def test_realtime_needs_the_read_scope(ingest: Ingest) -> None:
    assert (await ingest.http.get("/v1/realtime")).status_code == 401


async def test_custom_type_needs_a_registered_schema(ingest: Ingest, aws: AwsClients) -> None:
    s3 = await aws.get("s3")
    await s3.put_object(Bucket=ingest.settings.bucket("curated"), Key="_schemas/signup/v1.yaml", Body=b"name: signup")
    events = [
        {"type": "signup", "event_id": "s1", "plan": "pro", "properties": {"ref": "mail"}},
        {"type": "unregistered_thing", "event_id": "u1"},
    ]
    body = (await ingest.http.post("/v1/events", json=events, headers=ingest.auth())).json()
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected"]
    assert "unregistered_thing" in body["results"][1]["reason"]
    [record] = await wait_until(lambda: archived_records(aws, ingest.settings, "signup/"), message="custom archived")
    assert (record["type"], record["source"]) == ("signup", "signup")
    assert record["properties"] == {"ref": "mail", "plan": "pro"}


@pytest.fixture
async def limited(ingest_settings_factory: Callable[..., IngestSettings]) -> AsyncIterator[Ingest]:
    settings = ingest_settings_factory(beacon_rate_per_s=0.5, beacon_burst=3, batch_max_events=5, max_body_bytes=4000)
    await bootstrap_ingest(settings)
    write, read = await make_keys(settings)
    app = create_app(settings)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        yield Ingest(app=app, url=url, http=http, write_key=write, read_key=read, settings=settings)


async def test_beacons_are_rate_limited_per_client(limited: Ingest) -> None:
    codes = [(await limited.http.get("/v1/beacons/impression", params={"ad_id": "a"})).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited_response = await limited.http.get("/v1/beacons/click", params={"ad_id": "a"})
    assert limited_response.status_code == 429
    assert int(limited_response.headers["retry-after"]) >= 1
    assert limited_response.json()["error"]["code"] == "rate_limited"


async def test_batches_over_the_event_or_byte_limit_are_refused_with_413(limited: Ingest) -> None:
    six = [{"type": "impression", "ad_id": "a"}] * 6
    too_many = await limited.http.post("/v1/events", json=six, headers=limited.auth())
    assert too_many.status_code == 413
    assert too_many.json()["error"]["code"] == "payload_too_large"
    big = [{"type": "impression", "ad_id": "a", "properties": {"blob": "x" * 5000}}]
    too_big = await limited.http.post("/v1/events", json=big, headers=limited.auth())
    assert too_big.status_code == 413
    five = await limited.http.post("/v1/events", json=six[:5], headers=limited.auth())
    assert five.status_code == 202


@pytest.mark.parametrize("fast_path", [True, False], ids=["fast-path", "routed"])
async def test_pixel_behaves_the_same_with_and_without_the_fast_path(
    ingest_settings_factory: Callable[..., IngestSettings], aws: AwsClients, fast_path: bool
) -> None:
    settings = ingest_settings_factory(beacon_fast_path=fast_path, beacon_rate_per_s=0.5, beacon_burst=2)
    await bootstrap_ingest(settings)
    app = create_app(settings)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        missing = await http.get("/v1/beacons/impression", params={"campaign_id": "c"})
        assert missing.status_code == 422
        assert missing.json()["error"]["details"][0]["field"] == "query.ad_id"
        pixel = await http.get("/v1/beacons/click", params={"ad_id": "a", "event_id": "same-1"})
        assert (pixel.status_code, pixel.headers["content-type"], pixel.content) == (200, "image/gif", PIXEL)
        assert pixel.headers["pragma"] == "no-cache"
        limited = await http.get("/v1/beacons/click", params={"ad_id": "a"})
        assert limited.status_code == 429 and "retry-after" in limited.headers
        metrics = (await http.get("/metrics")).text
        assert 'route="/v1/beacons/click",service="ingest",status="200"' in metrics
    [record] = await archived_records(aws, settings)
    assert (record["event_id"], record["type"]) == ("same-1", "click")


async def test_an_id_claimed_but_never_written_is_retried_not_called_a_duplicate(ingest: Ingest, redis) -> None:  # type: ignore[no-untyped-def]
    # A process that died between claiming the id and writing the event leaves a short-lived pending mark.
    await redis.set("hw:ingest:dedup:ghost-1", b"p", ex=10)
    single = await ingest.http.post("/v1/beacons/click", json={"ad_id": "a", "event_id": "ghost-1"})
    assert single.status_code == 503 and single.headers["retry-after"] == "1"
    batch = [{"type": "click", "ad_id": "a", "event_id": "ghost-1"}, {"type": "click", "ad_id": "a"}]
    body = (await ingest.http.post("/v1/events", json=batch, headers=ingest.auth())).json()
    assert body["results"][0]["status"] == "rejected" and body["results"][0]["reason"].startswith("retry:")
    assert body["results"][1]["status"] == "accepted"

    await redis.delete("hw:ingest:dedup:ghost-1")  # the pending mark expires
    again = await ingest.http.post("/v1/beacons/click", json={"ad_id": "a", "event_id": "ghost-1"})
    assert again.json() == {"event_id": "ghost-1", "status": "accepted"}
    assert await redis.get("hw:ingest:dedup:ghost-1") == b"1"
    assert 3000 < await redis.ttl("hw:ingest:dedup:ghost-1") <= 3600


async def test_a_full_spool_refuses_beacons_with_503_and_retry_after(
    ingest_settings_factory: Callable[..., IngestSettings],
) -> None:
    settings = ingest_settings_factory(spool_max_bytes=100, retry_after_s=7)
    await bootstrap_ingest(settings)
    app = create_app(settings)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        pixel = await http.get("/v1/beacons/impression", params={"ad_id": "a"})
        posted = await http.post("/v1/beacons/click", json={"ad_id": "a"})
    for response in (pixel, posted):
        assert response.status_code == 503
        assert response.headers["retry-after"] == "7"
        assert response.json()["error"]["code"] == "unavailable"
