"""Cut a (possibly gzip) byte stream of JSON lines into line-aligned blocks of bounded size."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

try:  # ISA-L inflates about twice as fast as zlib; same API
    from isal import isal_zlib as zlib
except ImportError:  # pragma: no cover - isal is a dependency, zlib is the fallback
    import zlib  # type: ignore[no-redef]

GZIP_MAGIC = b"\x1f\x8b"
READ_BYTES = 1024 * 1024
INFLATE_BYTES = 4 * 1024 * 1024  # at most this much output per inflate call, however well the input compresses
GZIP_WBITS = 31  # gzip header and trailer


@dataclass
class Block:
    """Whole lines of JSON, with the 1-based number of their first line in the source and their newline count."""

    data: bytes
    first_line: int
    newlines: int = -1


def _decompressed(stream: BinaryIO) -> Iterator[bytes]:
    """Yield the stream's bytes, gunzipping (concatenated members too) when it starts with the gzip magic."""
    chunk = stream.read(READ_BYTES)
    if not chunk.startswith(GZIP_MAGIC):
        while chunk:
            yield chunk
            chunk = stream.read(READ_BYTES)
        return
    decompressor = zlib.decompressobj(wbits=GZIP_WBITS)
    while chunk:
        data = chunk
        while data:
            out = decompressor.decompress(data, INFLATE_BYTES)
            if out:
                yield out
            data = decompressor.unconsumed_tail
            if decompressor.eof:  # another gzip member may follow
                data = decompressor.unused_data
                decompressor = zlib.decompressobj(wbits=GZIP_WBITS)
        chunk = stream.read(READ_BYTES)
    tail = decompressor.flush()
    if tail:
        yield tail


def iter_blocks(stream: BinaryIO, block_bytes: int = 8 * 1024 * 1024) -> Iterator[Block]:
    """Yield blocks of about ``block_bytes`` of whole lines; a last line without a newline is kept.

    A block is cut at the last newline within ``block_bytes`` of the inflated chunk that completes it, or at the
    first one after (a line longer than a block, or a chunk without a newline before the limit). Each byte is
    copied once, into its block: pieces of chunks are carried as memoryviews until then.
    """
    parts: list[bytes | memoryview] = []
    size = 0
    line = 1
    for data in _decompressed(stream):
        view = memoryview(data)
        start = 0
        while size + len(data) - start >= block_bytes:
            limit = start + block_bytes - size
            cut = data.rfind(b"\n", start, limit)
            if cut < 0:
                cut = data.find(b"\n", max(limit, start))
                if cut < 0:
                    break
            block = b"".join([*parts, view[start : cut + 1]])
            parts, size, start = [], 0, cut + 1
            newlines = block.count(b"\n")
            yield Block(block, line, newlines)
            line += newlines
        if start < len(data):
            parts.append(view[start:])
            size += len(data) - start
    if parts:
        block = b"".join(parts)
        yield Block(block, line, block.count(b"\n"))
