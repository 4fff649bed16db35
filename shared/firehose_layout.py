"""Where the raw-archive Firehose delivery stream writes, and what it is created with.

Read by bootstrap (``shared.bootstrap_firehose``) and by ingest's settler, which moves what lands under
``_firehose/`` into contract 1's layout (see ``shared.bootstrap_firehose`` for the layout on AWS and on the
emulator).
"""

from __future__ import annotations

from typing import Any

from shared.settings import HeadwaterSettings

FIREHOSE_LANDING_PREFIX = "_firehose/"
FIREHOSE_ERROR_PREFIX = "_firehose-errors/"
# Firehose's documented buffering bounds are 1-128 MiB and 0-900 s; 64 MiB would be the minimum with dynamic
# partitioning, which this layout does not need (settling partitions by event time).
BUFFER_SIZE_MIB = 64
BUFFER_INTERVAL_S = 60
# Stands in for the delivery role on the emulator (which never assumes it).
EMULATOR_ROLE_ARN = "arn:aws:iam::123456789012:role/headwater-firehose"


def delivery_stream_name(settings: HeadwaterSettings) -> str:
    """Return the deployment's delivery stream name for the raw archive."""
    return settings.stream("raw-archive")


def delivery_stream_request(settings: HeadwaterSettings, role_arn: str) -> dict[str, Any]:
    """Return the CreateDeliveryStream parameters: direct put, gzip to the raw bucket's landing area."""
    return {
        "DeliveryStreamName": delivery_stream_name(settings),
        "DeliveryStreamType": "DirectPut",
        "ExtendedS3DestinationConfiguration": {
            "RoleARN": role_arn,
            "BucketARN": f"arn:aws:s3:::{settings.bucket('raw')}",
            # Hive-style by arrival hour; a prefix with expressions needs an error prefix with one too.
            "Prefix": f"{FIREHOSE_LANDING_PREFIX}dt=!{{timestamp:yyyy-MM-dd}}/hour=!{{timestamp:HH}}/",
            "ErrorOutputPrefix": FIREHOSE_ERROR_PREFIX + "!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/",
            "BufferingHints": {"SizeInMBs": BUFFER_SIZE_MIB, "IntervalInSeconds": BUFFER_INTERVAL_S},
            "CompressionFormat": "GZIP",
        },
    }
