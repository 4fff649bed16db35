"""S3 source path templates: Mycroft's ``prefix/YYYY/MM/DD/`` and Hive's ``dt=YYYY-MM-DD/`` layouts.

A template is an ``s3://bucket/key-prefix/`` URL whose key holds the tokens ``YYYY``, ``MM`` and ``DD``
once each, in that order (optionally in braces: ``{YYYY}``). Rendering a date gives the day's prefix;
a day is complete when ``<prefix>_COMPLETE`` (or ``<prefix>COMPLETE``) exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

MARKER_NAMES = ("_COMPLETE", "COMPLETE")
_TOKENS = ("YYYY", "MM", "DD")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


class TemplateError(ValueError):
    """A source template is malformed."""


@dataclass(frozen=True)
class SourceTemplate:
    """A parsed template: the bucket and the key pattern with tokens."""

    bucket: str
    key_pattern: str

    @classmethod
    def parse(cls, url: str) -> SourceTemplate:
        """Parse and validate ``s3://bucket/.../YYYY.../``; raise TemplateError saying why."""
        if not url.startswith("s3://"):
            raise TemplateError("must start with s3://")
        bucket, _, key = url[len("s3://") :].partition("/")
        if not _BUCKET.match(bucket):
            raise TemplateError(f"invalid bucket name {bucket!r}")
        key = key.replace("{YYYY}", "YYYY").replace("{MM}", "MM").replace("{DD}", "DD")
        positions = []
        for token in _TOKENS:
            count = key.count(token)
            if count != 1:
                raise TemplateError(f"the key must contain {token} exactly once (found {count})")
            positions.append(key.index(token))
        if positions != sorted(positions):
            raise TemplateError("the tokens must appear in the order YYYY, MM, DD")
        if not key.endswith("/"):
            raise TemplateError("the key must end with '/' (a day is a folder)")
        if "{" in key or "}" in key or "*" in key:
            raise TemplateError("only the tokens YYYY, MM and DD may vary")
        return cls(bucket=bucket, key_pattern=key)

    def prefix(self, day: date) -> str:
        """Return the key prefix of ``day``'s folder."""
        return (
            self.key_pattern.replace("YYYY", f"{day.year:04d}")
            .replace("MM", f"{day.month:02d}")
            .replace("DD", f"{day.day:02d}")
        )

    def marker_keys(self, day: date) -> list[str]:
        """Return the keys whose existence marks ``day`` complete."""
        return [self.prefix(day) + name for name in MARKER_NAMES]

    def match_marker(self, bucket: str, key: str) -> date | None:
        """Return the day a marker key belongs to, or None when it is not one of this template's markers."""
        if bucket != self.bucket:
            return None
        pattern = re.escape(self.key_pattern)
        for token, group in (("YYYY", r"(?P<y>\d{4})"), ("MM", r"(?P<m>\d{2})"), ("DD", r"(?P<d>\d{2})")):
            pattern = pattern.replace(token, group)
        match = re.fullmatch(pattern + r"(?:_COMPLETE|COMPLETE)", key)
        if match is None:
            return None
        try:
            return date(int(match["y"]), int(match["m"]), int(match["d"]))
        except ValueError:
            return None

    def url(self) -> str:
        """Return the template as a URL."""
        return f"s3://{self.bucket}/{self.key_pattern}"
