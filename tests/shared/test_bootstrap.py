import json
from fnmatch import fnmatchcase
from urllib.parse import unquote_plus

from shared.aws import AwsClients
from shared.bootstrap import bootstrap, marker_queue_policy
from shared.settings import BUCKETS, QUEUES, HeadwaterSettings
from tests.helpers import wait_until


async def test_bootstrap_creates_everything_and_is_idempotent(bootstrapped: HeadwaterSettings) -> None:
    await bootstrap(bootstrapped)  # second run must not fail
    async with AwsClients(bootstrapped) as aws:
        s3 = await aws.get("s3")
        buckets = {b["Name"] for b in (await s3.list_buckets())["Buckets"]}
        assert {bootstrapped.bucket(b) for b in BUCKETS} <= buckets
        sqs = await aws.get("sqs")
        urls = (await sqs.list_queues())["QueueUrls"]
        names = {u.rsplit("/", 1)[-1] for u in urls}
        assert {bootstrapped.queue(q) for q in QUEUES} <= names
        assert {bootstrapped.queue(f"{q}-dlq") for q in QUEUES} <= names
        kinesis = await aws.get("kinesis")
        summary = await kinesis.describe_stream_summary(StreamName=bootstrapped.stream("events"))
        assert summary["StreamDescriptionSummary"]["OpenShardCount"] == 2
        dynamodb = await aws.get("dynamodb")
        table = await dynamodb.describe_table(TableName=bootstrapped.table("traffic"))
        assert [k["AttributeName"] for k in table["Table"]["KeySchema"]] == ["ad_id", "dt"]


async def test_complete_markers_in_raw_notify_the_s3_events_queue(bootstrapped: HeadwaterSettings) -> None:
    async with AwsClients(bootstrapped) as aws:
        s3, sqs = await aws.get("s3"), await aws.get("sqs")
        raw = bootstrapped.bucket("raw")
        await s3.put_object(Bucket=raw, Key="beacon/dt=2026-11-24/hour=10/a.json.gz", Body=b"x")
        await s3.put_object(Bucket=raw, Key="beacon/dt=2026-11-24/_COMPLETE", Body=b"{}")
        url = (await sqs.get_queue_url(QueueName=bootstrapped.queue("s3-events")))["QueueUrl"]
        received: list[dict] = []

        async def _poll() -> bool:
            response = await sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
            received.extend(response.get("Messages", []))
            return bool(received)

        await wait_until(_poll, timeout=15, message="no S3 event arrived")
        # S3 event notifications carry URL-encoded keys, as real S3 does.
        keys = [
            unquote_plus(r["s3"]["object"]["key"]) for m in received for r in json.loads(m["Body"]).get("Records", [])
        ]
        assert keys == ["beacon/dt=2026-11-24/_COMPLETE"]


def _allows(policy: dict, *, service: str, action: str, resource: str, source_arn: str, account: str) -> bool:
    """Evaluate the queue policy's Allow statements for one request (only the operators the policy uses)."""
    for statement in policy["Statement"]:
        condition = statement.get("Condition", {})
        if (
            statement["Effect"] == "Allow"
            and statement["Principal"] == {"Service": service}
            and statement["Action"] == action
            and statement["Resource"] == resource
            and fnmatchcase(source_arn, condition.get("ArnLike", {}).get("aws:SourceArn", "*"))
            and condition.get("StringEquals", {}).get("aws:SourceAccount", account) == account
        ):
            return True
    return False


async def test_s3_events_queue_policy_lets_only_the_raw_bucket_publish(bootstrapped: HeadwaterSettings) -> None:
    await bootstrap(bootstrapped)  # a rerun replaces the policy rather than adding to it
    async with AwsClients(bootstrapped) as aws:
        s3, sqs = await aws.get("s3"), await aws.get("sqs")
        url = (await sqs.get_queue_url(QueueName=bootstrapped.queue("s3-events")))["QueueUrl"]
        attributes = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy", "QueueArn"]))["Attributes"]
        notification = await s3.get_bucket_notification_configuration(Bucket=bootstrapped.bucket("raw"))
    arn, policy = attributes["QueueArn"], json.loads(attributes["Policy"])
    account = arn.split(":")[4]
    assert policy == marker_queue_policy(arn, bootstrapped.bucket("raw"))
    assert len(policy["Statement"]) == 1
    assert [c["QueueArn"] for c in notification["QueueConfigurations"]] == [arn]
    raw_arn = f"arn:aws:s3:::{bootstrapped.bucket('raw')}"
    request = {"service": "s3.amazonaws.com", "action": "sqs:SendMessage", "resource": arn}
    assert _allows(policy, **request, source_arn=raw_arn, account=account)
    assert not _allows(policy, **request, source_arn=f"arn:aws:s3:::{bootstrapped.bucket('curated')}", account=account)
    assert not _allows(policy, **request, source_arn=raw_arn, account="999999999999")
    assert not _allows(policy, **{**request, "service": "sns.amazonaws.com"}, source_arn=raw_arn, account=account)
