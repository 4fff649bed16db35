"""The shipper's PutRecords paths against the moto server: the lean signed client and botocore's, same results."""

from __future__ import annotations

import base64

import orjson
import pytest
from aiobotocore.session import get_session

from services.ingest.settings import IngestSettings
from services.ingest.sinks import SinkClients, SinkError, put_stream_records
from shared.aws import AwsClients
from shared.kinesis_put import KinesisPutClient, PutRecordsError, encode_put_records, failed_records
from tests.ingest.conftest import stream_records

ENTRIES = [(f'{{"event_id":"e-{i}","n":{i}}}'.encode(), f"e-{i}") for i in range(1203)]


@pytest.mark.parametrize("lean", [True, False])
async def test_every_record_lands_on_the_stream_in_order(
    ingest_settings: IngestSettings, aws: AwsClients, lean: bool
) -> None:
    settings = ingest_settings.model_copy(update={"kinesis_lean_put": lean})
    sinks = SinkClients(settings)
    try:
        stream = settings.stream("events")
        calls = await put_stream_records(
            await sinks.put_records(stream), stream=stream, entries=ENTRIES, max_attempts=3
        )
    finally:
        await sinks.close()
    assert calls == 3  # 500 + 500 + 203
    landed = await stream_records(aws, settings)
    assert sorted((r["data"], r["partition_key"]) for r in landed) == sorted(ENTRIES)


async def test_an_unknown_stream_is_a_clear_error(ingest_settings: IngestSettings) -> None:
    client = KinesisPutClient(ingest_settings, get_session())
    try:
        with pytest.raises(PutRecordsError) as caught:
            await client.put_records("no-such-stream", ENTRIES[:2])
    finally:
        await client.close()
    assert caught.value.code == "ResourceNotFoundException"


async def test_requests_are_sigv4_signed_for_kinesis(ingest_settings: IngestSettings) -> None:
    # moto does not verify signatures, so the signed headers are checked on their way out.
    client = KinesisPutClient(ingest_settings, get_session())
    try:
        captured: list[dict[str, str]] = []
        original = client._http.post

        async def spy(url: str, **kwargs):  # type: ignore[no-untyped-def]
            captured.append(kwargs["headers"])
            return await original(url, **kwargs)

        client._http.post = spy  # type: ignore[method-assign]
        await client.put_records(ingest_settings.stream("events"), ENTRIES[:1])
    finally:
        await client.close()
    [headers] = captured
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
    assert "/kinesis/aws4_request" in headers["Authorization"]
    assert headers["X-Amz-Target"] == "Kinesis_20131202.PutRecords"


def test_the_body_is_the_documented_json() -> None:
    body = orjson.loads(encode_put_records("s", [(b"\x00\xffdata", "k")]))
    assert body == {
        "StreamName": "s",
        "Records": [{"Data": base64.b64encode(b"\x00\xffdata").decode(), "PartitionKey": "k"}],
    }
    answer = {"FailedRecordCount": 1, "Records": [{"SequenceNumber": "1"}, {"ErrorCode": "Throttled"}]}
    assert failed_records(answer) == {1: "Throttled"}
    assert failed_records({"FailedRecordCount": 0, "Records": [{"SequenceNumber": "1"}]}) == {}


async def test_only_failed_records_are_retried_and_a_dead_endpoint_raises() -> None:
    # moto never fails single records, so this one drives put_stream_records with a scripted PutRecords.
    seen: list[list[str]] = []

    async def flaky(entries: list[tuple[bytes, str]]) -> dict[int, str]:
        seen.append([key for _, key in entries])
        return {1: "ProvisionedThroughputExceededException"} if len(seen) == 1 else {}

    entries = [(b"a", "a"), (b"b", "b"), (b"c", "c")]
    assert await put_stream_records(flaky, stream="s", entries=entries, max_attempts=3, backoff_s=0) == 2
    assert seen == [["a", "b", "c"], ["b"]]

    async def down(entries: list[tuple[bytes, str]]) -> dict[int, str]:
        raise PutRecordsError("ConnectError", "refused")

    with pytest.raises(SinkError, match="failed 2 times"):
        await put_stream_records(down, stream="s", entries=entries, max_attempts=2, backoff_s=0)
