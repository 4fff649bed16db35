"""Kinesis ``PutRecords`` for every writer (ingest's shipper, replay's pump): one call shape, one retry rule.

A put is a :data:`PutRecords` callable: (data, partition key) entries in, the failed records out as
``{index: error code}``. Two implementations:

- :class:`KinesisPutClient`, a lean one: botocore's generic serializer and response parser walk the operation's
  shape record by record (about 20 us of CPU per record, ten times what accepting an event costs in ingest,
  measured in ``bench/ingest.py``). This client sends the same documented request (JSON 1.1,
  ``Kinesis_20131202.PutRecords``, SigV4 signed by botocore with the session's credentials) and reads the same
  answer with orjson, at about 2 us per record.
- :func:`botocore_put_records` over any botocore/aiobotocore Kinesis client.

:func:`put_with_retry` retries only the records that failed, and a whole failed call only when
``shared.retry.is_transient`` says the failure is worth retrying; callers keep their own batching, pacing and
accounting.
"""

from __future__ import annotations

import asyncio
import binascii
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from aiobotocore.session import AioSession
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.exceptions import ClientError

from shared.aws import client_kwargs
from shared.logging import get_logger
from shared.retry import is_transient
from shared.settings import HeadwaterSettings

log = get_logger(__name__)

THROTTLED = "ProvisionedThroughputExceededException"
_TARGET = "Kinesis_20131202.PutRecords"
_CONTENT_TYPE = "application/x-amz-json-1.1"

Entry = tuple[bytes, str]
"""One record to put: (data, partition key)."""
PutRecords = Callable[[list[Entry]], Awaitable[dict[int, str]]]
"""One PutRecords call: entries in, ``{index: error code}`` of the records that failed out."""


class PutRecordsError(Exception):
    """The whole PutRecords call failed (the service answered an error, or could not be reached)."""

    def __init__(self, code: str, message: str, *, transient: bool = True) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.transient = transient
        self.attempts = 1

    @classmethod
    def from_client_error(cls, exc: ClientError) -> PutRecordsError:
        """Wrap a botocore error, transient by the one rule of ``shared.retry``."""
        error = exc.response.get("Error", {})
        code, message = str(error.get("Code", "ClientError")), str(error.get("Message", ""))
        return cls(code, message, transient=is_transient(exc))


def encode_put_records(stream: str, entries: list[Entry]) -> bytes:
    """Return the JSON body of a PutRecords call for (data, partition key) entries."""
    records = [
        {"Data": binascii.b2a_base64(data, newline=False).decode("ascii"), "PartitionKey": key} for data, key in entries
    ]
    return orjson.dumps({"StreamName": stream, "Records": records})


def failed_records(response: dict[str, Any]) -> dict[int, str]:
    """Return ``{index: error code}`` of the records a PutRecords answer reports as failed."""
    if not response.get("FailedRecordCount"):
        return {}
    return {
        index: str(result["ErrorCode"])
        for index, result in enumerate(response.get("Records", ()))
        if result.get("ErrorCode")
    }


def botocore_put_records(kinesis: Any, stream: str) -> PutRecords:
    """Return a PutRecords call made through a botocore Kinesis client."""

    async def put(entries: list[Entry]) -> dict[int, str]:
        try:
            response = await kinesis.put_records(
                StreamName=stream, Records=[{"Data": data, "PartitionKey": key} for data, key in entries]
            )
        except ClientError as exc:
            raise PutRecordsError.from_client_error(exc) from exc
        return failed_records(response)

    return put


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
            raise PutRecordsError("NoCredentials", "no AWS credentials found for the Kinesis stream", transient=False)
        # Refreshable credentials renew themselves here when they are about to expire.
        return await credentials.get_frozen_credentials()

    async def put_records(self, stream: str, entries: list[Entry]) -> dict[int, str]:
        """Put the entries on ``stream`` in one call; return ``{index: error code}`` of the records that failed."""
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
            # Connection trouble and time-outs: transient, as in shared.retry.
            raise PutRecordsError(type(exc).__name__, str(exc) or "request failed") from exc
        if response.status_code != 200:
            raise PutRecordsError.from_client_error(_client_error(response))
        return failed_records(orjson.loads(response.content))

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()


def _client_error(response: httpx.Response) -> ClientError:
    # The same error botocore would raise, so the one transient rule judges both clients alike.
    try:
        payload = orjson.loads(response.content)
        code = str(payload.get("__type", f"HTTP{response.status_code}")).rsplit("#", 1)[-1]
        message = str(payload.get("message") or payload.get("Message") or "")[:200]
    except (orjson.JSONDecodeError, AttributeError):
        code, message = f"HTTP{response.status_code}", response.text[:200]
    error = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": response.status_code}}
    return ClientError(error, "PutRecords")  # type: ignore[arg-type]


@dataclass
class PutResult:
    """What :func:`put_with_retry` achieved for one batch of entries."""

    calls: int = 0
    emitted: int = 0
    throttled: int = 0
    given_up: list[tuple[Entry, str]] = field(default_factory=list)


def exponential_backoff(base_s: float, max_s: float = 30.0) -> Callable[[int], float]:
    """Return a pause before the next attempt: ``base_s`` after the first failed one, doubling up to ``max_s``."""
    return lambda attempt: min(max_s, base_s * 2 ** (attempt - 1))


async def put_with_retry(
    put: PutRecords,
    entries: list[Entry],
    *,
    stream: str,
    max_attempts: int,
    backoff: Callable[[int], float],
    on_attempt: Callable[[dict[int, str]], None] | None = None,
) -> PutResult:
    """Put ``entries`` in up to ``max_attempts`` calls, each retrying only the records the last one failed.

    A whole call that fails transiently counts every record as failed with its code and is retried; one that
    fails otherwise, or on the last attempt, raises its :class:`PutRecordsError` (``attempts`` says how many
    were made). ``on_attempt`` sees each attempt's failures (empty when all landed) before the pause of
    ``backoff(attempt)``. Records still failing after the last attempt are returned in ``given_up``.
    """
    result = PutResult()
    pending = entries
    for attempt in range(1, max_attempts + 1):
        result.calls = attempt
        try:
            failures = await put(pending)
        except PutRecordsError as exc:
            exc.attempts = attempt
            if not exc.transient or attempt == max_attempts:
                raise
            log.warning("kinesis_put_failed", stream=stream, error=str(exc)[:200], attempt=attempt)
            failures = dict.fromkeys(range(len(pending)), exc.code)
        else:
            result.emitted += len(pending) - len(failures)
            if failures:
                log.warning("kinesis_partial_failure", stream=stream, failed=len(failures), attempt=attempt)
        result.throttled += sum(1 for code in failures.values() if code == THROTTLED)
        if on_attempt is not None:
            on_attempt(failures)
        if not failures:
            return result
        if attempt == max_attempts:
            result.given_up = [(pending[index], code) for index, code in failures.items()]
            return result
        pending = [pending[index] for index in failures]
        await asyncio.sleep(backoff(attempt))
    return result
