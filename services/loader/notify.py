"""Email notifications: loaded dates and failures are queued in Redis and sent in batches per job.

A flush sends one mail per job and recipient list: the dates one by one when there are few, a summary
when there are many (a 300-day backfill gives one summary, not 300 mails). Each mail stands alone: a batch
that cannot be sent is queued again (the SMTP server is away) or dropped with a log line (the batch itself is
bad), and the other batches are sent all the same. Header text never carries control characters.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from email.message import EmailMessage
from typing import Any

import aiosmtplib

from services.loader.settings import LoaderSettings
from shared.logging import get_logger

log = get_logger(__name__)
MAX_QUEUED = 10_000
# Control characters and line separators: in a header they would end it and start another.
_UNSAFE_IN_HEADER = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def header_safe(text: str) -> str:
    """Return ``text`` fit for one mail header line (control characters become a space)."""
    return _UNSAFE_IN_HEADER.sub(" ", text).strip()


def _key(settings: LoaderSettings) -> str:
    return f"loader:{settings.resource_prefix}:notifications"


async def queue_notification(
    redis: Any,
    settings: LoaderSettings,
    *,
    job_id: int | None,
    job_name: str,
    kind: str,
    dt: str | None,
    detail: str,
    recipients: list[str],
) -> None:
    """Queue one event (loaded, failed, deleted, notice) for the next flush."""
    if not recipients:
        return
    entry = {"job_id": job_id, "job": job_name, "kind": kind, "dt": dt, "detail": detail, "to": sorted(recipients)}
    await redis.rpush(_key(settings), json.dumps(entry))
    # Without a reachable mail server, keep only the newest events rather than grow without bound.
    await redis.ltrim(_key(settings), -MAX_QUEUED, -1)


async def _take_all(redis: Any, key: str) -> list[dict[str, Any]]:
    async with redis.pipeline(transaction=True) as pipe:
        pipe.lrange(key, 0, -1)
        pipe.delete(key)
        raw, _ = await pipe.execute()
    entries = []
    for item in raw:
        try:
            entries.append(json.loads(item))
        except ValueError:
            log.warning("mail_entry_dropped", entry=str(item)[:200])
    return entries


def compose(entries: list[dict[str, Any]], detail_limit: int) -> tuple[str, str]:
    """Return (subject, body) for one job's batch of events."""
    job = entries[0]["job"]
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        by_kind[entry["kind"]].append(entry)
    counts = ", ".join(f"{len(items)} {kind}" for kind, items in sorted(by_kind.items()))
    subject = header_safe(f"[headwater] {job}: {counts}")
    lines = [f"Job {job}: {counts}.", ""]
    for kind, items in sorted(by_kind.items()):
        dates = sorted(e["dt"] for e in items if e["dt"])
        if len(items) > detail_limit:
            span = f" from {dates[0]} to {dates[-1]}" if dates else ""
            lines.append(f"{kind}: {len(items)} dates{span}.")
            if kind == "failed":
                lines.extend(f"  {e['dt']}: {e['detail']}" for e in items[:detail_limit])
                lines.append(f"  ... and {len(items) - detail_limit} more")
        else:
            lines.append(f"{kind}:")
            lines.extend(f"  {e['dt'] or '-'}: {e['detail']}" for e in items)
        lines.append("")
    return subject, "\n".join(lines)


async def send_mail(settings: LoaderSettings, recipients: list[str], subject: str, body: str) -> None:
    """Send one plain-text mail over SMTP (STARTTLS or implicit TLS when set; certificates always verified)."""
    message = EmailMessage()
    message["From"] = settings.smtp_sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message.set_content(body)
    await aiosmtplib.send(
        message,
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
        start_tls=settings.smtp_starttls,
        use_tls=settings.smtp_implicit_tls,
        validate_certs=True,
        cert_bundle=str(settings.smtp_ca_file) if settings.smtp_ca_file else None,
        timeout=30,
    )


async def flush_notifications(redis: Any, settings: LoaderSettings) -> int:
    """Send everything queued, one mail per job and recipient list; return mails sent.

    A batch whose mail fails is queued again for the next flush.
    """
    entries = await _take_all(redis, _key(settings))
    groups: dict[tuple[Any, tuple[str, ...]], list[dict[str, Any]]] = defaultdict(list)
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("to"), list):
            groups[(entry.get("job_id"), tuple(entry["to"]))].append(entry)
        else:
            log.warning("mail_entry_dropped", entry=str(entry)[:200])
    sent = 0
    for (job_id, recipients), batch in groups.items():
        try:
            subject, body = compose(batch, settings.notify_detail_limit)
            await send_mail(settings, list(recipients), subject, body)
            sent += 1
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("mail_failed", job_id=job_id, error=str(exc))
            for entry in batch:
                await redis.rpush(_key(settings), json.dumps(entry))
        except Exception as exc:  # this batch cannot make a mail: drop it, never the others
            log.exception("mail_dropped", job_id=job_id, events=len(batch), error=str(exc))
    if sent:
        log.info("mail_sent", mails=sent, events=len(entries))
    return sent
