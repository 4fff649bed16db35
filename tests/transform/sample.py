"""Sample raw events for transform tests (contract 1 records) and helpers to put them in the raw bucket."""

from __future__ import annotations

import gzip
from typing import Any

import orjson

DT = "2026-11-24"


def beacon(index: int, kind: str = "impression", ad: str = "ad-1", **overrides: Any) -> dict[str, Any]:
    """Return one archived beacon event."""
    record: dict[str, Any] = {
        "event_id": f"ev-{index:04d}",
        "type": kind,
        "source": "beacon",
        "event_time": f"{DT}T10:{index % 60:02d}:00Z",
        "received_at": f"{DT}T10:{index % 60:02d}:01.250Z",
        "client_ip_hash": "abc",
        "ad_id": ad,
        "campaign_id": "camp-1",
        "placement": "top",
        "user_id": f"user-{index % 3}",
        "properties": {"page": "/home", "tags": ["a", "b"], "nested": {"x": index}},
    }
    record.update(overrides)
    return record


def good_beacons() -> list[dict[str, Any]]:
    """Five impressions and two clicks on ad-1, three impressions and one click on ad-2."""
    events = [beacon(i, "impression", "ad-1") for i in range(5)]
    events += [beacon(10 + i, "click", "ad-1") for i in range(2)]
    events += [beacon(20 + i, "impression", "ad-2") for i in range(3)]
    events += [beacon(30, "click", "ad-2", user_id=None)]
    return events


BAD_LINES: list[tuple[bytes, str]] = [
    (orjson.dumps({k: v for k, v in beacon(40).items() if k != "event_id"}), "missing required field: event_id"),
    (orjson.dumps(beacon(41, event_time="yesterday")), "type mismatch: event_time expects timestamp"),
    (orjson.dumps(beacon(42, ad_id="x" * 200)), "overflow: ad_id is 200 bytes, varchar(128) holds 128"),
    (orjson.dumps(beacon(43, event_time="2026-11-25T01:00:00Z")), "partition mismatch: dt 2026-11-25"),
    (b'{"event_id": "ev-44", "type": "click"', "malformed JSON"),
    (orjson.dumps(beacon(45, ad_id={"id": 1})), "type mismatch: ad_id expects varchar(128), got object"),
]


def jsonl(records: list[dict[str, Any]], extra_lines: list[bytes] | None = None) -> bytes:
    """Return JSON lines (records first, then raw extra lines)."""
    lines = [orjson.dumps(r) for r in records] + (extra_lines or [])
    return b"\n".join(lines) + b"\n"


async def put_raw(s3: Any, bucket: str, key: str, body: bytes) -> None:
    """Put one gzip JSON-lines object into the raw bucket."""
    await s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(body))
