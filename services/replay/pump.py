"""Run a replay job: materialise the ordered selection once, then put it on the target stream in batches.

Resume guarantee: the selection is materialised to ``<data_dir>/replay/jobs/<id>/selection.parquet`` once and
read back in the same order on every attempt. After each batch is fully acknowledged by Kinesis (or given up on)
the job's checkpoint (rows done) is written to Redis. A job that crashes mid-batch restarts from the checkpoint,
so at most the records of the one batch in flight (<= 500) can be emitted twice; nothing before it is re-sent.

Partition keys: a record is emitted under the request's ``key`` expression (``"chosen"``), or, with the key
``"original"``, under the key ingest gave it on the events stream (``"original"``: ``shared.contracts.
partition_key_of``, the entity of its source: ad_id, cloud_id, ... else its event id); compaction then keeps one
record per event. ``_replay.partition_key`` and ``_replay.partition_key_from`` say which.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow.parquet as pq
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from services.replay.catalog import open_sandbox
from services.replay.models import TERMINAL_STATES, PreviewRecord, ReplayCreate, ReplayJob
from services.replay.progress import LeaseHeld, ProgressStore
from services.replay.putter import Pacer, PutOutcome, plan_batches, put_batch
from services.replay.sandbox import QueryRefused, Sandbox
from services.replay.selection import base_sql, emission_sql, mirror_scope
from services.replay.settings import ReplaySettings
from shared.aws import AwsClients
from shared.contracts import EVENT_ID_PATTERN, RawRecord, partition_key_of
from shared.logging import get_logger
from shared.messages import utc_now
from shared.retry import TransientError, is_transient

log = get_logger(__name__)

COLUMNS = ["_key", "_data", "_event_time", "_sequence"]
ORIGINAL_KEY = "original"
# Ingest owns the events stream (contract 1): what is replayed there must pass its record validation.
INGEST_STREAM = "events"
_EVENT_ID = re.compile(EVENT_ID_PATTERN)
# How often a running job looks at its cancel flag outside batch boundaries: one Redis EXISTS per tick, and the
# tick bounds the cancel latency (documented: within a second in every phase), so keep it well under it.
CANCEL_POLL_S = 0.1


def sql_request(request: ReplayCreate) -> ReplayCreate:
    """Return the request the selection SQL is built from (the key ``original`` is resolved per record instead)."""
    return request.model_copy(update={"key": "event_id"}) if request.key == ORIGINAL_KEY else request


def annotate(
    data: str,
    *,
    key: str | None,
    job_id: str,
    sequence: str | None,
    event_time: str | None,
    replayed_at: str,
    user: dict[str, Any],
) -> tuple[str, bytes]:
    """Return (partition key, record with ``_replay`` merged in): job id, original sequence/time, replay time, the
    partition key and where it comes from, user fields. ``key`` None: the record's original partition key."""
    record = orjson.loads(data)
    if not isinstance(record, dict):
        record = {"value": record}
    kept = key is None
    key = partition_key_of(record) if key is None else key or "-"
    record["_replay"] = {
        **user,
        "job_id": job_id,
        "original_sequence": sequence,
        "original_timestamp": event_time if event_time is not None else record.get("event_time"),
        "replayed_at": replayed_at,
        "partition_key": key,
        "partition_key_from": "original" if kept else "chosen",
    }
    return key, orjson.dumps(record)


def invalid_raw_record(data: bytes) -> str | None:
    """Return ``InvalidRecord`` unless ``data`` is a raw record ingest would write (contract 1, its event ids)."""
    try:
        record = RawRecord.model_validate_json(data)
    except ValueError:
        return "InvalidRecord"
    return None if _EVENT_ID.fullmatch(record.event_id) else "InvalidRecord"


def now_iso() -> str:
    """Return the current UTC time as ISO-8601 with Z."""
    return utc_now().isoformat().replace("+00:00", "Z")


def _write_selection(sandbox: Sandbox, request: ReplayCreate, path: Path, *, timeout_s: float, max_rows: int) -> int:
    # One row past the cap tells a selection that is too large from one that fits exactly.
    sql = emission_sql(sandbox, request, limit=max_rows + 1)
    reader, _ = sandbox.reader(sql, timeout_s=timeout_s, batch_size=65_536)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    rows = 0
    try:
        with pq.ParquetWriter(tmp, reader.schema) as writer:
            for batch in reader:
                rows += batch.num_rows
                if rows > max_rows:
                    raise QueryRefused(f"the selection holds more than {max_rows} rows (job_max_rows): narrow it")
                writer.write_batch(batch)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, duckdb.InterruptException):
            raise QueryRefused(f"the selection exceeded its time limit of {timeout_s:g}s") from None
        raise
    os.replace(tmp, path)
    return rows


async def materialise(*, settings: ReplaySettings, aws: AwsClients, request: ReplayCreate, path: Path) -> int:
    """Write the ordered records to emit to ``path`` (once), under the query limits; return their count.

    Cancelling the caller interrupts DuckDB at once (the thread returns within moments) and removes partial files.
    """
    if await asyncio.to_thread(path.exists):
        return pq.ParquetFile(path).metadata.num_rows
    sources, window = mirror_scope(request)
    sandbox = await open_sandbox(settings=settings, aws=aws, sql=base_sql(request), sources=sources, window=window)
    writing = asyncio.ensure_future(
        asyncio.to_thread(
            _write_selection,
            sandbox,
            sql_request(request),
            path,
            timeout_s=settings.job_selection_timeout_s,
            max_rows=settings.job_max_rows,
        )
    )
    try:
        return await asyncio.shield(writing)
    except asyncio.CancelledError:
        sandbox.interrupt()
        with contextlib.suppress(BaseException):
            await writing
        raise
    finally:
        if writing.done():
            sandbox.close()
        else:  # cancelled twice: close when the interrupted thread returns
            writing.add_done_callback(lambda _: sandbox.close())


async def preview(
    *, settings: ReplaySettings, aws: AwsClients, request: ReplayCreate, limit: int
) -> list[PreviewRecord]:
    """Return the first ``limit`` records exactly as a job would emit them (job id ``preview``)."""
    sources, window = mirror_scope(request)
    sandbox = await open_sandbox(settings=settings, aws=aws, sql=base_sql(request), sources=sources, window=window)
    try:

        def _rows() -> list[dict]:
            sql = emission_sql(sandbox, sql_request(request), limit=limit)
            reader, _ = sandbox.reader(sql, timeout_s=settings.query_timeout_s)
            return reader.read_all().to_pylist()

        rows = await asyncio.to_thread(_rows)
    finally:
        sandbox.close()
    replayed_at = now_iso()
    original = request.key == ORIGINAL_KEY
    records = []
    for row in rows:
        key, data = annotate(
            row["_data"],
            key=None if original else row["_key"],
            job_id="preview",
            sequence=row["_sequence"],
            event_time=row["_event_time"],
            replayed_at=replayed_at,
            user=request.annotate,
        )
        records.append(PreviewRecord(partition_key=key, data=orjson.loads(data)))
    return records


def iter_records(
    path: Path, *, offset: int, job_id: str, user: dict[str, Any], original: bool = False
) -> Iterator[tuple[str, bytes]]:
    """Yield (partition key, annotated data) of the selection from row ``offset`` on (``original``: each record's
    original partition key rather than the selected one)."""
    position = 0
    replayed_at = now_iso()
    for batch in pq.ParquetFile(path).iter_batches(batch_size=8192, columns=COLUMNS):
        if position + batch.num_rows <= offset:
            position += batch.num_rows
            continue
        start = max(0, offset - position)
        position += batch.num_rows
        columns = [batch.column(i).to_pylist() for i in range(4)]
        replayed_at = now_iso()
        for key, data, event_time, sequence in zip(*(c[start:] for c in columns), strict=True):
            yield annotate(
                data,
                key=None if original else key,
                job_id=job_id,
                sequence=sequence,
                event_time=event_time,
                replayed_at=replayed_at,
                user=user,
            )


async def _update(sessions: async_sessionmaker[AsyncSession], job_id: str, **fields: Any) -> None:
    async with sessions() as session:
        job = await session.get(ReplayJob, job_id)
        if job is None:
            return
        for name, value in fields.items():
            setattr(job, name, value)
        session.add(job)
        await session.commit()


async def run_replay(
    *,
    job_id: str,
    settings: ReplaySettings,
    aws: AwsClients,
    store: ProgressStore,
    sessions: async_sessionmaker[AsyncSession],
    retry_transient: bool = False,
) -> str:
    """Run (or resume) a replay job to a terminal state; return that state.

    With ``retry_transient``, a failure worth retrying (``shared.retry.is_transient``) leaves the job running and
    raises ``TransientError``: the caller runs it again later and it resumes from its checkpoint.
    """
    async with sessions() as session:
        job = await session.get(ReplayJob, job_id)
    if job is None:
        log.warning("replay_job_missing", replay_id=job_id)
        return "missing"
    if job.state in TERMINAL_STATES:
        return job.state
    try:
        async with store.lease(job_id, ttl_s=settings.lease_ttl_s):
            return await _run_leased(
                job_id=job_id,
                settings=settings,
                aws=aws,
                store=store,
                sessions=sessions,
                retry_transient=retry_transient,
            )
    except LeaseHeld:
        log.info("replay_already_running", replay_id=job_id)
        return "busy"


async def _run_leased(
    *,
    job_id: str,
    settings: ReplaySettings,
    aws: AwsClients,
    store: ProgressStore,
    sessions: async_sessionmaker[AsyncSession],
    retry_transient: bool,
) -> str:
    # Read again under the lease: a previous holder may have finished it meanwhile.
    async with sessions() as session:
        job = await session.get(ReplayJob, job_id)
    if job is None or job.state in TERMINAL_STATES:
        return job.state if job else "missing"
    if await store.cancel_requested(job_id):
        await _update(sessions, job_id, state="cancelled", finished_at=utc_now())
        return "cancelled"
    request = ReplayCreate.model_validate_json(job.request_json)
    await _update(sessions, job_id, state="running", started_at=job.started_at or utc_now())
    log.info("replay_started", replay_id=job_id, target=job.target_stream, dry_run=job.dry_run)
    work = asyncio.ensure_future(
        _run_phases(
            job=job,
            request=request,
            settings=settings,
            aws=aws,
            store=store,
            sessions=sessions,
            retry_transient=retry_transient,
        )
    )
    try:
        state = await _until_cancelled(work, store, job_id)
    except JobCancelled:
        counters = {
            k: int(v) for k, v in (await store.read(job_id)).items() if k in ("total", "read", "emitted", "failed")
        }
        summary = {"cancelled": True, "selected": counters.get("total"), "target_stream": job.target_stream}
        summary |= {k: counters.get(k, 0) for k in ("read", "emitted", "failed")}
        await _update(
            sessions,
            job_id,
            state="cancelled",
            finished_at=utc_now(),
            read=summary["read"],
            emitted=summary["emitted"],
            failed=summary["failed"],
            summary_json=orjson.dumps(summary).decode(),
        )
        log.info("replay_cancelled", replay_id=job_id)
        state = "cancelled"
    if state in TERMINAL_STATES:
        # The job is over: its scratch files (the materialised selection) go with it.
        await asyncio.to_thread(shutil.rmtree, settings.jobs_dir / job_id, True)
    return state


class JobCancelled(Exception):
    """Cancellation was requested while the job was between checkpoints."""


async def _until_cancelled(work: asyncio.Future[str], store: ProgressStore, job_id: str) -> str:
    """Await ``work``, polling the cancel flag; when it is set, cancel the work and raise JobCancelled."""
    try:
        while True:
            done, _ = await asyncio.wait({work}, timeout=CANCEL_POLL_S)
            if done:
                return work.result()
            if await store.cancel_requested(job_id):
                work.cancel()
                try:
                    return await work  # it may have finished meanwhile
                except asyncio.CancelledError:
                    task = asyncio.current_task()
                    if task is not None and task.cancelling():
                        raise
                    raise JobCancelled(job_id) from None
    except asyncio.CancelledError:
        work.cancel()
        raise


async def _run_phases(
    *,
    job: ReplayJob,
    request: ReplayCreate,
    settings: ReplaySettings,
    aws: AwsClients,
    store: ProgressStore,
    sessions: async_sessionmaker[AsyncSession],
    retry_transient: bool,
) -> str:
    job_id = job.id
    try:
        path = settings.jobs_dir / job_id / "selection.parquet"
        total = await materialise(settings=settings, aws=aws, request=request, path=path)
        await store.write(job_id, total=total)
        await _update(sessions, job_id, total=total)
        if job.dry_run:
            summary = {"dry_run": True, "selected": total, "would_emit": total, "target_stream": job.target_stream}
            await store.write(job_id, read=total)
            await _update(
                sessions,
                job_id,
                state="succeeded",
                finished_at=utc_now(),
                read=total,
                summary_json=orjson.dumps(summary).decode(),
            )
            return "succeeded"
        state, summary = await _emit(
            job=job, request=request, path=path, total=total, settings=settings, aws=aws, store=store, sessions=sessions
        )
    except QueryRefused as exc:
        await _update(sessions, job_id, state="failed", finished_at=utc_now(), error=exc.message)
        log.warning("replay_failed", replay_id=job_id, error=exc.message)
        return "failed"
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if retry_transient and is_transient(exc):
            log.warning("replay_interrupted", replay_id=job_id, error=f"{type(exc).__name__}: {exc}"[:300])
            raise TransientError(f"replay {job_id} interrupted: {type(exc).__name__}") from exc
        await _update(sessions, job_id, state="failed", finished_at=utc_now(), error=f"{type(exc).__name__}: {exc}")
        log.exception("replay_crashed", replay_id=job_id)
        return "failed"
    counters = await store.read(job_id)
    await _update(
        sessions,
        job_id,
        state=state,
        finished_at=utc_now(),
        read=int(counters.get("read", 0)),
        emitted=int(counters.get("emitted", 0)),
        failed=int(counters.get("failed", 0)),
        summary_json=orjson.dumps(summary).decode(),
    )
    log.info("replay_finished", replay_id=job_id, state=state, **{k: summary[k] for k in ("emitted", "failed")})
    return state


async def _emit(
    *,
    job: ReplayJob,
    request: ReplayCreate,
    path: Path,
    total: int,
    settings: ReplaySettings,
    aws: AwsClients,
    store: ProgressStore,
    sessions: async_sessionmaker[AsyncSession],
) -> tuple[str, dict[str, Any]]:
    counters = await store.read(job.id)
    offset = int(counters.get("offset", 0))
    emitted, failed = int(counters.get("emitted", 0)), int(counters.get("failed", 0))
    elapsed_before = counters.get("emit_elapsed", 0.0)
    resumed_from = offset
    kinesis = await aws.get("kinesis")
    pacer = Pacer(request.rate_limit)
    max_records = settings.put_batch_records
    if request.rate_limit:
        # Small batches keep a paced stream smooth (about ten puts per second).
        max_records = max(1, min(max_records, int(request.rate_limit / 10)))
    totals = PutOutcome()
    # Records bound for ingest's stream become live data: they must be what ingest itself would write.
    refuse = invalid_raw_record if job.target_stream == settings.stream(INGEST_STREAM) else None
    started_wall = now_iso()
    started = time.monotonic()
    last_flush = started
    state = "succeeded"
    records = iter_records(
        path, offset=offset, job_id=job.id, user=request.annotate, original=request.key == ORIGINAL_KEY
    )
    batches = plan_batches(records, max_records=max_records, max_bytes=settings.put_batch_bytes)
    batch = next(batches, None)
    cancelled = await store.cancel_requested(job.id)
    while batch is not None:
        if cancelled:
            state = "cancelled"
            break
        await pacer.wait_for(len(batch))
        putting = asyncio.create_task(
            put_batch(
                kinesis,
                job.target_stream,
                batch,
                pacer=pacer,
                max_attempts=settings.put_max_attempts,
                backoff_base_s=settings.put_backoff_base_s,
                backoff_max_s=settings.put_backoff_max_s,
                refuse=refuse,
            )
        )
        # Build the next batch while this one is in flight (it is not sent before this one is acknowledged).
        try:
            upcoming = next(batches, None)
        except BaseException:
            putting.cancel()
            raise
        try:
            outcome = await asyncio.shield(putting)
            interrupted = False
        except asyncio.CancelledError:
            # Cancelled (the job's cancel flag, or the worker stopping): the batch in flight is finished and counted
            # first, so the checkpoint says exactly what is on the stream.
            outcome = await putting
            interrupted = True
        offset += len(batch)
        emitted += outcome.emitted
        failed += outcome.failed
        totals.throttled += outcome.throttled
        for code, count in outcome.errors.items():
            totals.errors[code] = totals.errors.get(code, 0) + count
        elapsed = elapsed_before + time.monotonic() - started
        # The checkpoint: rows up to ``offset`` are done and will not be re-sent after a crash.
        cancelled = await store.checkpoint(
            job.id, offset=offset, read=offset, emitted=emitted, failed=failed, emit_elapsed=elapsed
        )
        if time.monotonic() - last_flush >= settings.progress_flush_s:
            last_flush = time.monotonic()
            await _update(sessions, job.id, read=offset, emitted=emitted, failed=failed)
        if interrupted:
            raise asyncio.CancelledError
        batch = upcoming
    if state == "succeeded":
        await pacer.finish()
    elapsed = elapsed_before + time.monotonic() - started
    await store.write(job.id, emit_elapsed=elapsed)
    summary = {
        "selected": total,
        "read": offset,
        "emitted": emitted,
        "failed": failed,
        "errors": totals.errors,
        "throttled_retries": totals.throttled,
        "target_stream": job.target_stream,
        "compacted": request.compact,
        "resumed_from": resumed_from,
        "emit_started_at": started_wall,
        "emit_finished_at": now_iso(),
        "emit_seconds": round(elapsed, 3),
        "rate": round(emitted / elapsed, 2) if elapsed > 0 else None,
    }
    return state, summary
