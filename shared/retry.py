"""One rule for which failures are worth retrying: AWS throttling and 5xx, connection trouble, time-outs."""

from __future__ import annotations

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "Throttling",
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "500",
        "502",
        "503",
        "504",
    }
)
# Read-after-write: an object a manifest or marker names may not be readable yet; callers reading such objects
# pass ``missing_is_transient=True``.
MISSING_CODES = frozenset({"NoSuchKey", "404"})


class TransientError(RuntimeError):
    """A failure worth retrying soon (a dependency not answering, an object not there yet)."""


def is_transient(exc: BaseException, *, missing_is_transient: bool = False) -> bool:
    """Return whether ``exc`` is worth retrying with backoff."""
    if isinstance(
        exc, TransientError | EndpointConnectionError | ConnectionClosedError | ReadTimeoutError | ConnectTimeoutError
    ):
        return True
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if missing_is_transient and code in MISSING_CODES:
            return True
        return code in TRANSIENT_CODES or status >= 500
    return isinstance(exc, ConnectionError | TimeoutError)
