"""Cut a (possibly gzip) byte stream of JSON lines into line-aligned blocks of bounded size."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
READ_BYTES = 1024 * 1024


@dataclass
class Block:
    """Whole lines of JSON, with the 1-based number of their first line in the source."""

    data: bytes
    first_line: int


def _decompressed(stream: BinaryIO) -> Iterator[bytes]:
    """Yield the stream's bytes, gunzipping (concatenated members too) when it starts with the gzip magic."""
    first = stream.read(READ_BYTES)
    if not first.startswith(GZIP_MAGIC):
        while first:
            yield first
            first = stream.read(READ_BYTES)
        return
    decompressor = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    chunk = first
    while chunk:
        data = chunk
        while data:
            out = decompressor.decompress(data, READ_BYTES * 4)
            if out:
                yield out
            if decompressor.eof:
                data = decompressor.unused_data
                decompressor = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
            else:
                data = decompressor.unconsumed_tail
        chunk = stream.read(READ_BYTES)
    tail = decompressor.flush()
    if tail:
        yield tail


def iter_blocks(stream: BinaryIO, block_bytes: int = 8 * 1024 * 1024) -> Iterator[Block]:
    """Yield blocks of about ``block_bytes`` of whole lines; a last line without a newline is kept."""
    pending = bytearray()
    line = 1
    for data in _decompressed(stream):
        pending += data
        while len(pending) >= block_bytes:
            # Cut at the last newline within the block size, or after the first line when one line is longer.
            cut = pending.rfind(b"\n", 0, block_bytes)
            if cut < 0:
                cut = pending.find(b"\n", block_bytes)
                if cut < 0:
                    break
            block = bytes(pending[: cut + 1])
            del pending[: cut + 1]
            yield Block(block, line)
            line += block.count(b"\n")
    if pending:
        yield Block(bytes(pending), line)
