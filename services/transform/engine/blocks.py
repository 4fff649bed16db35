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
GZIP_WBITS = 31  # gzip header and trailer


@dataclass
class Block:
    """Whole lines of JSON, with the 1-based number of their first line in the source."""

    data: bytes
    first_line: int


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
            out = decompressor.decompress(data)
            if out:
                yield out
            data = b""
            if decompressor.eof:  # another gzip member may follow
                data = decompressor.unused_data
                decompressor = zlib.decompressobj(wbits=GZIP_WBITS)
        chunk = stream.read(READ_BYTES)
    tail = decompressor.flush()
    if tail:
        yield tail


def iter_blocks(stream: BinaryIO, block_bytes: int = 8 * 1024 * 1024) -> Iterator[Block]:
    """Yield blocks of at most about ``block_bytes`` of whole lines; a last line without a newline is kept.

    A block is cut at the last newline within ``block_bytes`` (after the first line when a line is longer).
    """
    parts: list[bytes] = []
    size = 0
    line = 1
    for data in _decompressed(stream):
        parts.append(data)
        size += len(data)
        if size < block_bytes:
            continue
        pending = b"".join(parts)
        start = 0
        while len(pending) - start >= block_bytes:
            cut = pending.rfind(b"\n", start, start + block_bytes)
            if cut < 0:
                cut = pending.find(b"\n", start + block_bytes)
                if cut < 0:
                    break
            block = pending[start : cut + 1]
            start = cut + 1
            yield Block(block, line)
            line += block.count(b"\n")
        rest = pending[start:]
        parts, size = ([rest], len(rest)) if rest else ([], 0)
    if parts:
        yield Block(b"".join(parts), line)
