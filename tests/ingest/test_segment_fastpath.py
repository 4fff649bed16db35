"""Segment ``POST /v1/batch`` answers the same through the raw-ASGI fast path as through the documented route.

The same requests (good batches, gzip, every kind of bad credentials, oversized and malformed bodies, 429 after
too many failed key checks) go to an ingest app with the fast path on and to one with it off; status, body and
headers (but ``date``/``server``) must be equal, and the accepted messages must be archived alike.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

from services.ingest.app import create_app
from services.ingest.segment import MAX_BATCH_BYTES
from services.ingest.settings import IngestSettings
from shared.aws import AwsClients
from tests.helpers import wait_until
from tests.ingest.conftest import archived_records, bootstrap_ingest, make_keys, serve


def _basic(user: str, password: str = "") -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def _batch(run: str, n: int = 3) -> dict[str, Any]:
    messages = [
        {
            "type": "track",
            "event": "Ad Viewed",
            "userId": f"u-{i}",
            "properties": {"ad_id": f"ad-{i}"},
            "timestamp": "2026-11-25T12:00:00.123456+00:00",
            "messageId": f"{run}-m{i}",
        }
        for i in range(n)
    ]
    return {"batch": messages, "sentAt": "2026-11-25T12:00:01+00:00"}


def _requests(run: str, write: str, read: str) -> list[tuple[str, dict[str, Any]]]:
    """Return (name, httpx request kwargs) pairs, in the order they are sent."""
    good = json.dumps(_batch(run)).encode()
    mixed = _batch(f"{run}-mixed")
    mixed["batch"] += [{"type": "nope"}, "not an object", {"type": "track", "messageId": f"{run}-noname"}]

    async def _chunks(total: int) -> AsyncIterator[bytes]:
        for _ in range(total // 65536 + 1):
            yield b" " * 65536

    oversized = b'{"batch": [' + b" " * (MAX_BATCH_BYTES + 1) + b"]}"
    return [
        ("good", {"content": good, "headers": _basic(write)}),
        ("duplicate", {"content": good, "headers": _basic(write)}),
        (
            "gzip",
            {
                "content": gzip.compress(json.dumps(_batch(f"{run}-gz")).encode()),
                "headers": {**_basic(write), "Content-Encoding": "gzip"},
            },
        ),
        ("general path", {"content": json.dumps(mixed).encode(), "headers": _basic(write)}),
        ("password ignored", {"content": json.dumps(_batch(f"{run}-pw")).encode(), "headers": _basic(write, "x")}),
        ("no auth", {"content": good}),
        ("no auth, huge body declared", {"content": oversized}),
        ("bearer", {"content": good, "headers": {"Authorization": f"Bearer {write}"}}),
        ("basic, bad base64", {"content": good, "headers": {"Authorization": "Basic %%%"}}),
        (
            "basic, no colon",
            {"content": good, "headers": {"Authorization": "Basic " + base64.b64encode(b"k").decode()}},
        ),
        ("basic, empty user", {"content": good, "headers": _basic("")}),
        ("unknown key", {"content": good, "headers": _basic("hw_000000000000_nope")}),
        ("read-only key", {"content": good, "headers": _basic(read)}),
        ("413 declared", {"content": oversized, "headers": _basic(write)}),
        ("413 streamed", {"content": _chunks(MAX_BATCH_BYTES + 1), "headers": _basic(write)}),
        (
            "gzip bomb",
            {
                "content": gzip.compress(b" " * (MAX_BATCH_BYTES + 10)),
                "headers": {**_basic(write), "Content-Encoding": "gzip"},
            },
        ),
        ("bad gzip", {"content": b"not gzip", "headers": {**_basic(write), "Content-Encoding": "gzip"}}),
        ("brotli", {"content": good, "headers": {**_basic(write), "Content-Encoding": "br"}}),
        ("not json", {"content": b"{nope", "headers": _basic(write)}),
        ("no batch", {"content": b'{"messages": []}', "headers": _basic(write)}),
        ("a list", {"content": b"[]", "headers": _basic(write)}),
        *[(f"failed key {i}", {"content": good, "headers": _basic(f"hw_{i:012d}_x")}) for i in range(11)],
    ]


async def _answers(settings: IngestSettings, run: str) -> tuple[list[tuple[Any, ...]], str]:
    write, read = await make_keys(settings)
    app = create_app(settings)
    answers = []
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        for name, kwargs in _requests(run, write, read):
            response = await http.post("/v1/batch", **kwargs)
            headers = sorted((k, v) for k, v in response.headers.items() if k not in ("date", "server"))
            # After too many failed checks, Retry-After counts down the window: the seconds left, not the value.
            headers = [(k, "<seconds>" if k == "retry-after" and v.isdigit() else v) for k, v in headers]
            body = response.json() if response.headers.get("content-type") == "application/json" else response.text
            answers.append((name, response.status_code, body, headers))
        metrics = (await http.get("/metrics")).text
    return answers, metrics


async def test_the_fast_path_answers_exactly_like_the_route(
    ingest_settings_factory: Callable[..., IngestSettings], aws: AwsClients, tmp_path: Path
) -> None:
    routed_settings = ingest_settings_factory(
        beacon_fast_path=False,
        resource_prefix="hwrouted",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'routed.db'}",
        data_dir=tmp_path / "routed",
    )
    fast_settings = ingest_settings_factory(beacon_fast_path=True)
    for settings in (routed_settings, fast_settings):
        await bootstrap_ingest(settings)
    routed, routed_metrics = await _answers(routed_settings, "routed")
    fast, fast_metrics = await _answers(fast_settings, "fast")

    assert [a[:2] for a in fast] == [a[:2] for a in routed]
    for fast_answer, routed_answer in zip(fast, routed, strict=True):
        assert fast_answer == routed_answer
    statuses = {name: status for name, status, *_ in fast}
    assert statuses["good"] == statuses["gzip"] == statuses["general path"] == statuses["duplicate"] == 200
    assert statuses["no auth, huge body declared"] == 401  # the key is checked before the body
    assert statuses["413 declared"] == statuses["413 streamed"] == statuses["gzip bomb"] == 413
    assert statuses["read-only key"] == 403 and statuses["failed key 10"] == 429
    assert ("retry-after", "<seconds>") in next(a[3] for a in fast if a[0] == "failed key 10")
    assert dict((a[0], a[2]) for a in fast)["good"] == {"success": True}
    for metrics in (fast_metrics, routed_metrics):
        assert 'method="POST",route="/v1/batch",service="ingest",status="200"' in metrics

    # What was accepted is archived alike: 3 + 3 + 3 + 3 track events per app, each once.
    def _ids(records: list[dict[str, Any]], run: str) -> list[str]:
        return sorted(r["event_id"].removeprefix(run) for r in records if r["event_id"].startswith(run))

    async def _both_archived() -> bool:
        fast_ids = _ids(await archived_records(aws, fast_settings, "track/"), "fast")
        routed_ids = _ids(await archived_records(aws, routed_settings, "track/"), "routed")
        return len(fast_ids) == len(routed_ids) == 12 and fast_ids == routed_ids

    await wait_until(_both_archived, timeout=30, message="both apps archive the same 12 messages")
