"""The analytics SDKs, unchanged, against ingest: snowplow-tracker (POST and GET emitters) and
segment-analytics-python. Their events reach the raw archive and the stream exactly once and the day's curated
table through the transform engine; what cannot be mapped goes to bad rows."""

from __future__ import annotations

import asyncio
import gzip
import io
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow.parquet as pq
import pytest
from segment.analytics import Client as SegmentClient
from snowplow_tracker import Emitter, PageView, SelfDescribing, SelfDescribingJson, StructuredEvent, Subject, Tracker

from services.transform.builtin_schemas import ANALYTICS_SCHEMAS
from services.transform.engine.local import transform_sources
from shared.aws import AwsClients
from shared.schemas import parse_schema_yaml
from tests.helpers import wait_until
from tests.ingest.conftest import Ingest, archived_objects, archived_records, stream_records


async def _wait_archived(aws: AwsClients, ingest: Ingest, count: int, prefixes: tuple[str, ...]) -> list[dict]:
    found: list[dict] = []

    async def _enough() -> bool:
        found[:] = [r for p in prefixes for r in await archived_records(aws, ingest.settings, p)]
        return len(found) >= count

    await wait_until(_enough, timeout=30, message=f"{count} records under {prefixes} were not archived")
    return found


async def _curated_rows(aws: AwsClients, ingest: Ingest, table: str, day: date, tmp_path: Path) -> list[dict]:
    """Transform one day of the raw archive into the table's curated rows with the transform engine."""
    objects = await archived_objects(aws, ingest.settings, f"{table}/dt={day.isoformat()}/")
    bodies = [gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in records)) for records in objects.values()]
    result = transform_sources(
        parse_schema_yaml(ANALYTICS_SCHEMAS[table]),
        [(f"s3://raw/{n}", lambda body=body: io.BytesIO(body)) for n, body in enumerate(bodies)],
        dt=day,
        workdir=tmp_path / table,
    )
    assert result.rows_bad == 0
    return [row for part in result.parts for row in pq.read_table(part.path).to_pylist()]


def _snowplow_tracker(ingest: Ingest, method: str, outcome: Counter[str]) -> Tracker:
    emitter = Emitter(
        ingest.url,
        method=method,  # type: ignore[arg-type]
        batch_size=10,
        on_success=lambda events: outcome.update(ok=len(events)),
        on_failure=lambda count, events: outcome.update(failed=len(events)),
    )
    subject = Subject().set_user_id("u-1").set_domain_user_id("d-1")
    return Tracker(namespace=f"test-{method}", emitters=emitter, subject=subject, app_id="shop")


async def test_snowplow_post_and_get_emitters_land_once_in_archive_stream_and_curated_tables(
    ingest: Ingest, aws: AwsClients, tmp_path: Path
) -> None:
    outcome: Counter[str] = Counter()
    post = _snowplow_tracker(ingest, "post", outcome)
    get = _snowplow_tracker(ingest, "get", outcome)
    basket = SelfDescribingJson("iglu:com.acme/add_to_basket/jsonschema/1-0-0", {"sku": "s-1", "quantity": 2})

    def _send() -> list[str]:
        ids = [
            post.track(PageView(page_url="https://shop.example/", page_title="Home", referrer="https://a.example/")),
            post.track(StructuredEvent(category="shop", action="add-to-basket", label="s-1", value=2)),
            post.track(SelfDescribing(basket)),
            get.track(StructuredEvent(category="shop", action="checkout")),
            get.track(SelfDescribing(basket)),  # base64 ue_px by default
        ]
        post.flush()
        get.flush()
        return [event_id for event_id in ids if event_id]

    event_ids = await asyncio.to_thread(_send)
    assert outcome == {"ok": 5}
    records = await _wait_archived(aws, ingest, 5, ("page/", "track/"))
    assert sorted(r["event_id"] for r in records) == sorted(event_ids)
    by_name = {r["event_name"]: r for r in records}
    assert set(by_name) == {"Home", "add-to-basket", "checkout", "com.acme/add_to_basket"}
    page = by_name["Home"]
    assert (page["type"], page["user_id"], page["anonymous_id"], page["protocol"]) == ("page", "u-1", "d-1", "snowplow")
    assert page["properties"] == {"url": "https://shop.example/", "title": "Home", "referrer": "https://a.example/"}
    assert page["raw"]["e"] == "pv" and page["raw"]["eid"] == page["event_id"]  # the payload as sent
    assert by_name["add-to-basket"]["properties"] == {
        "category": "shop",
        "action": "add-to-basket",
        "label": "s-1",
        "value": 2.0,
    }
    baskets = [r for r in records if r["event_name"] == "com.acme/add_to_basket"]
    assert [r["properties"] for r in baskets] == [{"sku": "s-1", "quantity": 2}] * 2

    # On the stream once each, keyed by the domain user id (one user's events stay in order).
    async def _streamed() -> bool:
        return len(await stream_records(aws, ingest.settings)) >= 5

    await wait_until(_streamed, timeout=30, message="records did not reach the stream")
    streamed = await stream_records(aws, ingest.settings)
    assert sorted(orjson.loads(r["data"])["event_id"] for r in streamed) == sorted(event_ids)
    assert {r["partition_key"] for r in streamed} == {"d-1"}

    day = date.fromisoformat(page["event_time"][:10])
    pages = await _curated_rows(aws, ingest, "page", day, tmp_path)
    assert [(r["event_id"], r["event_name"], r["url"], r["protocol"]) for r in pages] == [
        (page["event_id"], "Home", "https://shop.example/", "snowplow")
    ]
    tracks = await _curated_rows(aws, ingest, "track", day, tmp_path)
    assert sorted(r["event_id"] for r in tracks) == sorted(r["event_id"] for r in records if r["type"] == "track")


async def test_a_resent_snowplow_batch_is_stored_once_and_unmappable_events_become_bad_rows(
    ingest: Ingest, aws: AwsClients
) -> None:
    body = {
        "schema": "iglu:com.snowplowanalytics.snowplow/payload_data/jsonschema/1-0-4",
        "data": [
            {"e": "se", "eid": "sp-1", "dtm": "1764072000000", "stm": "1764072000000", "se_ac": "a", "duid": "d"},
            {"e": "zz", "eid": "sp-2"},
            {"e": "ue", "eid": "sp-3", "ue_px": "not base64!"},
        ],
    }
    for _ in range(2):
        answer = await ingest.http.post("/com.snowplowanalytics.snowplow/tp2", json=body)
        assert answer.status_code == 200, answer.text
    records = await _wait_archived(aws, ingest, 1, ("track/",))
    assert [r["event_id"] for r in records] == ["sp-1"]
    s3 = await aws.get("s3")

    async def _bad() -> list[dict]:
        rows = []
        listing = await s3.list_objects_v2(Bucket=ingest.settings.bucket("bad-rows"), Prefix="ingest/")
        for item in listing.get("Contents", []):
            data = await (await s3.get_object(Bucket=ingest.settings.bucket("bad-rows"), Key=item["Key"]))[
                "Body"
            ].read()
            rows += [orjson.loads(line) for line in gzip.decompress(data).splitlines()]
        return rows

    async def _four() -> bool:
        return len(await _bad()) >= 4

    await wait_until(_four, timeout=30, message="unmapped events did not reach bad rows")
    reasons = sorted(row["reason"] for row in await _bad())
    assert reasons[0].startswith("unmapped snowplow: ue_px") and reasons[-1].startswith("unmapped snowplow: unknown")
    assert sorted(row["original"]["raw"]["eid"] for row in await _bad()) == ["sp-2", "sp-2", "sp-3", "sp-3"]


async def test_segment_sdk_sends_every_message_type_once_with_basic_write_key_and_gzip(
    ingest: Ingest, aws: AwsClients, tmp_path: Path
) -> None:
    def _send() -> None:
        sync = SegmentClient(ingest.write_key, host=ingest.url, sync_mode=True)
        sync.track("u-1", "Order Completed", {"revenue": 12.5}, anonymous_id="a-1", message_id="seg-1")
        sync.identify("u-1", {"plan": "pro"}, message_id="seg-2")
        batched = SegmentClient(ingest.write_key, host=ingest.url, gzip=True, upload_size=50, max_retries=1)
        batched.page("u-1", name="Home", properties={"url": "https://shop.example/"}, message_id="seg-3")
        batched.screen("u-1", name="Settings", message_id="seg-4")
        batched.group("u-1", "g-1", {"name": "Acme"}, message_id="seg-5")
        batched.alias("a-1", "u-1", message_id="seg-6")
        batched.track("u-1", "Order Completed", message_id="seg-1")  # a re-sent message: stored once
        batched.flush()
        batched.join()

    await asyncio.to_thread(_send)
    records = await _wait_archived(aws, ingest, 6, ("track/", "identify/", "page/", "screen/", "group/", "alias/"))
    assert sorted((r["event_id"], r["type"]) for r in records) == [
        ("seg-1", "track"),
        ("seg-2", "identify"),
        ("seg-3", "page"),
        ("seg-4", "screen"),
        ("seg-5", "group"),
        ("seg-6", "alias"),
    ]
    by_id = {r["event_id"]: r for r in records}
    track = by_id["seg-1"]
    assert (track["event_name"], track["user_id"], track["anonymous_id"], track["properties"]) == (
        "Order Completed",
        "u-1",
        "a-1",
        {"revenue": 12.5},
    )
    assert track["raw"]["context"]["library"]["name"] == "analytics-python"
    assert by_id["seg-5"]["properties"] == {"name": "Acme", "group_id": "g-1"}
    assert by_id["seg-6"]["properties"] == {"previous_id": "a-1"}

    async def _streamed() -> bool:
        return len(await stream_records(aws, ingest.settings)) >= 6

    await wait_until(_streamed, timeout=30, message="records did not reach the stream")
    streamed = [orjson.loads(r["data"])["event_id"] for r in await stream_records(aws, ingest.settings)]
    assert sorted(streamed) == ["seg-1", "seg-2", "seg-3", "seg-4", "seg-5", "seg-6"]

    day = date.fromisoformat(track["event_time"][:10])
    pages = await _curated_rows(aws, ingest, "page", day, tmp_path)
    assert [(r["event_id"], r["event_name"], r["url"], r["protocol"]) for r in pages] == [
        ("seg-3", "Home", "https://shop.example/", "segment")
    ]


async def test_segment_refuses_a_missing_or_wrong_key_before_reading_the_body(ingest: Ingest) -> None:
    body = {"batch": [{"type": "track", "event": "x", "userId": "u", "messageId": "m"}]}
    missing = await ingest.http.post("/v1/batch", json=body)
    assert missing.status_code == 401
    read_only = await ingest.http.post("/v1/batch", json=body, auth=(ingest.read_key, ""))
    assert read_only.status_code == 403
    ok = await ingest.http.post("/v1/track", json=body["batch"][0], auth=(ingest.write_key, ""))
    assert (ok.status_code, ok.json()) == (200, {"success": True})
    huge = await ingest.http.post("/v1/batch", content=b"{" + b" " * 600_000 + b"}", auth=(ingest.write_key, ""))
    assert huge.status_code == 413


@pytest.fixture
def cors_origin() -> str:
    return "http://127.0.0.1:1"


async def test_cors_preflight_allows_configured_origins_with_credentials(
    ingest_settings_factory: Any, cors_origin: str
) -> None:
    from services.ingest.app import create_app
    from tests.ingest.conftest import bootstrap_ingest, serve

    settings = ingest_settings_factory(cors_origins=[cors_origin])
    await bootstrap_ingest(settings)
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        path = "/com.snowplowanalytics.snowplow/tp2"
        headers = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
        allowed = await http.options(path, headers={"Origin": cors_origin, **headers})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == cors_origin
        assert allowed.headers["access-control-allow-credentials"] == "true"
        other = await http.options(path, headers={"Origin": "http://evil.example", **headers})
        assert "access-control-allow-origin" not in other.headers
