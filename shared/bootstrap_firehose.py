"""The Kinesis Data Firehose delivery stream of the ``archive: firehose`` path, and where it lands in S3.

Firehose writes to a landing area of the raw bucket, ``_firehose/``, with Hive-style prefixes of its own arrival
hour (``_firehose/dt=YYYY-MM-DD/hour=HH/``, gzip). Ingest then settles each landed object into the raw layout of
``shared.contracts`` (contract 1: ``<source>/dt=/hour=/<name>-n<count>.json.gz``, by event time) under a key
derived from the landed object's key, so settling twice overwrites instead of duplicating, and every reader of the
raw archive (transform, the loader's scanner, replay) and the day markers see Firehose-archived sources as they see
the others.

The emulator (moto 5.2) delivers for real but ignores what is configured beyond the bucket and the prefix: it
appends its own ``YYYY/MM/DD/HH/`` to the prefix *as written* (``!{timestamp:...}`` expressions are not
evaluated), does not compress, and does not buffer (one object per PutRecordBatch). The settler reads every
object under ``_firehose/`` whatever the layout below it, gzip or not, so both shapes settle alike.
"""

from __future__ import annotations

import asyncio
from typing import Any

from shared.firehose_layout import EMULATOR_ROLE_ARN, delivery_stream_name, delivery_stream_request
from shared.logging import get_logger
from shared.settings import HeadwaterSettings

log = get_logger(__name__)


async def ensure_firehose(firehose: Any, settings: HeadwaterSettings) -> bool:
    """Create the raw-archive delivery stream and wait until it is ACTIVE; return whether it exists.

    On AWS it needs ``firehose_role_arn`` (a role Firehose assumes to write the raw bucket) and is skipped
    without it; on the emulator a stand-in role is used.
    """
    role_arn = settings.firehose_role_arn or (EMULATOR_ROLE_ARN if settings.aws_endpoint_url else "")
    if not role_arn:
        log.info("firehose_skipped", reason="firehose_role_arn is not set")
        return False
    name = delivery_stream_name(settings)
    try:
        await firehose.create_delivery_stream(**delivery_stream_request(settings, role_arn))
        log.info("delivery_stream_created", delivery_stream=name)
    except firehose.exceptions.ResourceInUseException:
        pass
    for _ in range(600):  # AWS takes a minute or so to activate a new delivery stream
        described = await firehose.describe_delivery_stream(DeliveryStreamName=name)
        if described["DeliveryStreamDescription"]["DeliveryStreamStatus"] == "ACTIVE":
            return True
        await asyncio.sleep(0.5)
    raise TimeoutError(f"delivery stream {name} did not become ACTIVE")
