"""Transform's composition root: what it opens for the API and the worker, and what closing it stops."""

from __future__ import annotations

from typing import Any

from services.transform.consumer import start_request_consumer
from services.transform.settings import TransformSettings
from services.transform.wiring import open_transform
from services.transform.worker import build_worker_settings
from shared.contracts import schema_key


async def test_the_api_wiring_has_a_job_queue_and_the_builtin_schemas(settings: TransformSettings, s3: Any) -> None:
    wiring = await open_transform(settings)
    try:
        assert wiring.arq is not None and await wiring.arq.ping()
        listing = await s3.list_objects_v2(Bucket=settings.bucket("curated"), Prefix=schema_key("ad_events", 1))
        assert [item["Key"] for item in listing.get("Contents", [])] == [schema_key("ad_events", 1)]
    finally:
        await wiring.close()


async def test_closing_the_worker_wiring_stops_its_request_consumer(settings: TransformSettings) -> None:
    wiring = await open_transform(settings, job_queue=False)  # the worker's own connection is its queue
    consumer = start_request_consumer(wiring)

    await wiring.close()

    assert wiring.arq is None
    assert consumer.done()


def test_worker_settings_come_from_the_settings_handed_in(settings: TransformSettings) -> None:
    worker_settings: Any = build_worker_settings(settings)

    assert worker_settings.queue_name == settings.arq_queue
    assert worker_settings.ctx == {"settings": settings}
    assert sorted(f.name for f in worker_settings.functions) == ["run_chain_task", "run_transform"]
