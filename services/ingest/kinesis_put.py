"""A lean Kinesis ``PutRecords`` call for the shipper: botocore signs it, orjson builds and reads the JSON.

botocore's generic serializer and response parser walk the operation's shape record by record: about 20 us of
CPU per record, ten times what accepting the event cost, on the same core that answers requests (measured in
``bench/ingest.py``). This client sends the same documented request (JSON 1.1, ``Kinesis_20131202.PutRecords``,
SigV4 signed by botocore with the session's credentials) and reads the same answer, at about 2 us per record.
The shipper keeps the botocore client for everything else.
"""

from __future__ import annotations

import binascii
from typing import Any

import httpx
import orjson
from aiobotocore.session import AioSession
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from shared.aws import client_kwargs
from shared.settings import HeadwaterSettings

_TARGET = "Kinesis_20131202.PutRecords"
_CONTENT_TYPE = "application/x-amz-json-1.1"


class PutRecordsError(Exception):
    """The whole PutRecords call failed (the service answered an error, or could not be reached)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def encode_put_records(stream: str, entries: list[tuple[bytes, str]]) -> bytes:
    """Return the JSON body of a PutRecords call for (data, partition key) entries."""
    records = [
        {"Data": binascii.b2a_base64(data, newline=False).decode("ascii"), "PartitionKey": key} for data, key in entries
    ]
    return orjson.dumps({"StreamName": stream, "Records": records})


def failed_indexes(response: dict[str, Any]) -> list[int]:
    """Return the indexes of the records a PutRecords answer reports as failed."""
    if not response.get("FailedRecordCount"):
        return []
    return [index for index, result in enumerate(response.get("Records", ())) if result.get("ErrorCode")]


class KinesisPutClient:
    """Signed PutRecords over a kept-alive HTTP connection pool."""

    def __init__(self, settings: HeadwaterSettings, session: AioSession, *, timeout_s: float = 20.0) -> None:
        kwargs = client_kwargs(settings, "kinesis")
        self._region = settings.aws_region
        self._url = kwargs.get("endpoint_url") or f"https://kinesis.{self._region}.amazonaws.com"
        self._static: ReadOnlyCredentials | None = None
        if "aws_access_key_id" in kwargs:
            self._static = ReadOnlyCredentials(kwargs["aws_access_key_id"], kwargs["aws_secret_access_key"], None)
        self._session = session
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=3.0))

    async def _credentials(self) -> ReadOnlyCredentials:
        if self._static is not None:
            return self._static
        credentials = await self._session.get_credentials()
        if credentials is None:
            raise PutRecordsError("NoCredentials", "no AWS credentials found for the Kinesis stream")
        # Refreshable credentials renew themselves here when they are about to expire.
        return await credentials.get_frozen_credentials()

    async def put_records(self, stream: str, entries: list[tuple[bytes, str]]) -> list[int]:
        """Put the entries on ``stream`` in one call; return the indexes of the records that failed."""
        body = encode_put_records(stream, entries)
        frozen = await self._credentials()
        request = AWSRequest(
            method="POST",
            url=self._url,
            data=body,
            headers={"Content-Type": _CONTENT_TYPE, "X-Amz-Target": _TARGET},
        )
        SigV4Auth(Credentials(frozen.access_key, frozen.secret_key, frozen.token), "kinesis", self._region).add_auth(
            request
        )
        try:
            response = await self._http.post(self._url, content=body, headers=dict(request.headers.items()))
        except httpx.HTTPError as exc:
            raise PutRecordsError(type(exc).__name__, str(exc) or "request failed") from exc
        if response.status_code != 200:
            raise PutRecordsError(*_error_of(response))
        return failed_indexes(orjson.loads(response.content))

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        payload = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return f"HTTP{response.status_code}", response.text[:200]
    code = str(payload.get("__type", f"HTTP{response.status_code}")).rsplit("#", 1)[-1]
    return code, str(payload.get("message") or payload.get("Message") or "")[:200]
