"""The local engine: stream JSON-lines sources through the mapper into part files, bad rows and the view.

Memory stays bounded by the block size, the row-group buffer and the view's per-ad counters, whatever the input
size. Three stages overlap: a reader thread inflates and cuts blocks, the caller's thread maps them, and a writer
thread encodes Parquet/ORC and hands finished parts on (to be uploaded).
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa

from services.transform.engine.arrow_types import file_columns
from services.transform.engine.blocks import Block, iter_blocks
from services.transform.engine.mapping import BlockMapper, MappedBlock
from services.transform.engine.sink import BadRowWriter, OutputFormat, PartFile, PartWriter
from services.transform.engine.views import AdvertisingView, has_advertising_view
from shared.schemas import TableSchema

Source = tuple[str, Callable[[], BinaryIO]]


@dataclass
class EngineOptions:
    """Knobs of the local engine."""

    output_format: OutputFormat = "parquet"
    compression: str = "zstd"
    block_bytes: int = 8 * 1024 * 1024
    rows_per_part: int = 5_000_000
    row_group_rows: int = 128 * 1024  # close to DuckDB's 122,880: a short tail to encode once mapping ends
    vectorised: bool = True
    mapping_threads: int = 2


@dataclass
class LocalResult:
    """What a local run produced on disk."""

    rows_in: int = 0
    rows_out: int = 0
    rows_bad: int = 0
    bytes_in: int = 0
    sources: int = 0
    parts: list[PartFile] = field(default_factory=list)
    bad_rows_path: Path | None = None
    view: pa.Table | None = None


_END = object()


def _read_ahead(sources: Iterable[Source], block_bytes: int) -> Iterator[tuple[str, Block]]:
    """Yield (source name, block) from a reader thread, at most two blocks ahead."""
    blocks: queue.Queue[object] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def _produce() -> None:
        try:
            for name, opener in sources:
                if stop.is_set():
                    return
                stream = opener()
                try:
                    for block in iter_blocks(stream, block_bytes):
                        if stop.is_set():
                            return
                        blocks.put((name, block))
                finally:
                    stream.close()
        except BaseException as exc:  # handed to the consumer, which raises it
            blocks.put(exc)
        finally:
            blocks.put(_END)

    reader = threading.Thread(target=_produce, name="transform-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = blocks.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        while reader.is_alive():
            try:
                blocks.get(timeout=0.1)
            except queue.Empty:
                pass
        reader.join()


def _map_one(mapper: BlockMapper, name: str, block: Block) -> MappedBlock:
    return mapper.map_block(block.data, source=name, first_line=block.first_line, newlines=block.newlines)


def _map_in_parallel(
    mapper: BlockMapper, blocks: Iterator[tuple[str, Block]], threads: int
) -> Iterator[tuple[str, Block, MappedBlock]]:
    """Map blocks on ``threads`` threads (Arrow releases the GIL), yielding results in input order."""
    if threads <= 1:
        for name, block in blocks:
            yield name, block, _map_one(mapper, name, block)
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="transform-map") as pool:
        pending: deque[tuple[str, Block, Future[MappedBlock]]] = deque()
        try:
            for name, block in blocks:
                pending.append((name, block, pool.submit(_map_one, mapper, name, block)))
                if len(pending) > threads:
                    done_name, done_block, future = pending.popleft()
                    yield done_name, done_block, future.result()
            while pending:
                done_name, done_block, future = pending.popleft()
                yield done_name, done_block, future.result()
        finally:
            for _, _, future in pending:
                future.cancel()


class _BackgroundWriter:
    """Write tables (and hand finished parts to ``on_part``) in a thread, so mapping overlaps with encoding."""

    def __init__(self, writer: PartWriter, on_part: Callable[[PartFile], None] | None) -> None:
        self.writer = writer
        self.on_part = on_part
        self.tables: queue.Queue[pa.Table | None] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="transform-writer", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while (table := self.tables.get()) is not None:
                self._finished(self.writer.write(table))
            self._finished(self.writer.close())
        except BaseException as exc:  # raised in the caller by put/close
            self.error = exc
            while self.tables.get() is not None:  # drain so put() never blocks forever
                pass

    def _finished(self, parts: list[PartFile]) -> None:
        for part in parts:
            if self.on_part:
                self.on_part(part)

    def put(self, table: pa.Table) -> None:
        """Queue a table for writing (blocks while two are waiting)."""
        if self.error is not None:
            raise self.error
        self.tables.put(table)

    def close(self) -> None:
        """Finish writing; raise what the writer thread raised."""
        self.tables.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


def transform_sources(
    schema: TableSchema,
    sources: Iterable[Source],
    *,
    dt: date | None,
    workdir: Path,
    options: EngineOptions | None = None,
    on_part: Callable[[PartFile], None] | None = None,
) -> LocalResult:
    """Map every source's JSON lines to part files under ``workdir/parts`` and bad rows under ``workdir``.

    ``on_part`` is called with each finished part (to upload it and delete the local copy while the run goes on).
    With a partition day the parts leave out the partition column: the ``dt=`` of their path carries it.
    """
    options = options or EngineOptions()
    mapper = BlockMapper(schema, dt=dt, vectorised=options.vectorised)
    columns = file_columns(schema, partitioned=dt is not None)
    writer = PartWriter(
        workdir / "parts",
        pa.schema([mapper.out_schema.field(name) for name in columns]),
        output_format=options.output_format,
        compression=options.compression,
        rows_per_part=options.rows_per_part,
        row_group_rows=options.row_group_rows,
    )
    bad_rows = BadRowWriter(workdir / "bad-rows.jsonl.gz")
    view = AdvertisingView() if has_advertising_view(schema) else None
    result = LocalResult()
    seen: set[str] = set()
    background = _BackgroundWriter(writer, on_part)
    try:
        for name, block, mapped in _map_in_parallel(
            mapper, _read_ahead(sources, options.block_bytes), options.mapping_threads
        ):
            if name not in seen:
                seen.add(name)
                result.sources += 1
            result.bytes_in += len(block.data)
            result.rows_in += mapped.rows_in
            result.rows_out += mapped.table.num_rows
            bad_rows.write(mapped.bad)
            if view is not None:
                view.add(mapped.table)
            if mapped.table.num_rows:
                background.put(mapped.table.select(columns))
    finally:
        bad_rows.close()
        background.close()
    result.rows_bad = bad_rows.count
    result.parts = writer.parts
    result.bad_rows_path = bad_rows.path if bad_rows.count else None
    result.view = view.table() if view is not None else None
    return result
