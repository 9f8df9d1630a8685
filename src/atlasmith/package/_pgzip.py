"""A gzip writer that compresses on every core and still writes the same bytes every time.

The stream is cut into fixed-size blocks. Each block is deflated on its own thread (zlib
releases the GIL), primed with the 32 KiB that precede it as a preset dictionary, and ended with
a sync flush, so the blocks join into one valid deflate stream (the technique of pigz). The
output depends only on the data, the block size and the level, never on the number of threads
or on timing. The gzip header carries no time and no file name.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any

BLOCK_SIZE = 1 << 20
_WINDOW = 1 << 15
_HEADER = (
    b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # magic, deflate, no flags, mtime 0, OS unknown
)


def _deflate(block: bytes, dictionary: bytes, level: int, last: bool) -> bytes:
    """Raw-deflate one block, primed with the window before it; sync-flushed unless last."""
    if dictionary:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, zdict=dictionary)
    else:
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    flush = zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH
    return compressor.compress(block) + compressor.flush(flush)


class ParallelGzipWriter(io.RawIOBase):
    """A write-only binary file that gzips what it receives into ``raw``.

    Parameters
    ----------
    raw : binary file
        Where the compressed bytes go (left open on close).
    level : int
        zlib compression level.
    threads : int, optional
        Compression threads (default: the number of CPUs). The output does not depend on it.
    block_size : int
        Uncompressed bytes per independently compressed block.
    """

    def __init__(
        self,
        raw: IO[bytes],
        level: int = 6,
        threads: int | None = None,
        block_size: int = BLOCK_SIZE,
    ) -> None:
        super().__init__()
        self._raw, self._level, self._block_size = raw, level, block_size
        self._threads = max(1, threads or os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="atlasmith-gzip")
        self._pending: deque[Future[bytes]] = deque()
        self._buffer = bytearray()
        self._window = b""
        self._crc, self._size = 0, 0
        self._raw.write(_HEADER)

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        """Uncompressed bytes written so far (what tarfile asks for)."""
        return self._size

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self._buffer += view
        self._crc = zlib.crc32(view, self._crc)
        self._size += len(view)
        while len(self._buffer) > self._block_size:
            self._submit(bytes(self._buffer[: self._block_size]), last=False)
            del self._buffer[: self._block_size]
        return len(view)

    def _submit(self, block: bytes, last: bool) -> None:
        future = self._pool.submit(_deflate, block, self._window, self._level, last)
        self._pending.append(future)
        self._window = block[-_WINDOW:]
        while len(self._pending) > 2 * self._threads:
            self._raw.write(self._pending.popleft().result())

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._submit(bytes(self._buffer), last=True)
            while self._pending:
                self._raw.write(self._pending.popleft().result())
            self._raw.write(struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF))
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            super().close()
