"""Redact cloud account ids from text the API shows (error messages of jobs and runs).

AWS errors name the account in ARNs (``arn:aws:iam::123456789012:role/x``), queue URLs
(``https://sqs.<region>.amazonaws.com/123456789012/q``) and registry hosts; a ``read`` key must not learn it.
Every standalone 12-digit number is taken for an account id: the rest of the message stays readable.
"""

from __future__ import annotations

import re

ACCOUNT_ID = re.compile(r"(?<![0-9])[0-9]{12}(?![0-9])")
REDACTED_ACCOUNT = "<account>"


def redact_account_ids(text: str | None) -> str | None:
    """Return ``text`` with every AWS account id replaced by ``<account>``."""
    if not text:
        return text
    return ACCOUNT_ID.sub(REDACTED_ACCOUNT, text)
