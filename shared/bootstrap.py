"""Create every bucket, queue, stream and table the mesh needs. Idempotent: safe to run on every start."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from shared.aws import AwsClients
from shared.bootstrap_bi import ensure_bi
from shared.bootstrap_firehose import ensure_firehose
from shared.deadletter import ensure_queue_with_dead_letter
from shared.logging import get_logger
from shared.settings import BUCKETS, QUEUES, STREAMS, TRAFFIC_TABLE, HeadwaterSettings

log = get_logger(__name__)

STREAM_SHARDS = {"events": 2, "replay": 1}
NOTIFICATION_SENDER = "headwater@example.com"


async def ensure_buckets(s3: Any, settings: HeadwaterSettings) -> None:
    """Create the buckets that do not exist yet."""
    for name in BUCKETS:
        bucket = settings.bucket(name)
        try:
            await s3.head_bucket(Bucket=bucket)
        except ClientError:
            kwargs: dict[str, Any] = {"Bucket": bucket}
            if settings.aws_region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.aws_region}
            await s3.create_bucket(**kwargs)
            log.info("bucket_created", bucket=bucket)


async def ensure_queues(sqs: Any, settings: HeadwaterSettings) -> dict[str, str]:
    """Create each queue with a dead-letter queue; return {logical name: queue url}."""
    return {name: await ensure_queue_with_dead_letter(sqs, settings.queue(name)) for name in QUEUES}


async def ensure_streams(kinesis: Any, settings: HeadwaterSettings) -> None:
    """Create the Kinesis streams and wait until they are ACTIVE."""
    for name in STREAMS:
        stream = settings.stream(name)
        try:
            await kinesis.create_stream(StreamName=stream, ShardCount=STREAM_SHARDS.get(name, 1))
            log.info("stream_created", stream=stream)
        except kinesis.exceptions.ResourceInUseException:
            pass
        for _ in range(100):
            summary = await kinesis.describe_stream_summary(StreamName=stream)
            if summary["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
                break
            await asyncio.sleep(0.2)


async def ensure_traffic_table(dynamodb: Any, settings: HeadwaterSettings) -> None:
    """Create the per-ad daily traffic table (ad_id, dt)."""
    table = settings.table(TRAFFIC_TABLE)
    try:
        await dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "ad_id", "KeyType": "HASH"}, {"AttributeName": "dt", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "ad_id", "AttributeType": "S"},
                {"AttributeName": "dt", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        log.info("table_created", table=table)
    except dynamodb.exceptions.ResourceInUseException:
        pass


def marker_queue_policy(queue_arn: str, bucket: str) -> dict[str, Any]:
    """Return the s3-events queue policy: only S3, for the raw bucket of this account, may send to it."""
    account = queue_arn.split(":")[4]
    return {
        "Version": "2012-10-17",
        "Id": f"{queue_arn}/s3-markers",
        "Statement": [
            {
                "Sid": "S3PublishesRawMarkers",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                # SourceAccount too: a bucket name alone could be re-created by another account after deletion.
                "Condition": {
                    "ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"},
                    "StringEquals": {"aws:SourceAccount": account},
                },
            }
        ],
    }


async def ensure_marker_notifications(s3: Any, sqs: Any, settings: HeadwaterSettings, queue_url: str) -> None:
    """Let S3 publish to the s3-events queue, then send it ObjectCreated events for raw ``_COMPLETE`` markers."""
    arn = (await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"]))["Attributes"]["QueueArn"]
    # Real S3 checks it may publish when the notification is configured, so the policy comes first.
    policy = marker_queue_policy(arn, settings.bucket("raw"))
    await sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    await s3.put_bucket_notification_configuration(
        Bucket=settings.bucket("raw"),
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": "complete-markers",
                    "QueueArn": arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "suffix", "Value": "_COMPLETE"}]}},
                }
            ]
        },
    )


async def ensure_sender_verified(ses: Any) -> None:
    """Verify the notification sender (the emulator refuses mail from unverified senders)."""
    await ses.verify_email_identity(EmailAddress=NOTIFICATION_SENDER)


# The steps of ``bootstrap``, in order, for callers that show progress.
BOOTSTRAP_STEPS = (
    "buckets",
    "queues",
    "bucket notifications",
    "streams",
    "traffic table",
    "firehose",
    "mail sender",
    "bi",
)


async def bootstrap(
    settings: HeadwaterSettings, *, with_ses: bool = True, on_step: Callable[[str], None] | None = None
) -> None:
    """Create every AWS resource the mesh uses (idempotent); call ``on_step(name)`` after each step."""
    done = on_step or (lambda _step: None)
    async with AwsClients(settings) as aws:
        s3, sqs = await aws.get("s3"), await aws.get("sqs")
        await ensure_buckets(s3, settings)
        done("buckets")
        urls = await ensure_queues(sqs, settings)
        done("queues")
        await ensure_marker_notifications(s3, sqs, settings, urls["s3-events"])
        done("bucket notifications")
        await ensure_streams(await aws.get("kinesis"), settings)
        done("streams")
        await ensure_traffic_table(await aws.get("dynamodb"), settings)
        done("traffic table")
        await ensure_firehose(await aws.get("firehose"), settings)
        done("firehose")
        if with_ses and settings.aws_endpoint_url:
            await ensure_sender_verified(await aws.get("ses"))
        done("mail sender")
        await ensure_bi(aws, settings)  # Glue database, Athena workgroup, CloudWatch dashboards
        done("bi")
    log.info("bootstrap_complete", prefix=settings.resource_prefix)
